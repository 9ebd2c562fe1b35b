//! Limiters (`/ui/limiters`): every limiter in force — the configuration's,
//! with the definitions changed at run time laid over them — with its
//! selector, its limits, the jobs holding its slots and the jobs it holds
//! back.
//!
//! It reads through [`crate::limiters::control::list`], the function behind
//! `GET /limiters` and `conveyor limiters`. It must never change a limiter.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::UiError;
use super::guard::Viewer;
use super::view::{html, Chrome};
use crate::api::ApiState;
use crate::limiters::control::{self, LimiterView};

#[derive(Template)]
#[template(path = "ui/limiters.html")]
struct LimitersPage {
    chrome: Chrome,
    limiters: Vec<LimiterView>,
}

pub(super) async fn list(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
) -> Result<HttpResponse, UiError> {
    let settings = state.settings();
    let configured = settings.limiters().map_err(|e| {
        UiError::Unavailable(format!("the configured limiters cannot be used: {e}"))
    })?;
    let limiters = control::list(&configured, state.redis(), &settings.queues.names).await?;
    let mut chrome = viewer.chrome("Limiters", "limiters");
    chrome.refresh_ms = Some(5000);
    Ok(html(StatusCode::OK, &LimitersPage { chrome, limiters }))
}
