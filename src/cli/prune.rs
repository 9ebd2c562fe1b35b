//! `conveyor prune [--dry-run]`: one pruning pass now, the same a worker
//! runs every `results.prune_interval`, under the same lock.

use anyhow::Context as _;
use clap::Args;

use conveyor::config::Settings;
use conveyor::job::now_ms;
use conveyor::redact::redact_url;
use conveyor::retention::{count_due, prune, PruneReport};
use conveyor::store;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  CONVEYOR__RESULTS__RETENTION=30d conveyor prune --dry-run\n  conveyor prune --config prod.toml\n\nThe retention comes from results.retention and results.dead_retention.\nExit codes: 0 done, 2 error (no retention set, another process is pruning, or a server failed)."
)]
pub(crate) struct PruneArgs {
    /// Count the rows past their retention; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(super) async fn run(settings: Settings, args: PruneArgs) -> anyhow::Result<()> {
    let policy = settings.results.policy()?;
    anyhow::ensure!(
        policy.is_active(),
        "nothing to prune: results.retention and results.dead_retention are both unset (results are kept for ever)"
    );
    let pool = store::open_pool(&settings.mysql, 1)?;
    let now = now_ms();
    let result = if args.dry_run {
        count_due(&pool, &policy, now).await
    } else {
        let redis = super::connect_redis(&settings)?;
        let owner = format!("prune-command-{}", conveyor::worker::worker_id());
        let options = settings.results.prune_options()?;
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        let signals = actix_rt::spawn(async move {
            conveyor::worker::shutdown_signal().await;
            on_signal.cancel();
        });
        let result = prune(&pool, &redis, &policy, &options, &owner, now, &stop).await;
        signals.abort();
        result
    };
    pool.disconnect().await.ok();
    let report = result.with_context(|| format!("pruning {}", redact_url(&settings.mysql.url)))?;
    println!("{}", describe(&report, args.dry_run));
    Ok(())
}

fn describe(report: &PruneReport, dry_run: bool) -> String {
    let verb = match (dry_run, report.stopped) {
        (true, _) => "would delete",
        (false, true) => "stopped by a signal, the rest is left for the next pass; deleted",
        (false, false) => "deleted",
    };
    format!(
        "{verb} {} rows: {} job_results, {} dead_letters",
        report.total(),
        report.results,
        report.dead_letters
    )
}
