//! Schedules (`/ui/schedules`): every configured schedule with its cron,
//! time zone, next run, pause state and latest runs; trigger one now, pause
//! or resume it.
//!
//! It reads and acts only through [`crate::schedules::control`], like
//! `GET /schedules` and `conveyor schedules`. It must never act on a form
//! whose CSRF token does not match.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::UiError;
use super::guard::{Authorized, Viewer};
use super::view::{html, see_other, Chrome};
use crate::api::ApiState;
use crate::job::now_ms;
use crate::schedules::control::{self, ControlError, ScheduleView};

impl From<ControlError> for UiError {
    fn from(error: ControlError) -> UiError {
        match error {
            ControlError::Unknown(name) => UiError::NotFound(format!(
                "no schedule {:?} in the configuration",
                super::view::shorten(&name, 64)
            )),
            ControlError::Queue(e) => e.into(),
            ControlError::Store(e) => e.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/schedules.html")]
struct SchedulesPage {
    chrome: Chrome,
    schedules: Vec<ScheduleView>,
}

#[derive(Deserialize)]
pub(super) struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

pub(super) async fn list(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, UiError> {
    let schedules = control::list(state.schedules(), state.redis(), state.pool(), now_ms()).await?;
    let mut chrome = viewer.chrome("Schedules", "schedules");
    chrome.notice = match query.notice.as_str() {
        "triggered" => Some("One run was enqueued now, with a fresh id.".into()),
        "paused" => Some("The schedule is paused for every worker.".into()),
        "resumed" => Some("The schedule runs again from its next tick.".into()),
        _ => None,
    };
    Ok(html(StatusCode::OK, &SchedulesPage { chrome, schedules }))
}

/// What a schedule form asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Trigger,
    Pause,
    Resume,
}

impl Action {
    fn parse(text: &str) -> Result<Action, UiError> {
        match text {
            "trigger" => Ok(Action::Trigger),
            "pause" => Ok(Action::Pause),
            "resume" => Ok(Action::Resume),
            _ => Err(UiError::NotFound(
                "schedule actions are trigger, pause and resume".into(),
            )),
        }
    }
}

pub(super) async fn act(
    allowed: Authorized,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UiError> {
    let state = &allowed.state;
    let (name, action) = path.into_inner();
    let action = Action::parse(&action)?;
    let schedule = control::find(state.schedules(), &name)?;
    let notice = match action {
        Action::Trigger => {
            control::trigger(schedule, state.redis(), now_ms()).await?;
            "triggered"
        }
        Action::Pause => {
            control::set_paused(schedule, state.redis(), true).await?;
            "paused"
        }
        Action::Resume => {
            control::set_paused(schedule, state.redis(), false).await?;
            "resumed"
        }
    };
    Ok(see_other(&format!("/ui/schedules?notice={notice}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_actions_exist() {
        assert_eq!(Action::parse("pause").ok(), Some(Action::Pause));
        assert!(Action::parse("delete").is_err());
    }
}
