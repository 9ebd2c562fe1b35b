//! The API's own Prometheus collectors: requests by route and status,
//! request durations, jobs accepted, and queue depths read at scrape time.
//!
//! This module owns the route labels (a fixed set, so clients cannot create
//! series). It must never touch the worker's collectors: `/metrics` gathers
//! both registries side by side.

use prometheus::proto::MetricFamily;
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use crate::metrics::{MetricsError, Reg};
use crate::redis_queue::QueueDepths;

const REQUEST_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug)]
/// The API's own Prometheus collectors (requests, accepted jobs, queue depths).
pub struct ApiMetrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    accepted: IntCounterVec,
    duplicates: IntCounterVec,
    queue_depth: IntGaugeVec,
    queue_paused: IntGaugeVec,
}

impl ApiMetrics {
    /// Registers the collectors.
    pub fn new() -> Result<ApiMetrics, MetricsError> {
        let registry = Registry::new();
        let reg = Reg(&registry);
        Ok(ApiMetrics {
            requests: reg.counter_vec(
                "conveyor_api_requests_total",
                "HTTP API requests by method, route and status.",
                &["method", "route", "status"],
            )?,
            request_seconds: reg.histogram_vec(
                "conveyor_api_request_duration_seconds",
                "HTTP API request durations by route.",
                &["route"],
                REQUEST_SECONDS_BUCKETS,
            )?,
            accepted: reg.counter_vec(
                "conveyor_api_jobs_accepted_total",
                "Jobs the HTTP API accepted into a queue.",
                &["queue"],
            )?,
            duplicates: reg.counter_vec(
                "conveyor_api_duplicates_refused_total",
                "Jobs the HTTP API refused because another job held their unique_key.",
                &["queue"],
            )?,
            queue_depth: reg.gauge_vec(
                "conveyor_queue_depth",
                "Jobs of a queue in Redis by state, read at scrape time.",
                &["queue", "state"],
            )?,
            queue_paused: reg.gauge_vec(
                "conveyor_queue_paused",
                "1 while a queue is paused (no job of it starts), read at scrape time.",
                &["queue"],
            )?,
            registry,
        })
    }

    /// Counts one request and its duration.
    pub fn observe_request(&self, method: &str, path: &str, status: u16, seconds: f64) {
        let route = route_label(path);
        self.requests
            .with_label_values(&[method_label(method), route, &status.to_string()])
            .inc();
        self.request_seconds
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// Counts a submission refused because its unique key was held.
    pub fn duplicate_refused(&self, queue: &str) {
        self.duplicates.with_label_values(&[queue]).inc();
    }

    /// Counts jobs accepted into `queue`.
    pub fn accepted(&self, queue: &str, jobs: usize) {
        self.accepted
            .with_label_values(&[queue])
            .inc_by(jobs as u64);
    }

    /// Sets the depth gauges of `queue`.
    pub fn set_depths(&self, queue: &str, depths: &QueueDepths) {
        for (state, value) in [
            ("pending", depths.pending),
            ("running", depths.running),
            ("scheduled", depths.scheduled),
        ] {
            self.queue_depth
                .with_label_values(&[queue, state])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        self.queue_paused
            .with_label_values(&[queue])
            .set(i64::from(depths.paused));
    }

    /// Drops a queue's depth series (Redis did not answer): no stale values.
    pub fn clear_depths(&self, queue: &str) {
        for state in ["pending", "running", "scheduled"] {
            let _ = self.queue_depth.remove_label_values(&[queue, state]);
        }
        let _ = self.queue_paused.remove_label_values(&[queue]);
    }

    /// Everything for `/metrics`.
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }
}

/// The route a path belongs to, from the fixed set of routes.
fn route_label(path: &str) -> &'static str {
    match path {
        "/jobs" => "/jobs",
        "/jobs/batch" => "/jobs/batch",
        "/queues" => "/queues",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        "/schedules" => "/schedules",
        p if p.starts_with("/jobs/") && !p[6..].contains('/') => "/jobs/{id}",
        p if p.starts_with("/queues/") && p.ends_with("/pause") => "/queues/{queue}/pause",
        p if p.starts_with("/queues/") && p.ends_with("/resume") => "/queues/{queue}/resume",
        p => schedule_route(p).unwrap_or("other"),
    }
}

/// `/schedules/{name}/trigger|pause|resume`.
fn schedule_route(path: &str) -> Option<&'static str> {
    let (name, action) = path.strip_prefix("/schedules/")?.split_once('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    match action {
        "trigger" => Some("/schedules/{name}/trigger"),
        "pause" => Some("/schedules/{name}/pause"),
        "resume" => Some("/schedules/{name}/resume"),
        _ => None,
    }
}

fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_fixed_set() {
        assert_eq!(route_label("/jobs/abc"), "/jobs/{id}");
        assert_eq!(route_label("/jobs/batch"), "/jobs/batch");
        assert_eq!(route_label("/jobs/a/b"), "other");
        assert_eq!(route_label("/random"), "other");
        assert_eq!(route_label("/queues/a/pause"), "/queues/{queue}/pause");
        assert_eq!(route_label("/schedules/x/pause"), "/schedules/{name}/pause");
        assert_eq!(route_label("/schedules/x/y/pause"), "other");
        assert_eq!(method_label("BREW"), "other");
    }
}
