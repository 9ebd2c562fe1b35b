//! The worker under test: a separate `conveyor worker` process, so that
//! its RSS and CPU are its own, and what /proc tells about it.
//!
//! This module owns starting, reading and stopping that process. It must
//! never leave it running (dropping a [`WorkerProcess`] kills it), and never
//! measure anything but that process.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use super::Bench;

/// Resource use of a process, from /proc.
pub(super) struct Usage {
    pub(super) peak_rss_mb: f64,
    pub(super) rss_mb: f64,
    pub(super) cpu_seconds: f64,
}

impl Usage {
    /// Several processes together: CPU summed, the largest RSS.
    pub(super) fn total(usages: impl Iterator<Item = Usage>) -> Usage {
        usages.fold(
            Usage {
                peak_rss_mb: 0.0,
                rss_mb: 0.0,
                cpu_seconds: 0.0,
            },
            |sum, one| Usage {
                peak_rss_mb: sum.peak_rss_mb.max(one.peak_rss_mb),
                rss_mb: sum.rss_mb.max(one.rss_mb),
                cpu_seconds: sum.cpu_seconds + one.cpu_seconds,
            },
        )
    }
}

/// A `conveyor worker` child process on one queue.
pub(super) struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    pub(super) fn start(
        bench: &Bench,
        queue: &str,
        overrides: &[(String, String)],
    ) -> anyhow::Result<WorkerProcess> {
        let exe = std::env::current_exe().context("locating the conveyor binary")?;
        let mut command = Command::new(exe);
        if let Some(file) = &bench.config_file {
            command.arg("--config").arg(file);
        }
        command
            .arg("worker")
            .env("CONVEYOR__QUEUES__NAMES", queue)
            .env(
                "RUST_LOG",
                std::env::var("CONVEYOR_BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let child = command.spawn().context("starting the worker")?;
        Ok(WorkerProcess { child })
    }

    pub(super) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(super) fn usage(&self) -> Usage {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = |field: &str| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Usage {
            peak_rss_mb: kb("VmHWM:") / 1024.0,
            rss_mb: kb("VmRSS:") / 1024.0,
            cpu_seconds: cpu_seconds(pid),
        }
    }

    /// CPU use of the idle worker over `window`, in percent of one core.
    pub(super) async fn idle_cpu_percent(&self, window: Duration) -> f64 {
        // Let in-flight acks and the last batch settle first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = cpu_seconds(self.child.id());
        tokio::time::sleep(window).await;
        let after = cpu_seconds(self.child.id());
        (after - before) / window.as_secs_f64() * 100.0
    }

    /// SIGTERM and wait (the worker hands back anything unfinished).
    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the worker exited with {status}");
        Ok(())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU seconds of a process (/proc/PID/stat fields 14 and 15).
pub(super) fn cpu_seconds(pid: u32) -> f64 {
    /// Linux reports CPU time in clock ticks of 1/100 s on every supported platform.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; count fields after its ')'.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}
