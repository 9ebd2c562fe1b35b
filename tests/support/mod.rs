// Test helpers are `pub` for the many test crates that each use a part.
#![allow(unreachable_pub)]
//! Test fixtures: real `redis-server` and `mariadbd` processes on free
//! loopback ports with throw-away data dirs, and the real `conveyor` binary.
//!
//! Each test binary starts one shared pair of servers on first use; every
//! test isolates itself with its own key prefix and database ([`TestEnv`]).
//! Fault tests start servers of their own ([`RedisServer::start`],
//! [`MariaDb::start`]) so they can stop and restart them.
//!
//! Every child process is started from one long-lived spawner thread with
//! `PR_SET_PDEATHSIG`, so no server outlives the test process, however it ends.
#![allow(dead_code, unsafe_code)]

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub mod cluster;
pub mod http;
pub mod tls;
pub mod ui;

/// How long a server may take to answer after it was started.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- processes

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from a thread that lives as long as the test process, with
/// SIGKILL as its parent-death signal (the signal follows the spawning thread).
pub fn spawn(mut command: Command) -> Child {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::spawn(move || {
            for (mut command, reply) in rx {
                // SAFETY: prctl is async-signal-safe and touches no memory of ours.
                unsafe {
                    command.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let _ = reply.send(command.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    command.stdin(Stdio::null());
    sender
        .lock()
        .expect("spawner lock")
        .send((command, reply_tx))
        .expect("spawner thread alive");
    reply_rx
        .recv()
        .expect("spawner answers")
        .expect("process starts")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local addr")
        .port()
}

pub fn wait_until(what: &str, timeout: Duration, ready: impl FnMut() -> bool) {
    assert!(
        ready_within(timeout, ready),
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Polls `ready` until it holds (true) or `timeout` passes (false).
fn ready_within(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The free space of the temp dir's file system, for failure messages.
fn temp_dir_space() -> String {
    Command::new("df")
        .arg("-h")
        .arg(std::env::temp_dir())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_else(|err| format!("df failed: {err}"))
}

/// The last `lines` lines of a server's log file.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|err| format!("({err})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on a pid we own.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

/// SIGKILL and reap, if still running.
fn kill_now(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// SIGTERM and wait for a clean exit, if still running.
fn stop_cleanly(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        signal(&child, libc::SIGTERM);
        let _ = child.wait();
    }
}

/// Name prefix of the data dirs of this process's servers.
fn server_dir_prefix(pid: u32) -> String {
    format!("conveyor-test-{pid}-")
}

/// A data dir for a server, named after this process. The servers shared
/// by a test binary live in a static that is never dropped, so their dirs
/// outlive the process; [`sweep_dead_dirs`] removes them on a later run.
fn server_dir() -> tempfile::TempDir {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(sweep_dead_dirs);
    tempfile::Builder::new()
        .prefix(&server_dir_prefix(std::process::id()))
        .tempdir()
        .expect("tempdir")
}

/// Removes the server dirs of test processes that are gone.
fn sweep_dead_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("conveyor-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------- redis

/// A `redis-server` on a free loopback port with AOF persistence.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(Vec::new())
    }

    /// A server with more command-line options (e.g. a TLS port beside
    /// the plain one).
    pub fn start_with(extra_args: Vec<String>) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: server_dir(),
            child: None,
            extra_args,
        };
        server.boot();
        server
    }

    fn boot(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            // Lets fault tests make the server slow (`DEBUG SLEEP`); it listens on loopback only.
            .args(["--enable-debug-command", "yes"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(spawn(command));
        let url = self.url();
        wait_until("redis-server", SERVER_START_TIMEOUT, || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server the clean way (it writes its AOF).
    pub fn stop(&mut self) {
        stop_cleanly(&mut self.child);
    }

    /// Kills the server with SIGKILL (no AOF flush, no goodbye).
    pub fn kill9(&mut self) {
        kill_now(&mut self.child);
    }

    /// Starts it again on the same port and data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_connection()
            .expect("redis connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill_now(&mut self.child);
    }
}

// ---------------------------------------------------------------- mariadb

/// A `mariadbd` on a free loopback port, data in a temp dir, with a user
/// `conveyor`/`conveyor` that may create databases.
pub struct MariaDb {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
}

/// InnoDB redo log size of the test servers: small, because every server
/// copies the template's data dir (the default log alone is 96 MB).
const MARIADB_LOG_FILE_SIZE: &str = "--innodb-log-file-size=16M";

/// A fresh data dir made once per machine (mariadb-install-db takes seconds),
/// copied for every server.
fn mariadb_template() -> PathBuf {
    let template = std::env::temp_dir().join("conveyor-template-mariadb-v2");
    if template.join("mysql").is_dir() {
        return template;
    }
    let staging = std::env::temp_dir().join(unique("conveyor-test-mariadb-staging-"));
    let status = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", staging.display()))
        .args([
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            MARIADB_LOG_FILE_SIZE,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("mariadb-install-db runs (apt-get install mariadb-server)");
    assert!(status.success(), "mariadb-install-db failed");
    // Another test process may have won the race; either template is fine.
    if fs::rename(&staging, &template).is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    template
}

impl MariaDb {
    pub fn start() -> MariaDb {
        MariaDb::start_with(Vec::new())
    }

    /// A server with more command-line options (e.g. TLS certificates).
    pub fn start_with(extra_args: Vec<String>) -> MariaDb {
        let dir = server_dir();
        let status = Command::new("cp")
            .arg("-a")
            .arg(mariadb_template())
            .arg(dir.path().join("data"))
            .status()
            .expect("cp runs");
        assert!(status.success(), "copying the mariadb template failed");
        let mut server = MariaDb {
            port: free_port(),
            dir,
            child: None,
            extra_args,
        };
        server.boot();
        server.root_sql(
            "CREATE USER IF NOT EXISTS 'conveyor'@'127.0.0.1' IDENTIFIED BY 'conveyor';
             GRANT ALL ON *.* TO 'conveyor'@'127.0.0.1';",
        );
        server
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    fn boot(&mut self) {
        let data = self.dir.path().join("data");
        let mut command = Command::new("mariadbd");
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.path().join("error.log").display()
            ))
            .args([
                "--user=root",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=500",
                MARIADB_LOG_FILE_SIZE,
            ])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(spawn(command));
        let socket = self.socket();
        let mut exited = None;
        let child = self.child.as_mut().expect("just spawned");
        let answered = ready_within(SERVER_START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .args(["-uroot", "-e", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !answered || exited.is_some() {
            panic!(
                "mariadbd on port {} did not start (exit: {exited:?}, timeout {SERVER_START_TIMEOUT:?}).\n\
                 Its error log ends:\n{}\nSpace in the temp dir:\n{}",
                self.port,
                log_tail(&self.dir.path().join("error.log"), 30),
                temp_dir_space()
            );
        }
    }

    /// Runs SQL as root over the socket.
    pub fn root_sql(&self, sql: &str) -> String {
        let output = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "-N", "-B", "-e", sql])
            .output()
            .expect("mariadb client runs");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs SQL as root in the background (e.g. to hold a lock for a while).
    pub fn root_sql_background(&self, sql: &str) -> Background {
        let mut command = Command::new("mariadb");
        command
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "-N", "-B", "-e", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Background(spawn(command))
    }

    /// A new empty database and the URL of the test user for it.
    pub fn create_database(&self) -> (String, String) {
        let name = unique("conveyor_test_");
        self.root_sql(&format!("CREATE DATABASE {name}"));
        let url = format!("mysql://conveyor:conveyor@127.0.0.1:{}/{name}", self.port);
        (name, url)
    }

    /// Stops the server cleanly (SIGTERM, waits for exit).
    pub fn stop(&mut self) {
        stop_cleanly(&mut self.child);
    }

    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        kill_now(&mut self.child);
    }
}

/// A helper process a test started and waits for.
pub struct Background(Child);

impl Background {
    /// Waits for the process to finish.
    pub fn wait(mut self) {
        let _ = self.0.wait();
    }
}

/// The servers shared by all tests of one test binary.
pub struct SharedServers {
    pub redis: RedisServer,
    pub mysql: MariaDb,
}

pub fn shared() -> &'static SharedServers {
    static SERVERS: OnceLock<SharedServers> = OnceLock::new();
    SERVERS.get_or_init(|| SharedServers {
        redis: RedisServer::start(),
        mysql: MariaDb::start(),
    })
}

// ---------------------------------------------------------------- one test's world

/// One job_results row as tests read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub worker: String,
}

/// A test's own key prefix and database on some Redis and MariaDB.
pub struct TestEnv {
    pub redis_url: String,
    pub mysql_url: String,
    pub prefix: String,
    pub database: String,
}

impl TestEnv {
    /// Isolated space on the binary's shared servers.
    pub fn new() -> TestEnv {
        let servers = shared();
        TestEnv::on(&servers.redis, &servers.mysql)
    }

    /// Isolated space on the given servers.
    pub fn on(redis: &RedisServer, mysql: &MariaDb) -> TestEnv {
        let (database, mysql_url) = mysql.create_database();
        TestEnv {
            redis_url: redis.url(),
            mysql_url,
            prefix: unique("t"),
            database,
        }
    }

    /// Environment for a `conveyor` process pointed at this test's space,
    /// with timings shortened for tests.
    pub fn worker_env(&self) -> HashMap<String, String> {
        [
            ("CONVEYOR__REDIS__URL", self.redis_url.as_str()),
            ("CONVEYOR__MYSQL__URL", self.mysql_url.as_str()),
            ("CONVEYOR__REDIS__KEY_PREFIX", self.prefix.as_str()),
            ("CONVEYOR__PROCESSORS__COUNT", "2"),
            ("CONVEYOR__PROCESSORS__CONCURRENCY", "16"),
            ("CONVEYOR__RETRY__BASE_MS", "20"),
            ("CONVEYOR__RETRY__MAX_MS", "200"),
            ("CONVEYOR__SCHEDULER__TICK_MS", "20"),
            ("CONVEYOR__METRICS__LOG_INTERVAL_MS", "300"),
            ("CONVEYOR__QUEUES__IDLE_WAIT_MS", "200"),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Starts `conveyor worker` with this test's settings plus `extra`.
    pub fn worker(&self, extra: &[(&str, &str)]) -> ConveyorProcess {
        self.conveyor(&["worker"], extra)
    }

    /// Starts `conveyor --config <config> worker` with this test's settings
    /// plus `extra`.
    pub fn worker_with_config(
        &self,
        config: &tempfile::NamedTempFile,
        extra: &[(&str, &str)],
    ) -> ConveyorProcess {
        let path = config.path().to_str().expect("utf-8 path");
        self.conveyor(&["--config", path, "worker"], extra)
    }

    /// Runs the `conveyor` binary with `args` in the background.
    pub fn conveyor(&self, args: &[&str], extra: &[(&str, &str)]) -> ConveyorProcess {
        self.program(Path::new(env!("CARGO_BIN_EXE_conveyor")), args, extra)
    }

    /// Runs any program with this test's settings in its environment.
    pub fn program(&self, path: &Path, args: &[&str], extra: &[(&str, &str)]) -> ConveyorProcess {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut command = Command::new(path);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.worker_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            // Append mode: stdout and stderr share the file without
            // overwriting each other.
            .stdout(append_to(log.path()))
            .stderr(append_to(log.path()));
        ConveyorProcess {
            child: Some(spawn(command)),
            log,
        }
    }

    /// Runs the `conveyor` binary to completion: (exit code, stdout+stderr).
    pub fn conveyor_output(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String) {
        let mut process = self.conveyor(args, extra);
        let code = process.wait_exit(Duration::from_secs(60));
        (code, process.log())
    }

    /// conveyor's own Redis client for this test's space.
    pub fn queue_client(&self) -> conveyor::redis_queue::RedisQueue {
        conveyor::redis_queue::RedisQueue::connect(&conveyor::config::RedisSettings {
            url: self.redis_url.clone(),
            key_prefix: self.prefix.clone(),
            response_timeout_ms: 5000,
            tls_ca_file: String::new(),
            cluster_nodes: Vec::new(),
        })
        .expect("redis url")
    }

    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.redis_url.as_str())
            .expect("redis url")
            .get_connection()
            .expect("redis connection")
    }

    pub fn pending_key(&self, queue: &str) -> String {
        format!("{}:{{{queue}}}:pending", self.prefix)
    }

    /// `LPUSH`es messages onto `queue`, as any producer would.
    pub fn push(&self, queue: &str, messages: &[String]) {
        let mut conn = self.redis();
        for chunk in messages.chunks(1000) {
            let _: () = redis::cmd("LPUSH")
                .arg(self.pending_key(queue))
                .arg(chunk)
                .query(&mut conn)
                .expect("LPUSH");
        }
    }

    /// Every key of this test's prefix with its type and size, for
    /// asserting that nothing is left behind.
    pub fn leftover_keys(&self) -> Vec<(String, i64)> {
        let mut conn = self.redis();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
            .expect("KEYS");
        keys.into_iter()
            .filter_map(|key| {
                let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).ok()?;
                let size: i64 = match kind.as_str() {
                    "list" => redis::cmd("LLEN").arg(&key).query(&mut conn).ok()?,
                    "hash" => redis::cmd("HLEN").arg(&key).query(&mut conn).ok()?,
                    "zset" => redis::cmd("ZCARD").arg(&key).query(&mut conn).ok()?,
                    _ => 1,
                };
                // The workers registry legitimately holds live workers' leases,
                // and the dashboard's throughput history and beacons are not jobs.
                (!key.ends_with(":workers") && !key.contains(":{stats}:")).then_some((key, size))
            })
            .collect()
    }

    pub fn query<T: mysql_async::prelude::FromRow + Send + 'static>(&self, sql: &str) -> Vec<T> {
        let url = self.mysql_url.clone();
        let sql = sql.to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let pool = mysql_async::Pool::new(url.as_str());
            let mut conn = pool.get_conn().await.expect("mysql connection");
            let rows = conn.query(sql).await.expect("query");
            drop(conn);
            pool.disconnect().await.expect("disconnect");
            rows
        })
    }

    fn has_results_table(&self) -> bool {
        !self
            .query::<String>("SHOW TABLES LIKE 'job_results'")
            .is_empty()
    }

    /// Rows of job_results (0 when the table does not exist yet).
    pub fn count_rows(&self) -> i64 {
        if !self.has_results_table() {
            return 0;
        }
        self.query::<i64>("SELECT COUNT(*) FROM job_results")
            .first()
            .copied()
            .unwrap_or(0)
    }

    pub fn wait_for_rows(&self, count: i64, timeout: Duration) {
        wait_until(&format!("{count} job_results rows"), timeout, || {
            self.count_rows() >= count
        });
    }

    /// Every job_results row (none when the table does not exist yet).
    pub fn rows(&self) -> Vec<ResultRow> {
        if !self.has_results_table() {
            return Vec::new();
        }
        type Raw = (
            String,
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<String>,
            String,
        );
        self.query::<Raw>(
            "SELECT id, queue, kind, status, attempts, CAST(output AS CHAR), error, worker
             FROM job_results ORDER BY id",
        )
        .into_iter()
        .map(
            |(id, queue, kind, status, attempts, output, error, worker)| ResultRow {
                id,
                queue,
                kind,
                status,
                attempts,
                output: output.map(|o| serde_json::from_str(&o).expect("output is JSON")),
                error,
                worker,
            },
        )
        .collect()
    }

    pub fn row(&self, id: &str) -> ResultRow {
        self.rows()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no row for job {id}"))
    }

    /// (raw bytes, reason) of every dead letter.
    pub fn dead_letters(&self) -> Vec<(Vec<u8>, String)> {
        self.query("SELECT raw, reason FROM dead_letters ORDER BY id")
    }
}

fn append_to(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("log file opens for appending")
}

/// A running `conveyor` process whose output goes to a temp file.
pub struct ConveyorProcess {
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl ConveyorProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        let _ = fs::File::open(self.log.path()).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < timeout,
                "no {needle:?} in the log after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn signal(&self, number: i32) {
        signal(self.child.as_ref().expect("running"), number);
    }

    pub fn kill9(&mut self) {
        kill_now(&mut self.child);
    }

    /// Waits for the process to exit; its exit code (or 128+signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                use std::os::unix::process::ExitStatusExt;
                return status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            assert!(
                start.elapsed() < timeout,
                "process did not exit within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit code.
    pub fn stop(&mut self) -> i32 {
        self.sigterm();
        self.wait_exit(Duration::from_secs(60))
    }
}

impl Drop for ConveyorProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Path of an example program (`cargo test` builds the examples beside the tests).
pub fn example_binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("test binary path");
    let profile_dir = deps
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with cargo test",
        path.display()
    );
    path
}

/// A job envelope as JSON text.
pub fn job(kind: &str, id: Option<&str>, payload: serde_json::Value) -> String {
    let mut envelope = serde_json::json!({ "kind": kind, "payload": payload });
    if let Some(id) = id {
        envelope["id"] = serde_json::json!(id);
    }
    envelope.to_string()
}

/// A throw-away TOML configuration file holding `text`.
pub fn config_file(text: &str) -> tempfile::NamedTempFile {
    use std::io::Write as _;
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}
