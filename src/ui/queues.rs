//! The queue pages: `/ui/queues` (every queue's depths and pause state) and
//! `/ui/queues/{q}` (its waiting, due-again, scheduled and running jobs,
//! paged, newest or oldest first); and pausing or resuming a queue.
//!
//! It reads through `redis_queue`'s bounded views only, and pauses or
//! resumes through the same call as `POST /queues/{q}/pause` (over
//! [`crate::control::set_paused`], like `conveyor queue pause`). It must
//! never read more than a page of a queue, and never change a queue on a
//! form whose CSRF token does not match.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::UiError;
use super::guard::{Authorized, CsrfField, Viewer};
use super::overview::{snapshot, Snapshot};
use super::view::{
    html, rfc3339, see_other, summarize, url_part, Chrome, MessageSummary, Pager, PAGE_SIZE,
};
use crate::api::control::pause_queue;
use crate::api::ApiState;
use crate::job::is_valid_queue_name;
use crate::redis_queue::{ListedJob, PageRequest, QueueDepths};

#[derive(Template)]
#[template(path = "ui/queues.html")]
struct QueuesPage {
    chrome: Chrome,
    snapshot: Snapshot,
}

/// The `?notice=` of a page a queue action returns to.
#[derive(Deserialize)]
pub(super) struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

/// A short fixed message for a queue action's `?notice=` (never echoes it).
pub(super) fn notice_text(code: &str) -> Option<String> {
    match code {
        "paused" => Some(
            "Paused: every worker stops starting its jobs within a second; running jobs finish, new jobs are still accepted.".into(),
        ),
        "resumed" => Some("Resumed: workers start its jobs again.".into()),
        _ => None,
    }
}

pub(super) async fn list(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, UiError> {
    let mut chrome = viewer.chrome("Queues", "queues");
    chrome.notice = notice_text(&query.notice);
    chrome.live_source = Some("/ui/overview.json");
    let page = QueuesPage {
        chrome,
        snapshot: snapshot(&state).await?,
    };
    Ok(html(StatusCode::OK, &page))
}

/// Which jobs of a queue a page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tab {
    Waiting,
    Due,
    Scheduled,
    Running,
}

impl Tab {
    fn parse(text: &str) -> Result<Tab, UiError> {
        match text {
            "" | "waiting" => Ok(Tab::Waiting),
            "due" => Ok(Tab::Due),
            "scheduled" => Ok(Tab::Scheduled),
            "running" => Ok(Tab::Running),
            other => Err(UiError::BadRequest(format!(
                "tab must be waiting, due, scheduled or running, got {:?}",
                super::view::shorten(other, 40)
            ))),
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Tab::Waiting => "waiting",
            Tab::Due => "due",
            Tab::Scheduled => "scheduled",
            Tab::Running => "running",
        }
    }
}

#[derive(Deserialize)]
pub(super) struct QueueQuery {
    #[serde(default)]
    tab: String,
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    order: String,
    #[serde(default)]
    notice: String,
}

/// One line of a queue listing.
pub(super) struct Line {
    pub summary: MessageSummary,
    pub attempts: u32,
    pub due: Option<String>,
    pub worker: Option<String>,
    pub enqueued: String,
}

impl Line {
    fn of(job: ListedJob) -> Line {
        let summary = summarize(&job.message);
        Line {
            enqueued: summary
                .enqueued_at_ms
                .map_or_else(|| "-".to_string(), rfc3339),
            summary,
            attempts: job.attempts,
            due: job.due_ms.map(rfc3339),
            worker: job.worker,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/queue.html")]
struct QueuePage {
    chrome: Chrome,
    queue: String,
    depths: QueueDepths,
    tab: &'static str,
    oldest_first: bool,
    lines: Vec<Line>,
    pager: Pager,
    /// Listings that are a sample, not ordered pages (running jobs).
    sample: bool,
}

/// A queue name from the URL, checked.
pub(super) fn checked_queue(name: &str) -> Result<String, UiError> {
    if is_valid_queue_name(name) {
        Ok(name.to_string())
    } else {
        Err(UiError::BadRequest(format!(
            "{:?} is not a queue name: queue names are 1-64 characters of A-Z a-z 0-9 _ . -",
            super::view::shorten(name, 80)
        )))
    }
}

pub(super) async fn show(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    name: web::Path<String>,
    query: web::Query<QueueQuery>,
) -> Result<HttpResponse, UiError> {
    let queue = checked_queue(&name)?;
    let tab = Tab::parse(&query.tab)?;
    let oldest_first = match query.order.as_str() {
        "" | "newest" => false,
        "oldest" => true,
        _ => return Err(UiError::BadRequest("order must be newest or oldest".into())),
    };
    let page_no = query.page.unwrap_or(1).max(1);
    let request = PageRequest {
        offset: Pager::offset(page_no),
        limit: PAGE_SIZE,
        oldest_first,
    };
    let redis = state.redis();
    let depths = redis.depths(&queue).await?;
    let jobs: Vec<ListedJob> = match tab {
        Tab::Waiting => redis
            .waiting(&queue, request)
            .await?
            .into_iter()
            .map(|message| ListedJob {
                token: None,
                message,
                due_ms: None,
                worker: None,
                attempts: 0,
            })
            .collect(),
        Tab::Due => redis.due_again(&queue, PAGE_SIZE).await?,
        Tab::Scheduled => redis.scheduled(&queue, request).await?,
        Tab::Running => redis.running(&queue, PAGE_SIZE).await?,
    };
    let paged = matches!(tab, Tab::Waiting | Tab::Scheduled);
    let pager = if paged {
        Pager::new(page_no, jobs.len(), None)
    } else {
        Pager::new(1, 0, None)
    };
    let mut chrome = viewer.chrome(&format!("Queue {queue}"), "queues");
    chrome.notice = notice_text(&query.notice);
    let page = QueuePage {
        chrome,
        queue,
        depths,
        tab: tab.name(),
        oldest_first,
        lines: jobs.into_iter().map(Line::of).collect(),
        pager,
        sample: !paged,
    };
    Ok(html(StatusCode::OK, &page))
}

/// The form of a pause or resume button: the CSRF token, and the page it
/// came from (`overview`, `queues`, else the queue's own page).
#[derive(Deserialize)]
pub(super) struct PauseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    from: String,
}

impl CsrfField for PauseForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `pause` or `resume` from the URL: whether the queue ends up paused.
fn pausing(action: &str) -> Result<bool, UiError> {
    match action {
        "pause" => Ok(true),
        "resume" => Ok(false),
        _ => Err(UiError::NotFound(
            "queue actions are pause and resume".into(),
        )),
    }
}

/// Where a pause or resume button returns to (a fixed page, never the form's text).
fn return_path(from: &str, queue: &str, notice: &str) -> String {
    match from {
        "overview" => format!("/ui/?notice={notice}"),
        "queues" => format!("/ui/queues?notice={notice}"),
        _ => format!("/ui/queues/{}?notice={notice}", url_part(queue)),
    }
}

/// `POST /ui/queues/{q}/pause` and `.../resume`.
pub(super) async fn act(
    allowed: Authorized<PauseForm>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UiError> {
    let (name, action) = path.into_inner();
    let queue = checked_queue(&name)?;
    let paused = pausing(&action)?;
    pause_queue(&allowed.state, &queue, paused).await?;
    let notice = if paused { "paused" } else { "resumed" };
    Ok(see_other(&return_path(&allowed.form.from, &queue, notice)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_and_queue_names_are_checked() {
        assert_eq!(Tab::parse("").ok(), Some(Tab::Waiting));
        assert_eq!(Tab::parse("running").ok(), Some(Tab::Running));
        assert!(Tab::parse("<x>").is_err());
        assert!(checked_queue("emails.v2").is_ok());
        assert!(checked_queue("bad name").is_err());
        assert!(checked_queue("<script>").is_err());
    }

    #[test]
    fn queue_actions_are_pause_and_resume() {
        assert_eq!(pausing("pause").ok(), Some(true));
        assert_eq!(pausing("resume").ok(), Some(false));
        assert!(pausing("delete").is_err());
    }

    #[test]
    fn a_queue_action_returns_to_a_fixed_page() {
        assert_eq!(return_path("overview", "q", "paused"), "/ui/?notice=paused");
        assert_eq!(
            return_path("queues", "q", "resumed"),
            "/ui/queues?notice=resumed"
        );
        assert_eq!(
            return_path("https://evil.example/", "a.b-c", "paused"),
            "/ui/queues/a.b-c?notice=paused"
        );
        assert!(notice_text("paused").is_some());
        assert!(notice_text("<script>").is_none());
    }
}
