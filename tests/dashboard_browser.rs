//! The dashboard in a real headless Chromium (through chromedriver and the
//! fantoccini WebDriver client) against a real worker with real Redis and
//! MariaDB: log in, read the queue counts, open jobs, retry a dead job and
//! see it succeed, delete dead jobs after the confirmation page, pause a
//! queue (and see the worker start nothing from it), cancel a waiting job,
//! resume the queue, read the limiters; with no console errors and no
//! request leaving the server. Each page is
//! screenshotted (PNG) into `target/dashboard-screenshots/`, or into
//! `$CONVEYOR_SCREENSHOTS` when set (`docs/dashboard/` holds the ones the
//! docs show).

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use support::{free_port, job, spawn, wait_until, TestEnv};

const TOKEN: &str = "dashboard-s3cret";

/// A downstream HTTP service for `http` jobs: 503 until `healthy` is set.
struct Downstream {
    url: String,
    healthy: Arc<AtomicBool>,
}

fn downstream() -> Downstream {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind downstream");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let (status, body) = if flag.load(Ordering::SeqCst) {
                ("200 OK", r#"{"ok":true}"#)
            } else {
                ("503 Service Unavailable", r#"{"ok":false}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Downstream { url, healthy }
}

/// chromedriver with a headless Chromium session; both stop on drop.
struct Browser {
    client: Option<Client>,
    driver: std::process::Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn chromium_binary() -> String {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    panic!("chromium is not installed: run scripts/install-services.sh (apt-get install chromium chromium-driver)");
}

async fn browser() -> Browser {
    let port = free_port();
    let mut command = Command::new("chromedriver");
    command
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let driver = spawn(command);
    let url = format!("http://127.0.0.1:{port}");
    wait_until("chromedriver to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let capabilities = json!({
        "browserName": "chrome",
        "goog:loggingPrefs": { "browser": "ALL" },
        "goog:chromeOptions": {
            "binary": chromium_binary(),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--disable-sync", "--no-first-run",
                "--disable-extensions", "--metrics-recording-only", "--mute-audio",
                "--window-size=1280,960", "--force-device-scale-factor=1",
                // Any name but the loopback address fails to resolve: a
                // request leaving the server would fail and show as an error.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ]
        }
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!("an object literal")
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("a chromium session through chromedriver");
    Browser {
        client: Some(client),
        driver,
    }
}

/// chromedriver's browser log (console messages, CSP violations, failed loads).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_string()),
        )
    }
}

/// Console entries at warning level or above since the last call.
async fn console_problems(client: &Client) -> Vec<String> {
    let log = client.issue_cmd(BrowserLog).await.expect("browser log");
    log.as_array()
        .unwrap_or_else(|| panic!("the browser log is a list: {log}"))
        .iter()
        .filter(|entry| matches!(entry["level"].as_str(), Some("SEVERE" | "WARNING")))
        .map(|entry| entry["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("CONVEYOR_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

/// Whether a WebDriver error says the element went away with its page
/// (pages of unfinished jobs reload themselves every 2 s).
fn is_stale(error: &fantoccini::error::CmdError) -> bool {
    error.is_stale_element_reference()
}

async fn text_of(client: &Client, css: &str) -> String {
    for attempt in 0..10 {
        // A page that reloads itself may be between two loads: look again.
        let element = match client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(_) if attempt < 9 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(error) => panic!("no {css}: {error}"),
        };
        match element.text().await {
            Ok(text) => return text,
            Err(error) if is_stale(&error) => continue,
            Err(error) => panic!("text of {css}: {error}"),
        }
    }
    panic!("{css} kept going stale")
}

/// Reloads `path` until `css` reads `want` (pages of running jobs change).
async fn wait_for_text(client: &Client, base: &str, path: &str, css: &str, want: &str) {
    let started = Instant::now();
    loop {
        client.goto(&format!("{base}{path}")).await.expect("goto");
        if let Ok(element) = client.find(Locator::Css(css)).await {
            if element.text().await.is_ok_and(|t| t.trim() == want) {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{css} on {path} never read {want:?}: {}",
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the browser shows `path` (after a click that navigates).
async fn wait_for_path(client: &Client, path: &str) {
    let started = Instant::now();
    while client.current_url().await.expect("url").path() != path {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never reached {path}: at {} showing {}",
            client.current_url().await.expect("url"),
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every resource the page loaded came from `base`.
async fn only_local_requests(client: &Client, base: &str) {
    let names = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);",
            vec![],
        )
        .await
        .expect("resource timing");
    for name in names.as_array().expect("array") {
        let name = name.as_str().unwrap_or_default();
        assert!(name.starts_with(base), "a request left the server: {name}");
    }
}

fn seed(env: &TestEnv, hook: &str) {
    let mut messages: Vec<String> = (1..=20)
        .map(|i| job("noop", Some(&format!("ok-{i}")), json!({ "n": i })))
        .collect();
    messages.push(job(
        "noop",
        Some("xss"),
        json!({ "html": "<script>document.title='pwned'</script><img src=x onerror=alert(1)>" }),
    ));
    messages.push(
        json!({ "id": "big", "kind": "fail", "max_attempts": 1,
                "payload": { "message": "too big to care", "blob": "x".repeat(900 * 1024) } })
        .to_string(),
    );
    messages.push(
        json!({ "id": "flaky-1", "kind": "http", "max_attempts": 1, "payload": { "url": hook } })
            .to_string(),
    );
    messages.push(
        json!({ "id": "always-fails", "kind": "fail", "max_attempts": 1,
                "payload": { "message": "<b>boom</b> \u{1b}[31m" } })
        .to_string(),
    );
    messages.push("\u{1}\u{2} not json <script>alert(1)</script>".to_string());
    env.push("default", &messages);
    let later = json!({ "id": "later-1", "kind": "noop", "run_at": 4_102_444_800_000_i64 });
    env.push("emails", &[later.to_string()]);
}

/// Clicks the element `css` finds, then waits until the browser shows a
/// URL ending in `then` (the page the click leads to).
async fn click(client: &Client, css: &str, then: &str) {
    for attempt in 0.. {
        let element = client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        match element.click().await {
            Ok(_) => break,
            Err(error) if is_stale(&error) && attempt < 10 => continue,
            Err(error) => panic!("clicking {css}: {error}"),
        }
    }
    let started = Instant::now();
    while !client
        .current_url()
        .await
        .expect("url")
        .as_str()
        .ends_with(then)
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "clicking {css} never led to {then}: at {}",
            client.current_url().await.expect("url"),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pauses `emails` from the overview, submits two jobs to it and sees the
/// worker start neither, cancels one after its confirmation page, resumes
/// the queue from its page and sees the other run and the cancelled one end
/// with a `cancelled` row.
async fn pause_cancel_resume(client: &Client, base: &str, env: &TestEnv) {
    client.goto(&format!("{base}/ui/")).await.expect("goto");
    click(
        client,
        "tr[data-queue='emails'] button.pause",
        "/ui/?notice=paused",
    )
    .await;
    assert_eq!(
        text_of(client, "tr[data-queue='emails'] .state").await,
        "paused"
    );
    blocking(|| {
        let http = support::http::Http::new(base).with_token(TOKEN);
        for id in ["held-1", "held-2"] {
            let body = json!({ "id": id, "kind": "noop", "queue": "emails" });
            let answer = http.post("/jobs", body.to_string());
            assert_eq!(answer.status, 202, "{}", answer.text);
        }
        // Workers honour a pause within a second: give them three.
        std::thread::sleep(Duration::from_secs(3));
        let rows = env.rows();
        assert!(
            rows.iter().all(|r| !r.id.starts_with("held-")),
            "a paused queue's job ran: {rows:?}"
        );
    });
    client
        .goto(&format!("{base}/ui/queues/emails"))
        .await
        .expect("goto");
    assert_eq!(text_of(client, "#queue-state").await, "paused");
    assert_eq!(text_of(client, "#depth-pending").await, "2");
    screenshot(client, "queue-paused").await;

    client
        .goto(&format!("{base}/ui/jobs/held-1?queue=emails"))
        .await
        .expect("goto");
    assert_eq!(text_of(client, "#job-status").await, "queued");
    click(client, "#cancel", "/ui/jobs/held-1/cancel?queue=emails").await;
    assert!(text_of(client, "#cancel-what").await.contains("queued"));
    screenshot(client, "cancel-confirm").await;
    click(
        client,
        "#confirm",
        "/ui/jobs/held-1?queue=emails&notice=cancelled",
    )
    .await;
    assert_eq!(text_of(client, "#job-status").await, "cancelled");

    client
        .goto(&format!("{base}/ui/queues/emails"))
        .await
        .expect("goto");
    click(client, "button.resume", "/ui/queues/emails?notice=resumed").await;
    assert_eq!(text_of(client, "#queue-state").await, "active");
    wait_for_text(client, base, "/ui/jobs/held-2", "#job-status", "succeeded").await;
    wait_for_text(
        client,
        base,
        "/ui/jobs/held-1?queue=emails",
        "#job-status",
        "cancelled",
    )
    .await;
    blocking(|| {
        wait_until("the cancelled row", Duration::from_secs(30), || {
            env.rows().iter().any(|r| r.id == "held-1")
        });
        assert_eq!(env.row("held-1").status, "cancelled");
    });
    client
        .goto(&format!("{base}/ui/jobs/held-1"))
        .await
        .expect("goto");
    assert_eq!(text_of(client, "#job-status").await, "cancelled");
    screenshot(client, "job-cancelled").await;
}

/// Runs blocking fixture code (its own runtimes) beside the async test.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let env = blocking(TestEnv::new);
    let hook = downstream();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let base = format!("http://{bind}");
    let mut config = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    std::io::Write::write_all(
        &mut config,
        b"[[schedules]]\nname = \"nightly-report\"\ncron = \"0 3 * * *\"\nkind = \"noop\"\npayload = { report = \"daily\" }\n\n[[limiters]]\nname = \"partner-api\"\nkind = \"http\"\nconcurrency = 2\nrate = \"100/1s\"\n",
    )
    .expect("write config");
    let config_path = config.path().to_str().expect("utf-8 path").to_string();
    let worker = env.conveyor(
        &["--config", &config_path, "worker"],
        &[
            ("CONVEYOR__API__BIND", bind.as_str()),
            ("CONVEYOR__API__TOKEN", TOKEN),
            ("CONVEYOR__QUEUES__NAMES", "default,emails"),
            ("CONVEYOR__KINDS__HTTP__ALLOW_PRIVATE", "true"),
        ],
    );
    blocking(|| {
        worker.wait_for_log("schema ready", Duration::from_secs(60));
        seed(&env, &hook.url);
        env.wait_for_rows(24, Duration::from_secs(60));
        wait_until("the dead letter", Duration::from_secs(30), || {
            env.dead_letters().len() == 1
        });
        assert_eq!(env.row("flaky-1").status, "dead");
    });

    let mut browser = browser().await;
    let client = browser.client.take().expect("client");

    // Login: the token once, then a session cookie.
    client.goto(&format!("{base}/ui/")).await.expect("goto");
    assert!(client
        .current_url()
        .await
        .expect("url")
        .path()
        .ends_with("/ui/login"));
    screenshot(&client, "login").await;
    // The console check sees what the page logs (and starts empty after this).
    client
        .execute("console.error('conveyor probe');", vec![])
        .await
        .expect("probe");
    let probe = console_problems(&client).await;
    assert!(
        probe.len() == 1 && probe[0].contains("conveyor probe"),
        "{probe:?}"
    );
    client
        .find(Locator::Id("token"))
        .await
        .expect("token field")
        .send_keys(TOKEN)
        .await
        .expect("type");
    client
        .find(Locator::Id("login"))
        .await
        .expect("button")
        .click()
        .await
        .expect("log in");
    wait_for_path(&client, "/ui/").await;

    // Overview: queue counts and totals; the chart after a fold or two.
    assert_eq!(
        text_of(&client, "tr[data-queue='default'] .dead").await,
        "3"
    );
    assert_eq!(
        text_of(&client, "tr[data-queue='emails'] .scheduled").await,
        "1"
    );
    wait_for_text(&client, &base, "/ui/", "#total-succeeded", "21").await;
    assert_eq!(text_of(&client, "#total-workers").await, "1");
    assert!(
        client
            .find(Locator::Css("tr[data-queue='stats']"))
            .await
            .is_err(),
        "the throughput history is no queue"
    );
    client
        .find(Locator::Css("#chart canvas"))
        .await
        .expect("uPlot drew the chart");
    screenshot(&client, "overview").await;

    // A queue's scheduled jobs.
    client
        .goto(&format!("{base}/ui/queues/emails?tab=scheduled"))
        .await
        .expect("goto");
    assert!(text_of(&client, "#jobs").await.contains("later-1"));
    screenshot(&client, "queue").await;

    // A job whose payload holds markup shows it as text.
    client
        .goto(&format!("{base}/ui/jobs/xss"))
        .await
        .expect("goto");
    assert_eq!(text_of(&client, "#job-status").await, "succeeded");
    assert!(text_of(&client, "#job-output")
        .await
        .contains("<script>document.title='pwned'</script>"));
    assert_eq!(client.title().await.expect("title"), "Job xss · conveyor");
    let injected = client
        .execute(
            "return document.querySelectorAll('main script, main img').length;",
            vec![],
        )
        .await
        .expect("count");
    assert_eq!(injected, json!(0));
    screenshot(&client, "job").await;

    // A dead job's 900 KiB envelope is cut, with a way to see all of it.
    client
        .goto(&format!("{base}/ui/jobs/big"))
        .await
        .expect("goto");
    client
        .find(Locator::LinkText("show the whole message"))
        .await
        .expect("a link to the whole message");

    // Dead jobs: the downstream is back; retry the job that died of it.
    client.goto(&format!("{base}/ui/dead")).await.expect("goto");
    assert!(text_of(&client, "#dead").await.contains("always-fails"));
    screenshot(&client, "dead").await;
    hook.healthy.store(true, Ordering::SeqCst);
    client
        .find(Locator::Css("tr[data-id='flaky-1'] button.retry"))
        .await
        .expect("retry button")
        .click()
        .await
        .expect("retry");
    wait_for_path(&client, "/ui/jobs/flaky-1").await;
    wait_for_text(
        &client,
        &base,
        "/ui/jobs/flaky-1",
        "#job-status",
        "succeeded",
    )
    .await;
    assert_eq!(blocking(|| env.row("flaky-1").status), "succeeded");
    screenshot(&client, "job-retried").await;

    // Delete all that match, after the confirmation page with its count.
    client
        .goto(&format!(
            "{base}/ui/dead/confirm?action=delete&queue=default&kind=fail"
        ))
        .await
        .expect("goto");
    assert!(text_of(&client, "#confirm-count")
        .await
        .starts_with("2 dead jobs match"));
    screenshot(&client, "dead-confirm").await;
    client
        .find(Locator::Id("confirm"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("delete");
    assert_eq!(text_of(&client, "#dead-total").await, "(0 matching)");
    assert!(blocking(|| env.rows())
        .iter()
        .all(|row| row.id != "always-fails"));

    // Schedules: run one now and see its run succeed; pause it.
    client
        .goto(&format!("{base}/ui/schedules"))
        .await
        .expect("goto");
    client
        .find(Locator::Css(
            "tr[data-schedule='nightly-report'] button.trigger",
        ))
        .await
        .expect("run now")
        .click()
        .await
        .expect("trigger");
    wait_for_path(&client, "/ui/schedules").await;
    wait_for_text(
        &client,
        &base,
        "/ui/schedules",
        "tr[data-schedule='nightly-report'] .status.succeeded",
        "succeeded",
    )
    .await;
    client
        .find(Locator::Css(
            "tr[data-schedule='nightly-report'] button.pause",
        ))
        .await
        .expect("pause")
        .click()
        .await
        .expect("pause");
    wait_for_text(
        &client,
        &base,
        "/ui/schedules",
        "tr[data-schedule='nightly-report'] .status.paused",
        "paused",
    )
    .await;
    screenshot(&client, "schedules").await;

    pause_cancel_resume(&client, &base, &env).await;

    // Limiters: the configured one with its use.
    client
        .goto(&format!("{base}/ui/limiters"))
        .await
        .expect("goto");
    assert_eq!(
        text_of(&client, "tr[data-limiter='partner-api'] .concurrency").await,
        "2"
    );
    assert_eq!(
        text_of(&client, "tr[data-limiter='partner-api'] .rate").await,
        "100/1s"
    );
    screenshot(&client, "limiters").await;

    // Dead letters: raw bytes escaped.
    client
        .goto(&format!("{base}/ui/dead-letters"))
        .await
        .expect("goto");
    let letters = text_of(&client, "#letters").await;
    assert!(
        letters.contains(r"\u{1}\u{2} not json <script>alert(1)</script>"),
        "{letters}"
    );
    screenshot(&client, "dead-letters").await;

    // Workers.
    client
        .goto(&format!("{base}/ui/workers"))
        .await
        .expect("goto");
    let workers = text_of(&client, "#workers").await;
    assert!(workers.contains("2 × 16"), "{workers}");
    screenshot(&client, "workers").await;

    only_local_requests(&client, &base).await;
    let problems = console_problems(&client).await;
    assert!(problems.is_empty(), "browser console: {problems:#?}");
    client.close().await.expect("close the session");
}
