//! Dead jobs (`/ui/dead`): filtered by queue, kind, error text and age,
//! paged; retry or delete one (on the job page or its row), or all that
//! match after a confirmation page that shows how many.
//!
//! Filters become a [`DeadFilter`] and go through the same `store` and
//! [`crate::requeue`] functions as `conveyor dead`. It must never act on a
//! form whose CSRF token does not match, and never load a whole match:
//! a retry takes at most [`BULK_RETRY_LIMIT`] jobs per confirmation.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::UiError;
use super::guard::{Authorized, CsrfField, Viewer};
use super::queues::checked_queue;
use super::view::{html, printable, see_other, shorten, Chrome, Pager, PAGE_SIZE};
use crate::api::ApiState;
use crate::job::now_ms;
use crate::requeue;
use crate::store::{self, DeadFilter, DeadJob};

/// Most dead jobs one "retry all that match" enqueues (each is loaded
/// with its message); confirm again for the rest.
pub(super) const BULK_RETRY_LIMIT: u64 = 1000;

/// The filters of the page, as they travel in URLs and forms.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Filters {
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub error: String,
    /// Older than: "", 10m, 1h, 1d or 7d.
    #[serde(default)]
    pub age: String,
}

/// Ages the filter offers, in ms.
const AGES: &[(&str, i64)] = &[
    ("10m", 600_000),
    ("1h", 3_600_000),
    ("1d", 86_400_000),
    ("7d", 604_800_000),
];

impl Filters {
    /// The store filter these select, at `now_ms`.
    pub(super) fn to_filter(&self, now_ms: i64) -> Result<DeadFilter, UiError> {
        let text = |value: &str, field: &str| -> Result<Option<String>, UiError> {
            let value = value.trim();
            if value.chars().count() > 200 {
                return Err(UiError::BadRequest(format!(
                    "{field}: at most 200 characters"
                )));
            }
            Ok(Some(value.to_string()).filter(|v| !v.is_empty()))
        };
        let queue = match self.queue.trim() {
            "" => None,
            queue => Some(checked_queue(queue)?),
        };
        let before_ms = match self.age.as_str() {
            "" => None,
            age => {
                let Some((_, ms)) = AGES.iter().find(|(name, _)| *name == age) else {
                    return Err(UiError::BadRequest(
                        "age must be one of 10m, 1h, 1d, 7d".into(),
                    ));
                };
                Some(now_ms - ms)
            }
        };
        Ok(DeadFilter {
            queue,
            kind: text(&self.kind, "kind")?,
            error_contains: text(&self.error, "error")?,
            before_ms,
            ..DeadFilter::default()
        })
    }

    /// The filters as a query string (for links that keep them).
    pub(super) fn query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("queue", &self.queue)
            .append_pair("kind", &self.kind)
            .append_pair("error", &self.error)
            .append_pair("age", &self.age)
            .finish()
    }
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(flatten)]
    filters: Filters,
    /// Numbers as text: `flatten` hands every value over as a string.
    #[serde(default)]
    page: String,
    #[serde(default)]
    notice: String,
    #[serde(default)]
    n: String,
}

/// One dead job's line.
pub(super) struct Line {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub attempts: u32,
    pub finished: String,
    pub error: String,
}

fn first_line(text: Option<&str>) -> &str {
    text.and_then(|t| t.lines().next()).unwrap_or("-")
}

impl Line {
    fn of(job: DeadJob) -> Line {
        let r = job.record;
        Line {
            error: printable(&shorten(first_line(r.error.as_deref()), 160)),
            finished: r.finished_at.unwrap_or_else(|| "-".into()),
            id: r.id,
            queue: r.queue,
            kind: r.kind,
            attempts: r.attempts,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/dead.html")]
struct DeadPage {
    chrome: Chrome,
    filters: Filters,
    query: String,
    ages: Vec<&'static str>,
    queues: Vec<String>,
    total: u64,
    lines: Vec<Line>,
    pager: Pager,
}

/// A number from the query string; empty means absent.
fn number(text: &str, field: &str) -> Result<Option<u64>, UiError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| UiError::BadRequest(format!("{field} must be a whole number")))
}

fn notice_text(code: &str, n: u64) -> Option<String> {
    match code {
        "retried" => Some(format!("Enqueued {n} dead jobs again under their ids.")),
        "deleted" => Some(format!("Deleted {n} dead jobs.")),
        _ => None,
    }
}

pub(super) async fn list(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, UiError> {
    let query = query.into_inner();
    let mut filter = query.filters.to_filter(now_ms())?;
    let page_no = number(&query.page, "page")?.unwrap_or(1).max(1);
    let total = store::count_matching(state.pool(), &filter, false).await?;
    filter.limit = Some(PAGE_SIZE);
    filter.offset = Some(Pager::offset(page_no));
    let jobs = store::list_dead(state.pool(), &filter).await?;
    let mut queues: Vec<String> = store::dead_counts(state.pool())
        .await?
        .into_iter()
        .map(|(queue, _)| queue)
        .collect();
    queues.extend(
        state
            .settings()
            .queues
            .names
            .iter()
            .filter(|q| !queues.contains(q))
            .cloned()
            .collect::<Vec<_>>(),
    );
    queues.sort();
    let mut chrome = viewer.chrome("Dead jobs", "dead");
    chrome.notice = notice_text(&query.notice, number(&query.n, "n")?.unwrap_or(0));
    let page = DeadPage {
        chrome,
        query: query.filters.query(),
        filters: query.filters,
        ages: AGES.iter().map(|(name, _)| *name).collect(),
        queues,
        total,
        pager: Pager::new(page_no, jobs.len(), Some(total)),
        lines: jobs.into_iter().map(Line::of).collect(),
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub(super) struct ConfirmQuery {
    #[serde(flatten)]
    filters: Filters,
    #[serde(default)]
    action: String,
}

/// What a bulk action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bulk {
    Retry,
    Delete,
}

impl Bulk {
    fn parse(text: &str) -> Result<Bulk, UiError> {
        match text {
            "retry" => Ok(Bulk::Retry),
            "delete" => Ok(Bulk::Delete),
            _ => Err(UiError::BadRequest("action must be retry or delete".into())),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/dead_confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    filters: Filters,
    query: String,
    action: &'static str,
    total: u64,
    acting_on: u64,
}

pub(super) async fn confirm(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    query: web::Query<ConfirmQuery>,
) -> Result<HttpResponse, UiError> {
    let query = query.into_inner();
    let bulk = Bulk::parse(&query.action)?;
    let filter = query.filters.to_filter(now_ms())?;
    let total = store::count_matching(state.pool(), &filter, false).await?;
    let acting_on = match bulk {
        Bulk::Retry => total.min(BULK_RETRY_LIMIT),
        Bulk::Delete => total,
    };
    let page = ConfirmPage {
        chrome: viewer.chrome("Confirm", "dead"),
        query: query.filters.query(),
        filters: query.filters,
        action: if bulk == Bulk::Retry {
            "retry"
        } else {
            "delete"
        },
        total,
        acting_on,
    };
    Ok(html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub(super) struct BulkForm {
    #[serde(flatten)]
    filters: Filters,
    #[serde(default)]
    action: String,
    #[serde(default)]
    csrf: String,
}

impl CsrfField for BulkForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub(super) async fn bulk(allowed: Authorized<BulkForm>) -> Result<HttpResponse, UiError> {
    let (state, form) = (&allowed.state, &allowed.form);
    let bulk = Bulk::parse(&form.action)?;
    let mut filter = form.filters.to_filter(now_ms())?;
    let (code, n) = match bulk {
        Bulk::Retry => {
            filter.limit = Some(BULK_RETRY_LIMIT);
            let done = requeue::retry_dead(state.pool(), state.redis(), &filter).await?;
            ("retried", done.retried.len() as u64)
        }
        Bulk::Delete => ("deleted", store::purge(state.pool(), &filter, false).await?),
    };
    Ok(see_other(&format!(
        "/ui/dead?{}&notice={code}&n={n}",
        form.filters.query()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(queue: &str, age: &str) -> Filters {
        Filters {
            queue: queue.into(),
            kind: " resize ".into(),
            error: String::new(),
            age: age.into(),
        }
    }

    #[test]
    fn filters_become_a_store_filter() {
        let filter = filters("emails", "1h")
            .to_filter(10_000_000)
            .expect("valid");
        assert_eq!(filter.queue.as_deref(), Some("emails"));
        assert_eq!(filter.kind.as_deref(), Some("resize"));
        assert_eq!(filter.error_contains, None);
        assert_eq!(filter.before_ms, Some(10_000_000 - 3_600_000));
    }

    #[test]
    fn bad_filters_are_refused() {
        assert!(filters("no such/queue", "").to_filter(0).is_err());
        assert!(filters("", "1y").to_filter(0).is_err());
        let mut long = filters("", "");
        long.error = "x".repeat(201);
        assert!(long.to_filter(0).is_err());
    }

    #[test]
    fn the_query_keeps_every_filter() {
        let mut f = filters("a", "1d");
        f.error = "50% & more".into();
        assert_eq!(
            f.query(),
            "queue=a&kind=+resize+&error=50%25+%26+more&age=1d"
        );
    }
}
