//! The overview (`/ui/`): totals, throughput over the last hour (or 24 h),
//! every queue's depth and latency, and the workers alive; plus the JSON
//! the page's script polls (`/ui/overview.json`, `/ui/history.json`).
//!
//! It reads through the same `redis_queue` and `store` functions as the
//! JSON API. It must never change anything.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::error::UiError;
use super::guard::Viewer;
use super::view::{html, human_duration, rfc3339, summarize, Chrome};
use crate::api::ApiState;
use crate::job::now_ms;
use crate::redis_queue::Throughput;
use crate::store;

/// One queue's line on the overview.
#[derive(Debug, Clone, Serialize)]
pub(super) struct QueueLine {
    pub name: String,
    pub pending: u64,
    pub running: u64,
    pub scheduled: u64,
    pub dead: u64,
    /// Age of the oldest waiting job ("-" when none, or it has no enqueue time).
    pub latency: String,
    /// Whether workers start its jobs: `active` or `paused`.
    pub state: &'static str,
}

impl QueueLine {
    pub(super) fn paused(&self) -> bool {
        self.state == "paused"
    }
}

/// The numbers of the overview, as the page and its JSON show them.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Snapshot {
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
    pub dead_letters: u64,
    pub workers: usize,
    pub queues: BTreeMap<String, QueueLine>,
}

/// The queues to show: the configured ones, every queue Redis holds
/// something of (as `GET /queues` lists them), and every queue with dead jobs.
pub(super) async fn snapshot(state: &ApiState) -> Result<Snapshot, UiError> {
    let dead_counts: BTreeMap<String, u64> = store::dead_counts(state.pool())
        .await?
        .into_iter()
        .collect();
    let mut names: Vec<String> = state.settings().queues.names.clone();
    let others = state.redis().queues_in_redis().await?;
    for name in others.into_iter().chain(dead_counts.keys().cloned()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let now = now_ms();
    let mut queues = BTreeMap::new();
    for name in names {
        let depths = state.redis().depths(&name).await?;
        let latency = state
            .redis()
            .oldest_waiting(&name)
            .await?
            .and_then(|raw| summarize(&raw).enqueued_at_ms)
            .map_or_else(|| "-".to_string(), |at| human_duration(now - at));
        let line = QueueLine {
            dead: dead_counts.get(&name).copied().unwrap_or(0),
            name: name.clone(),
            pending: depths.pending,
            running: depths.running,
            scheduled: depths.scheduled,
            latency,
            state: if depths.paused { "paused" } else { "active" },
        };
        queues.insert(name, line);
    }
    let totals = state.redis().throughput_totals().await?;
    Ok(Snapshot {
        succeeded: totals.succeeded,
        failed: totals.failed(),
        dead: dead_counts.values().sum(),
        dead_letters: totals.dead_letters,
        workers: state.redis().worker_beacons().await?.len(),
        queues,
    })
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    snapshot: Snapshot,
    range: &'static str,
    /// The last minutes, newest first, for readers without the chart.
    recent: Vec<(String, Throughput)>,
}

#[derive(Deserialize)]
pub(super) struct RangeQuery {
    #[serde(default)]
    range: String,
    #[serde(default)]
    notice: String,
}

/// `1h` (default) or `24h`, as minutes.
fn range_of(text: &str) -> Result<(&'static str, i64), UiError> {
    match text {
        "" | "1h" => Ok(("1h", 60)),
        "24h" => Ok(("24h", 24 * 60)),
        other => Err(UiError::BadRequest(format!(
            "range must be 1h or 24h, got {:?}",
            super::view::shorten(other, 40)
        ))),
    }
}

pub(super) async fn page(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, UiError> {
    let (range, _) = range_of(&query.range)?;
    let snapshot = snapshot(&state).await?;
    let recent = state
        .redis()
        .throughput_history(now_ms(), 10)
        .await?
        .into_iter()
        .rev()
        .map(|(minute, counts)| (rfc3339(minute * 60_000), counts))
        .collect();
    let mut chrome = viewer.chrome("Overview", "overview");
    chrome.notice = super::queues::notice_text(&query.notice);
    chrome.live_source = Some("/ui/overview.json");
    let page = OverviewPage {
        chrome,
        snapshot,
        range,
        recent,
    };
    Ok(html(StatusCode::OK, &page))
}

pub(super) async fn json(state: web::Data<ApiState>) -> Result<HttpResponse, UiError> {
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(snapshot(&state).await?))
}

/// Per-minute history as columns: `{"minutes", "succeeded", "failed"}`.
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct History {
    pub minutes: Vec<i64>,
    pub succeeded: Vec<u64>,
    pub failed: Vec<u64>,
}

pub(super) fn columns(rows: &[(i64, Throughput)]) -> History {
    History {
        minutes: rows.iter().map(|(m, _)| *m).collect(),
        succeeded: rows.iter().map(|(_, t)| t.succeeded).collect(),
        failed: rows.iter().map(|(_, t)| t.failed()).collect(),
    }
}

pub(super) async fn history(
    state: web::Data<ApiState>,
    query: web::Query<RangeQuery>,
) -> Result<HttpResponse, UiError> {
    let (_, minutes) = range_of(&query.range)?;
    let rows = state.redis().throughput_history(now_ms(), minutes).await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(columns(&rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_columns_line_up() {
        let rows = [
            (
                10,
                Throughput {
                    succeeded: 5,
                    dead: 1,
                    retried: 2,
                    dead_letters: 0,
                },
            ),
            (11, Throughput::default()),
        ];
        assert_eq!(
            columns(&rows),
            History {
                minutes: vec![10, 11],
                succeeded: vec![5, 0],
                failed: vec![3, 0]
            }
        );
    }

    #[test]
    fn ranges_are_one_hour_or_a_day() {
        assert_eq!(range_of("").ok(), Some(("1h", 60)));
        assert_eq!(range_of("24h").ok(), Some(("24h", 1440)));
        assert!(range_of("<script>").is_err());
    }
}
