//! `stats`: descriptive statistics of `{"values": [numbers]}` — count, mean,
//! min, max, population stddev and the p50/p90/p99 percentiles (nearest rank).
//! A small CPU-bound kind.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{payload_as, JobContext, JobError, JobResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsPayload {
    values: Vec<f64>,
}

pub(super) fn run(ctx: &JobContext, payload: Value) -> JobResult {
    let StatsPayload { mut values } = payload_as("stats", payload)?;
    if values.is_empty() {
        return Err(JobError::permanent(
            "invalid stats payload: values is empty",
        ));
    }
    ctx.check_deadline()?;
    values.sort_by(f64::total_cmp);
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / count;
    Ok(json!({
        "count": values.len(),
        "mean": mean,
        "min": values[0],
        "max": values[values.len() - 1],
        "stddev": variance.sqrt(),
        "p50": percentile(&values, 50.0),
        "p90": percentile(&values, 90.0),
        "p99": percentile(&values, 99.0),
    }))
}

/// Nearest-rank percentile of sorted, non-empty `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> JobContext {
        JobContext {
            id: "t".into(),
            queue: "q".into(),
            kind: "stats".into(),
            attempt: 1,
            max_attempts: 1,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(5),
            cancel: Default::default(),
        }
    }

    #[test]
    fn known_values() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let out = run(&ctx(), json!({ "values": values })).expect("stats");
        assert_eq!(out["count"], 100);
        assert_eq!(out["mean"], 50.5);
        assert_eq!(out["min"], 1.0);
        assert_eq!(out["max"], 100.0);
        assert_eq!(out["p50"], 50.0);
        assert_eq!(out["p90"], 90.0);
        assert_eq!(out["p99"], 99.0);
        let stddev = out["stddev"].as_f64().expect("number");
        assert!((stddev - 28.866_070_047_722_12).abs() < 1e-9, "{stddev}");
    }

    #[test]
    fn bad_payloads_are_permanent() {
        for payload in [json!({}), json!({"values": []}), json!({"values": ["x"]})] {
            let err = run(&ctx(), payload).expect_err("invalid");
            assert!(err.is_permanent());
        }
    }
}
