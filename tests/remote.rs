//! Remote services: Redis over TLS (`rediss://`) with an ACL user, MySQL
//! over TLS with a CA file, against local servers with a throw-away CA;
//! a wrong CA is retried and named; secrets never reach the logs.

mod support;

use std::time::Duration;

use serde_json::json;
use support::tls::TestCa;
use support::{job, MariaDb, RedisServer, TestEnv};

const WAIT: Duration = Duration::from_secs(90);
const REDIS_SECRET: &str = "redis-pw-8c1f";
const MYSQL_SECRET: &str = "mysql-pw-2b7e";

/// A Redis with a TLS port beside its plain one, a MariaDB with TLS, and
/// users that may only come in with their password (MySQL: only over TLS).
struct TlsServers {
    ca: TestCa,
    redis: RedisServer,
    tls_port: u16,
    mysql: MariaDb,
}

impl TlsServers {
    fn start() -> TlsServers {
        let ca = TestCa::new();
        let tls_port = support::free_port();
        let redis = RedisServer::start_with(ca.redis_args(tls_port));
        let mysql = MariaDb::start_with(ca.mariadb_args());
        let mut conn = redis.connection();
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "jobs", "on", &format!(">{REDIS_SECRET}")][..])
            .arg(&["~*", "&*", "+@all"][..])
            .query(&mut conn)
            .expect("ACL SETUSER");
        mysql.root_sql(&format!(
            "CREATE USER 'tls'@'127.0.0.1' IDENTIFIED BY '{MYSQL_SECRET}' REQUIRE SSL;
             GRANT ALL ON *.* TO 'tls'@'127.0.0.1';"
        ));
        TlsServers {
            ca,
            redis,
            tls_port,
            mysql,
        }
    }

    /// Settings for a worker that reaches both only over TLS, trusting `ca`.
    fn settings(&self, env: &TestEnv, redis_ca: &str, mysql_ca: &str) -> Vec<(String, String)> {
        [
            (
                "CONVEYOR__REDIS__URL",
                format!("rediss://jobs:{REDIS_SECRET}@127.0.0.1:{}", self.tls_port),
            ),
            ("CONVEYOR__REDIS__TLS_CA_FILE", redis_ca.to_string()),
            (
                "CONVEYOR__MYSQL__URL",
                format!(
                    "mysql://tls:{MYSQL_SECRET}@127.0.0.1:{}/{}",
                    self.mysql.port, env.database
                ),
            ),
            ("CONVEYOR__MYSQL__TLS_CA_FILE", mysql_ca.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

fn borrowed(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn assert_no_secrets(log: &str) {
    assert!(!log.contains(REDIS_SECRET), "redis password logged:\n{log}");
    assert!(!log.contains(MYSQL_SECRET), "mysql password logged:\n{log}");
}

/// Jobs flow end to end over TLS to both servers, as an ACL user on Redis
/// and a REQUIRE SSL user on MySQL; `conveyor stats` works the same way.
#[test]
fn jobs_run_over_tls_with_acl_users() {
    let servers = TlsServers::start();
    let env = TestEnv::on(&servers.redis, &servers.mysql);
    let ca = servers.ca.ca_file();
    let settings = servers.settings(&env, &ca, &ca);
    let jobs: Vec<String> = (0..300)
        .map(|i| job("noop", Some(&format!("tls-{i:03}")), json!(i)))
        .collect();
    env.push("default", &jobs);
    let mut worker = env.worker(&borrowed(&settings));
    env.wait_for_rows(300, WAIT);
    let mut conn = env.redis();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut conn)
        .expect("CLIENT LIST");
    assert!(clients.contains("user=jobs"), "{clients}");
    let (code, output) = env.conveyor_output(&["stats", "--json"], &borrowed(&settings));
    assert_eq!(code, 0, "{output}");
    assert_eq!(worker.stop(), 0, "{}", worker.log());
    let rows = env.rows();
    assert_eq!(rows.len(), 300);
    assert!(rows.iter().all(|r| r.status == "succeeded"));
    assert_no_secrets(&worker.log());
    assert_no_secrets(&output);
}

/// A CA that did not sign the server's certificate: the worker keeps
/// retrying and names the setting to fix, for MySQL and for Redis; a CA
/// file that holds no certificate stops it at start.
#[test]
fn a_wrong_ca_is_retried_and_named() {
    let servers = TlsServers::start();
    let env = TestEnv::on(&servers.redis, &servers.mysql);
    let right = servers.ca.ca_file();
    let other = TestCa::new();
    let wrong = other.ca_file();

    let settings = servers.settings(&env, &right, &wrong);
    let mut worker = env.worker(&borrowed(&settings));
    worker.wait_for_log("check mysql.tls_ca_file", WAIT);
    assert!(worker.is_running(), "{}", worker.log());
    assert_no_secrets(&worker.log());
    worker.kill9();

    let settings = servers.settings(&env, &wrong, &right);
    env.push("default", &[job("noop", Some("after-fix"), json!(1))]);
    let mut worker = env.worker(&borrowed(&settings));
    worker.wait_for_log("check redis.tls_ca_file", WAIT);
    std::thread::sleep(Duration::from_millis(500));
    assert!(worker.is_running(), "{}", worker.log());
    assert_eq!(env.count_rows(), 0, "nothing runs without a trusted Redis");
    assert_no_secrets(&worker.log());
    worker.kill9();

    let settings = servers.settings(&env, &right, &right);
    let mut worker = env.worker(&borrowed(&settings));
    env.wait_for_rows(1, WAIT);
    assert_eq!(worker.stop(), 0, "{}", worker.log());

    let not_pem = other.path("ca.key").display().to_string();
    let settings = servers.settings(&env, &right, &not_pem);
    let mut worker = env.worker(&borrowed(&settings));
    assert_eq!(worker.wait_exit(WAIT), 2, "{}", worker.log());
    assert!(
        worker
            .log()
            .contains("mysql.tls_ca_file holds no PEM certificate"),
        "{}",
        worker.log()
    );
}

/// `conveyor bench --delay-us` runs the worker under test through the delay
/// proxies: every job still gets its row, and the report says so.
#[test]
fn bench_runs_w1_through_the_delay_proxy() {
    let env = TestEnv::new();
    let args = [
        "bench",
        "--json",
        "--workloads",
        "w1",
        "--w1-jobs",
        "2000",
        "--delay-us",
        "500",
    ];
    let (code, output) = env.conveyor_output(&args, &[("CONVEYOR_BENCH_WORKER_LOG", "info")]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("Redis and MySQL behind a 500 us delay proxy each way"),
        "{output}"
    );
    // The worker under test was given the proxies' addresses, not the servers'.
    let start = output
        .lines()
        .find(|l| l.contains("starting: redis "))
        .unwrap_or_else(|| panic!("no start line in:\n{output}"));
    let servers = support::shared();
    assert!(
        !start.contains(&format!(":{}", servers.redis.port)),
        "{start}"
    );
    assert!(
        !start.contains(&format!(":{}/", servers.mysql.port)),
        "{start}"
    );
    assert_eq!(env.count_rows(), 0, "bench rows were not cleaned up");
}
