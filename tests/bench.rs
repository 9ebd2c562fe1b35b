//! `conveyor bench` runs every workload end to end (tiny sizes: this checks
//! that it works and cleans up, not how fast anything is).

mod support;

use support::TestEnv;

/// All five workloads report their numbers as JSON and leave nothing behind.
#[test]
fn bench_runs_every_workload_and_cleans_up() {
    let env = TestEnv::new();
    let args = [
        "bench",
        "--json",
        "--w1-jobs",
        "300",
        "--w2-jobs",
        "200",
        "--w2-slots",
        "20",
        "--w3-rate",
        "100",
        "--w3-seconds",
        "1",
        "--w4-jobs",
        "500",
        "--w4-seconds",
        "1",
        "--idle-seconds",
        "1",
        "--w5-heavy",
        "400",
        "--w5-light",
        "20",
    ];
    let mut bench = env.conveyor(&args, &[]);
    let code = bench.wait_exit(std::time::Duration::from_secs(180));
    let output = bench.log();
    assert_eq!(code, 0, "{output}");
    // The pretty-printed JSON array opens on a line of its own; log lines come before it.
    let json_start = output
        .find("\n[\n")
        .map(|i| i + 1)
        .or_else(|| output.starts_with("[\n").then_some(0));
    let json_text = &output[json_start.expect("JSON output")..];
    let json_end = json_text.find("\n]").expect("end of the JSON array") + 2;
    let reports: Vec<serde_json::Value> =
        serde_json::from_str(&json_text[..json_end]).expect("valid JSON");
    let jobs: Vec<u64> = reports
        .iter()
        .map(|r| r["jobs"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(jobs, vec![300, 200, 100, 500, 420]);
    for report in &reports {
        assert!(
            report["jobs_per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
        assert!(
            report["peak_rss_mb"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
    }
    assert!(reports[2]["latency_ms"]["p99"].as_f64().is_some());
    assert!(reports[3]["idle_cpu_percent"].as_f64().is_some());
    assert!(reports[4]["latency_ms"]["p99"].as_f64().is_some());
    assert_eq!(env.count_rows(), 0, "bench rows were not cleaned up");
    assert!(env.leftover_keys().is_empty(), "{:?}", env.leftover_keys());
}
