//! A worker with fault-injection kinds, for testing what a deployment does
//! when a handler takes the whole process down. Never register these in a
//! worker that takes jobs from untrusted producers.
//!
//! - `abort`: calls `std::process::abort()` — the process dies at once, as on
//!   a segfault or an OOM kill, with the job still held in Redis.
//!
//! ```text
//! cargo run --example fault_injection
//! redis-cli LPUSH 'conveyor:{default}:pending' '{"kind":"abort","max_attempts":2}'
//! ```
//!
//! Restarted after each crash (as a container would be), the worker's Reaper
//! recovers the job after `recovery.lease_ms`, counting an attempt; after
//! `max_attempts` crashes the job's row is `dead` with the reason.

use conveyor::config::Settings;
use conveyor::kinds::Registry;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut registry = Registry::with_builtins();
    registry.register_blocking("abort", |ctx, _payload| {
        log::error!(target: "conveyor::fault_injection", "job {} aborts the process", ctx.id);
        std::process::abort()
    });
    let settings = Settings::load(None)?;
    // Stops on SIGTERM or SIGINT, draining in-flight jobs first.
    conveyor::worker::run_until_signalled(settings, registry)?;
    Ok(())
}
