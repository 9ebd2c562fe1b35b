//! `conveyor bench` runs every workload end to end (tiny sizes: this checks
//! that it works and cleans up, not how fast anything is).

mod support;

use support::TestEnv;

/// Every workload reports its numbers as JSON and leaves nothing behind.
#[test]
fn bench_runs_every_workload_and_cleans_up() {
    let env = TestEnv::new();
    let args = [
        "bench",
        "--json",
        "--ceiling-rows",
        "1500",
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
    let reports = run_bench(&env, &args);
    let jobs: Vec<u64> = reports
        .iter()
        .map(|r| r["jobs"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(jobs, vec![1500, 300, 200, 100, 500, 420]);
    // The ceiling starts no worker, so it has no RSS of its own.
    for report in &reports[1..] {
        assert!(
            report["jobs_per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
        assert!(
            report["peak_rss_mb"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
    }
    assert!(reports[0]["ceiling"]["mariadb_rows_per_s"].as_f64() > Some(0.0));
    assert!(reports[1]["fraction_of_mariadb_ceiling"].as_f64() > Some(0.0));
    assert!(reports[3]["latency_ms"]["p99"].as_f64().is_some());
    assert!(reports[4]["idle_cpu_percent"].as_f64().is_some());
    assert!(reports[5]["latency_ms"]["p99"].as_f64().is_some());
    assert_eq!(env.count_rows(), 0, "bench rows were not cleaned up");
    assert!(env.leftover_keys().is_empty(), "{:?}", env.leftover_keys());
}

/// The ceiling reports MariaDB's and Redis' bare rates, W1 its fraction of
/// MariaDB's, and W1 runs into a prefilled table whose rows are removed after.
#[test]
fn ceiling_and_prefilled_w1_report_their_figures_and_clean_up() {
    let env = TestEnv::new();
    let args = [
        "bench",
        "--json",
        "--workloads",
        "ceiling,w1",
        "--ceiling-rows",
        "2500",
        "--w1-jobs",
        "300",
        "--prefill-rows",
        "7000",
    ];
    let reports = run_bench(&env, &args);
    assert_eq!(reports.len(), 2, "{reports:?}");
    let (ceiling, w1) = (&reports[0], &reports[1]);
    assert_eq!(ceiling["workload"], "ceiling");
    assert_eq!(ceiling["jobs"], 2500);
    for field in [
        "mariadb_rows_per_s",
        "redis_lpush_per_s",
        "redis_rpop_per_s",
    ] {
        let rate = ceiling["ceiling"][field].as_f64().unwrap_or(0.0);
        assert!(rate > 0.0, "{field}: {ceiling}");
    }
    let fraction = w1["fraction_of_mariadb_ceiling"].as_f64().unwrap_or(0.0);
    let expected = w1["jobs_per_s"].as_f64().unwrap_or(0.0)
        / ceiling["ceiling"]["mariadb_rows_per_s"]
            .as_f64()
            .unwrap_or(1.0);
    assert!(fraction > 0.0, "{w1}");
    assert!((fraction - expected).abs() < 1e-9, "{w1}");
    let config = w1["config"].as_str().unwrap_or("");
    assert!(config.contains("holding 7000 other rows"), "{config}");
    assert_eq!(env.count_rows(), 0, "bench rows were not cleaned up");
    let scratch: Vec<String> = env.query("SHOW TABLES LIKE 'conveyor_bench_ceiling%'");
    assert!(scratch.is_empty(), "{scratch:?}");
    assert!(env.leftover_keys().is_empty(), "{:?}", env.leftover_keys());
}

/// Runs `conveyor bench` to its end and returns its JSON reports.
fn run_bench(env: &TestEnv, args: &[&str]) -> Vec<serde_json::Value> {
    let mut bench = env.conveyor(args, &[]);
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
    serde_json::from_str(&json_text[..json_end]).expect("valid JSON")
}
