//! A worker with a kind of your own, beside the built-in ones.
//!
//! ```text
//! cargo run --example custom_kind
//! redis-cli LPUSH 'conveyor:{default}:pending' '{"kind":"word_count","payload":{"text":"to be or not to be"}}'
//! ```
//!
//! The row in `job_results` then holds `{"words": 6, "distinct": 4}`.

use std::collections::HashSet;

use conveyor::config::Settings;
use conveyor::kinds::{payload_as, JobError, Registry};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Text {
    text: String,
}

fn registry(settings: &Settings) -> Registry {
    // The built-in kinds, `http` and `gather` configured by `[kinds.http]`.
    let mut registry = Registry::with_builtins_configured(&settings.kinds);
    // CPU-bound: runs on a processor thread, one job after another.
    registry.register_blocking("word_count", |ctx, payload| {
        let Text { text } = payload_as("word_count", payload)?;
        ctx.check_deadline()?;
        let words: Vec<&str> = text.split_whitespace().collect();
        let distinct: HashSet<&str> = words.iter().copied().collect();
        Ok(json!({ "words": words.len(), "distinct": distinct.len() }))
    });
    // I/O-bound: many of these overlap on each processor thread.
    registry.register_async("delayed_echo", |_ctx, payload| async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if payload.is_null() {
            return Err(JobError::permanent("delayed_echo needs a payload"));
        }
        Ok(payload)
    });
    registry
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = Settings::load(None)?;
    let registry = registry(&settings);
    // Stops on SIGTERM or SIGINT, draining in-flight jobs first.
    conveyor::worker::run_until_signalled(settings, registry)?;
    Ok(())
}
