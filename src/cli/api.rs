//! `conveyor api`: the HTTP API alone, without a worker.

use std::sync::Arc;

use clap::Args;

use conveyor::api::{ApiState, DEFAULT_BIND};
use conveyor::config::Settings;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conveyor api                          # api.bind, or 127.0.0.1:8080 when empty\n  CONVEYOR__API__TOKEN=s3cret conveyor api --bind 0.0.0.0:8080\n  curl -X POST localhost:8080/jobs -d '{\"kind\":\"noop\",\"payload\":{\"x\":1}}'"
)]
pub(super) struct ApiArgs {
    /// Address to listen on (host:port); overrides api.bind.
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
}

pub(super) async fn run(settings: Settings, args: ApiArgs) -> anyhow::Result<()> {
    let addr = args
        .bind
        .or_else(|| Some(settings.api.bind.clone()).filter(|b| !b.is_empty()))
        .unwrap_or_else(|| DEFAULT_BIND.to_string());
    let state = ApiState::new(Arc::new(settings), None)?;
    let (handle, _) = conveyor::api::start(&addr, state)?;
    conveyor::worker::shutdown_signal().await;
    tokio::select! {
        () = handle.stop(true) => Ok(()),
        // A second signal does not wait for requests in progress.
        () = conveyor::worker::shutdown_signal() => std::process::exit(130),
    }
}
