//! Workers (`/ui/workers`): every worker alive (from its beacon: host,
//! version, start time, processors × concurrency, in flight, mailbox
//! depths) and the leases each queue holds.
//!
//! It must never change anything.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::UiError;
use super::guard::Viewer;
use super::view::{html, human_duration, rfc3339, Chrome};
use crate::api::ApiState;
use crate::job::now_ms;
use crate::redis_queue::WorkerBeacon;

/// A worker's line.
pub(super) struct Line {
    pub beacon: WorkerBeacon,
    pub started: String,
    pub up: String,
    pub seen: String,
}

/// A lease of a worker on a queue.
pub(super) struct Lease {
    pub queue: String,
    pub worker: String,
    /// "in 24s" or "expired 3s ago".
    pub deadline: String,
    pub expired: bool,
}

#[derive(Template)]
#[template(path = "ui/workers.html")]
struct WorkersPage {
    chrome: Chrome,
    lines: Vec<Line>,
    leases: Vec<Lease>,
}

pub(super) async fn page(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
) -> Result<HttpResponse, UiError> {
    let now = now_ms();
    let lines = state
        .redis()
        .worker_beacons()
        .await?
        .into_iter()
        .map(|beacon| Line {
            started: rfc3339(beacon.started_at_ms),
            up: human_duration(now - beacon.started_at_ms),
            seen: human_duration(now - beacon.seen_at_ms),
            beacon,
        })
        .collect();
    let mut leases = Vec::new();
    for queue in &state.settings().queues.names {
        for (worker, deadline) in state.redis().workers(queue).await? {
            let expired = deadline < now;
            leases.push(Lease {
                queue: queue.clone(),
                worker,
                deadline: if expired {
                    format!("expired {} ago", human_duration(now - deadline))
                } else {
                    format!("in {}", human_duration(deadline - now))
                },
                expired,
            });
        }
    }
    let mut chrome = viewer.chrome("Workers", "workers");
    chrome.refresh_ms = Some(5000);
    Ok(html(
        StatusCode::OK,
        &WorkersPage {
            chrome,
            lines,
            leases,
        },
    ))
}
