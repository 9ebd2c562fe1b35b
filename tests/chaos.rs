//! The chaos soak: three workers busy on a mix of jobs (noop, sleep,
//! fail-then-succeed, panic-then-succeed, timeouts, gather against a local
//! HTTP server) while a seeded random schedule SIGKILLs workers, freezes
//! them with SIGSTOP past their lease, restarts Redis and MariaDB, and locks
//! the results table — several faults at once at times. At the end every job
//! has exactly one row with a plausible attempt count, Redis holds nothing,
//! and every worker still answers SIGTERM with a clean exit.
//!
//! The seed is printed first; replay a run with `CHAOS_SEED=<seed>`.
//! `CHAOS_JOBS` and `CHAOS_SECONDS` (how long faults are injected) make it
//! longer: see docs/reliability.md, "How we test".

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::{Background, ConveyorProcess, MariaDb, RedisServer, TestEnv};

const WORKERS: usize = 3;
const LEASE_MS: u64 = 3000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a job is meant to do, and so how its row must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Noop,
    Sleep,
    FailOnce,
    PanicOnce,
    TimesOut,
    Gather,
}

impl Class {
    fn pick(rng: &mut StdRng) -> Class {
        match rng.random_range(0..100) {
            0..40 => Class::Noop,
            40..60 => Class::Sleep,
            60..72 => Class::FailOnce,
            72..82 => Class::PanicOnce,
            82..85 => Class::TimesOut,
            _ => Class::Gather,
        }
    }

    fn max_attempts(self) -> i64 {
        match self {
            Class::TimesOut => 2,
            // Room for the attempts that crashes and frozen leases use up.
            _ => 30,
        }
    }
}

fn envelope(id: &str, class: Class, rng: &mut StdRng, gather_base: &str) -> String {
    let (kind, payload, timeout_ms) = match class {
        Class::Noop => ("noop", json!({ "n": id }), 30_000),
        Class::Sleep => ("sleep", json!({ "ms": rng.random_range(1..30) }), 30_000),
        Class::FailOnce => (
            "fail",
            json!({ "times": 1, "message": "first try fails" }),
            30_000,
        ),
        Class::PanicOnce => ("fail", json!({ "times": 1, "mode": "panic" }), 30_000),
        Class::TimesOut => ("sleep", json!({ "ms": 5000 }), 100),
        Class::Gather => (
            "gather",
            json!({ "requests": [
                { "name": "a", "url": format!("{gather_base}/a/{id}") },
                { "name": "b", "url": format!("{gather_base}/b/{id}") },
            ]}),
            30_000,
        ),
    };
    json!({
        "id": id, "kind": kind, "payload": payload,
        "max_attempts": class.max_attempts(), "timeout_ms": timeout_ms,
    })
    .to_string()
}

/// A local HTTP server for the gather jobs, on its own thread.
fn start_gather_server() -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(|| {
                App::new().default_service(web::to(|| async {
                    HttpResponse::Ok().json(json!({ "ok": true }))
                }))
            })
            .workers(1)
            .listen(listener)
            .expect("listen")
            .run();
            tx.send(server.handle()).expect("handle");
            let _ = server.await;
        });
    });
    (base, rx.recv().expect("gather server started"))
}

/// The faults the schedule draws from.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillWorker(usize),
    FreezeWorker(usize),
    RestartRedis,
    RestartMysql,
    LockResults,
}

impl Fault {
    fn pick(rng: &mut StdRng) -> Fault {
        let worker = rng.random_range(0..WORKERS);
        match rng.random_range(0..100) {
            0..30 => Fault::KillWorker(worker),
            30..50 => Fault::FreezeWorker(worker),
            50..65 => Fault::RestartRedis,
            65..80 => Fault::RestartMysql,
            _ => Fault::LockResults,
        }
    }
}

struct Chaos {
    redis: RedisServer,
    mysql: MariaDb,
    env: TestEnv,
    settings: Vec<(String, String)>,
    workers: Vec<Option<ConveyorProcess>>,
    /// When a killed worker comes back, and when a frozen one is resumed.
    restart_at: Vec<Option<Instant>>,
    resume_at: Vec<Option<Instant>>,
    locks: Vec<Background>,
    begun: Instant,
    journal: Vec<String>,
    counts: HashMap<&'static str, usize>,
}

impl Chaos {
    fn worker(&self) -> ConveyorProcess {
        let pairs: Vec<(&str, &str)> = self
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.env.worker(&pairs)
    }

    fn note(&mut self, what: &'static str, detail: String) {
        *self.counts.entry(what).or_default() += 1;
        let line = format!(
            "{:>7.1}s {what} {detail}",
            self.begun.elapsed().as_secs_f64()
        );
        eprintln!("chaos: {line}");
        self.journal.push(line);
    }

    /// Brings back killed workers and resumes frozen ones whose time came.
    fn tend(&mut self) {
        let now = Instant::now();
        for i in 0..WORKERS {
            if self.restart_at[i].is_some_and(|at| at <= now) {
                self.restart_at[i] = None;
                self.workers[i] = Some(self.worker());
                self.note("restarted", format!("worker {i}"));
            }
            if self.resume_at[i].is_some_and(|at| at <= now) {
                self.resume_at[i] = None;
                if let Some(worker) = &self.workers[i] {
                    worker.signal(libc::SIGCONT);
                }
                self.note("resumed", format!("worker {i}"));
            }
        }
    }

    fn inject(&mut self, fault: Fault, rng: &mut StdRng) {
        match fault {
            Fault::KillWorker(i) if self.workers[i].is_some() => {
                if let Some(mut worker) = self.workers[i].take() {
                    worker.kill9();
                }
                self.resume_at[i] = None;
                let down = Duration::from_millis(rng.random_range(200..2000));
                self.restart_at[i] = Some(Instant::now() + down);
                self.note("SIGKILL", format!("worker {i}, back in {down:?}"));
            }
            Fault::FreezeWorker(i) if self.workers[i].is_some() && self.resume_at[i].is_none() => {
                let frozen = Duration::from_millis(LEASE_MS + rng.random_range(500..3000));
                if let Some(worker) = &self.workers[i] {
                    worker.signal(libc::SIGSTOP);
                }
                self.resume_at[i] = Some(Instant::now() + frozen);
                self.note(
                    "SIGSTOP",
                    format!("worker {i} for {frozen:?} (past the lease)"),
                );
            }
            Fault::RestartRedis => {
                let down = Duration::from_millis(rng.random_range(200..3000));
                self.redis.stop();
                std::thread::sleep(down);
                self.redis.restart();
                self.note("redis restart", format!("down {down:?}"));
            }
            Fault::RestartMysql => {
                let down = Duration::from_millis(rng.random_range(200..3000));
                self.mysql.stop();
                std::thread::sleep(down);
                self.mysql.restart();
                self.note("mariadb restart", format!("down {down:?}"));
            }
            Fault::LockResults => {
                let held = rng.random_range(1..5);
                let sql = format!(
                    "USE {}; LOCK TABLES job_results WRITE; SELECT SLEEP({held}); UNLOCK TABLES;",
                    self.env.database
                );
                self.locks.push(self.mysql.root_sql_background(&sql));
                self.note("table lock", format!("job_results for {held}s"));
            }
            _ => {}
        }
    }

    /// Every worker up and running again, none frozen.
    fn settle(&mut self) {
        for i in 0..WORKERS {
            if self.resume_at[i].take().is_some() {
                if let Some(worker) = &self.workers[i] {
                    worker.signal(libc::SIGCONT);
                }
            }
            if self.workers[i].is_none() {
                self.restart_at[i] = None;
                self.workers[i] = Some(self.worker());
            }
        }
        for lock in self.locks.drain(..) {
            lock.wait();
        }
    }
}

/// Pushes `messages` spread over `spread`, retrying through Redis restarts
/// (a push repeated after a lost reply only duplicates a message with an
/// id, which still ends in one row).
fn produce(redis_url: String, key: String, messages: Vec<String>, spread: Duration) {
    let chunks: Vec<&[String]> = messages.chunks(200).collect();
    let pause = spread / chunks.len().max(1) as u32;
    let client = redis::Client::open(redis_url.as_str()).expect("redis url");
    for chunk in chunks {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let pushed = client.get_connection().and_then(|mut conn| {
                redis::cmd("LPUSH")
                    .arg(&key)
                    .arg(chunk)
                    .query::<i64>(&mut conn)
            });
            match pushed {
                Ok(_) => break,
                Err(error) => {
                    assert!(Instant::now() < deadline, "redis never came back: {error}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        std::thread::sleep(pause);
    }
}

#[test]
fn chaos_soak_loses_and_doubles_nothing() {
    let seed: u64 = env_or("CHAOS_SEED", rand::random());
    let jobs: usize = env_or("CHAOS_JOBS", 20_000);
    let fault_time = Duration::from_secs(env_or("CHAOS_SECONDS", 90));
    eprintln!(
        "chaos: seed {seed}, {jobs} jobs, faults for {fault_time:?} \
         (replay with CHAOS_SEED={seed} CHAOS_JOBS={jobs} CHAOS_SECONDS={})",
        fault_time.as_secs()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let (gather_base, gather_server) = start_gather_server();
    let plan: Vec<(String, Class)> = (0..jobs)
        .map(|i| (format!("chaos-{i:06}"), Class::pick(&mut rng)))
        .collect();
    let messages: Vec<String> = plan
        .iter()
        .map(|(id, class)| envelope(id, *class, &mut rng, &gather_base))
        .collect();

    let redis = RedisServer::start();
    let mysql = MariaDb::start();
    let env = TestEnv::on(&redis, &mysql);
    let settings: Vec<(String, String)> = [
        ("CONVEYOR__RECOVERY__LEASE_MS", LEASE_MS.to_string()),
        ("CONVEYOR__RECOVERY__HEARTBEAT_MS", "250".to_string()),
        (
            "CONVEYOR__KINDS__HTTP__ALLOW_HOSTS",
            "127.0.0.1".to_string(),
        ),
        ("CONVEYOR__DB__RETRY_MAX_MS", "1000".to_string()),
        ("CONVEYOR__METRICS__LOG_INTERVAL_MS", "2000".to_string()),
        ("CONVEYOR__SHUTDOWN__TIMEOUT_MS", "5000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut chaos = Chaos {
        redis,
        mysql,
        env,
        settings,
        workers: Vec::new(),
        restart_at: vec![None; WORKERS],
        resume_at: vec![None; WORKERS],
        locks: Vec::new(),
        begun: Instant::now(),
        journal: Vec::new(),
        counts: HashMap::new(),
    };
    chaos.workers = (0..WORKERS).map(|_| Some(chaos.worker())).collect();
    // The schema exists before the first table lock.
    chaos.workers[0]
        .as_ref()
        .expect("started")
        .wait_for_log("schema ready", Duration::from_secs(60));

    let producer = {
        let (url, key) = (
            chaos.env.redis_url.clone(),
            chaos.env.pending_key("default"),
        );
        let spread = fault_time.mul_f64(0.7);
        std::thread::spawn(move || produce(url, key, messages, spread))
    };
    let stop_faults = Instant::now() + fault_time;
    let mut next_fault = Instant::now() + Duration::from_secs(2);
    while Instant::now() < stop_faults {
        chaos.tend();
        if Instant::now() >= next_fault {
            let fault = Fault::pick(&mut rng);
            chaos.inject(fault, &mut rng);
            next_fault = Instant::now() + Duration::from_millis(rng.random_range(1000..5000));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    chaos.settle();
    producer.join().expect("producer");
    eprintln!("chaos: faults injected: {:?}", chaos.counts);

    check_outcome(&chaos, &plan);
    for (i, worker) in chaos.workers.iter_mut().enumerate() {
        let worker = worker.as_mut().expect("running");
        assert!(worker.is_running(), "worker {i} died:\n{}", worker.log());
        assert_eq!(worker.stop(), 0, "worker {i} did not stop cleanly");
    }
    gather_server_stop(gather_server);
    eprintln!("chaos: seed {seed} passed: {jobs} jobs, one row each");
}

fn gather_server_stop(handle: actix_web::dev::ServerHandle) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(handle.stop(false));
}

/// One row per job, each ended as its class must, and nothing left in Redis.
fn check_outcome(chaos: &Chaos, plan: &[(String, Class)]) {
    let env = &chaos.env;
    let journal = chaos.journal.join("\n");
    support::wait_until(
        &format!("{} rows after the faults:\n{journal}", plan.len()),
        Duration::from_secs(300),
        || env.count_rows() >= plan.len() as i64,
    );
    let rows = env.rows();
    assert_eq!(rows.len(), plan.len(), "one row per job, no more");
    let mut classes_seen: HashMap<Class, usize> = HashMap::new();
    for (row, (id, class)) in rows.iter().zip(plan) {
        assert_eq!(&row.id, id, "the rows are exactly the jobs sent");
        *classes_seen.entry(*class).or_default() += 1;
        let attempts_ok = row.attempts >= 1 && row.attempts <= class.max_attempts() + 1;
        assert!(attempts_ok, "{class:?}: {row:?}");
        match class {
            Class::TimesOut => {
                assert_eq!(row.status, "dead", "{row:?}");
                // A job out of attempts whose worker is lost while its dead
                // row is being written is recovered once more, and that
                // recovery counts: then the row says so.
                let lost = row.error.as_deref().unwrap_or("").contains("lease expired");
                assert!(row.attempts == 2 || (row.attempts == 3 && lost), "{row:?}");
            }
            Class::FailOnce | Class::PanicOnce => {
                assert_eq!(row.status, "succeeded", "{class:?}: {row:?}");
                assert!(row.attempts >= 2, "failed once, so two attempts: {row:?}");
            }
            Class::Noop | Class::Sleep | Class::Gather => {
                assert_eq!(row.status, "succeeded", "{class:?}: {row:?}");
            }
        }
        if *class == Class::Gather {
            let output = row.output.clone().unwrap_or(Value::Null);
            assert_eq!(output["a"]["status"], 200, "{row:?}");
        }
    }
    eprintln!("chaos: rows by class: {classes_seen:?}");
    assert!(env.dead_letters().is_empty(), "no message was malformed");
    support::wait_until("redis to drain", Duration::from_secs(60), || {
        env.leftover_keys().iter().all(|(_, size)| *size == 0)
    });
}
