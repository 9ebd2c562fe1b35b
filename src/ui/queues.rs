//! The queue pages: `/ui/queues` (every queue's depths) and
//! `/ui/queues/{q}` (its waiting, due-again, scheduled and running jobs,
//! paged, newest or oldest first).
//!
//! It reads through `redis_queue`'s bounded views only. It must never
//! change a queue, and never read more than a page of it.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::UiError;
use super::guard::Viewer;
use super::overview::{snapshot, Snapshot};
use super::view::{html, rfc3339, summarize, Chrome, MessageSummary, Pager, PAGE_SIZE};
use crate::api::ApiState;
use crate::job::is_valid_queue_name;
use crate::redis_queue::{ListedJob, PageRequest, QueueDepths};

#[derive(Template)]
#[template(path = "ui/queues.html")]
struct QueuesPage {
    chrome: Chrome,
    snapshot: Snapshot,
}

pub(super) async fn list(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
) -> Result<HttpResponse, UiError> {
    let mut chrome = viewer.chrome("Queues", "queues");
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
    let page = QueuePage {
        chrome: viewer.chrome(&format!("Queue {queue}"), "queues"),
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
}
