//! The dashboard's queue and job controls over plain HTTP: pause and resume
//! a queue, cancel a job after its confirmation page, and the limiters page.
//! Each action is tried with a forged and a missing CSRF token first (403,
//! nothing changes, as the JSON API then shows), then with the session's.
//! Odd queue names and job ids get a clear page, never a 500.

mod support;

use reqwest::header::LOCATION;
use serde_json::{json, Value};
use support::http::{ApiServer, Http};
use support::ui::{assert_page, csrf_of, dead_job, Page, Visitor, TOKEN};
use support::TestEnv;

/// A logged-in visitor and a JSON API client with the bearer token.
fn logged_in(api: &ApiServer) -> (Visitor, Http) {
    let mut visitor = Visitor::new(&api.base);
    assert_eq!(visitor.login(TOKEN).status, 303);
    (visitor, api.http().with_token(TOKEN))
}

fn paused(http: &Http, queue: &str) -> bool {
    let queues = http.get("/queues");
    assert_eq!(queues.status, 200, "{}", queues.text);
    queues.json()[queue]["paused"]
        .as_bool()
        .unwrap_or_else(|| panic!("no queue {queue} in {}", queues.text))
}

fn status_of(http: &Http, id: &str) -> String {
    let job = http.get(&format!("/jobs/{id}"));
    assert_eq!(job.status, 200, "{}", job.text);
    job.json()["status"].as_str().expect("status").to_string()
}

fn submit(http: &Http, body: Value) {
    let answer = http.post("/jobs", body.to_string());
    assert_eq!(answer.status, 202, "{}", answer.text);
}

fn assert_redirect(page: &Page, to: &str) {
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.headers[LOCATION], to);
}

#[test]
fn pausing_and_resuming_a_queue_needs_the_sessions_csrf_token() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[("CONVEYOR__API__TOKEN", TOKEN)]);
    let (mut visitor, http) = logged_in(&api);
    let page = visitor.get("/ui/queues/default");
    assert_page(&page, 200, "active");
    let csrf = csrf_of(&page.body);

    for forged in [
        vec![("csrf", "forged")],
        vec![],
        vec![("csrf", &csrf[..63])],
    ] {
        let refused = visitor.post("/ui/queues/default/pause", &forged);
        assert_page(&refused, 403, "nothing was changed");
        assert!(!paused(&http, "default"));
    }
    let done = visitor.post("/ui/queues/default/pause", &[("csrf", &csrf)]);
    assert_redirect(&done, "/ui/queues/default?notice=paused");
    assert!(paused(&http, "default"));
    let page = visitor.get("/ui/queues/default?notice=paused");
    assert_page(&page, 200, r#"id="queue-state">paused<"#);
    assert!(page.body.contains("Paused: every worker stops"));
    assert!(page.body.contains(r#"action="/ui/queues/default/resume""#));

    // The overview shows it paused, with a resume button that comes back there.
    let overview = visitor.get("/ui/");
    assert!(
        overview
            .body
            .contains(r#"data-live="queues.default.state">paused<"#),
        "{}",
        overview.body
    );
    let refused = visitor.post(
        "/ui/queues/default/resume",
        &[("csrf", "forged"), ("from", "overview")],
    );
    assert_page(&refused, 403, "CSRF");
    assert!(paused(&http, "default"));
    let done = visitor.post(
        "/ui/queues/default/resume",
        &[("csrf", &csrf), ("from", "overview")],
    );
    assert_redirect(&done, "/ui/?notice=resumed");
    assert!(!paused(&http, "default"));
    let state = visitor.get("/ui/overview.json");
    let snapshot: Value = serde_json::from_str(&state.body).expect("JSON");
    assert_eq!(snapshot["queues"]["default"]["state"], "active");

    // Another session's token does nothing either.
    let (mut other, _) = logged_in(&api);
    assert_page(
        &other.post("/ui/queues/default/pause", &[("csrf", &csrf)]),
        403,
        "CSRF",
    );
    assert!(!paused(&http, "default"));
}

#[test]
fn odd_queue_names_get_a_clear_page() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[("CONVEYOR__API__TOKEN", TOKEN)]);
    let (mut visitor, http) = logged_in(&api);
    let csrf = csrf_of(&visitor.get("/ui/queues/default").body);
    let long = format!("/ui/queues/{}/pause", "q".repeat(65));
    let cases = [
        ("/ui/queues/bad%20name/pause", 400, "is not a queue name"),
        (
            "/ui/queues/%3Cscript%3Ealert(1)%3C%2Fscript%3E/pause",
            400,
            "is not a queue name",
        ),
        ("/ui/queues/a%00b/resume", 400, "is not a queue name"),
        (long.as_str(), 400, "is not a queue name"),
        ("/ui/queues/never-seen.v2/pause", 404, "no queue"),
        (
            "/ui/queues/default/explode",
            404,
            "queue actions are pause and resume",
        ),
    ];
    for (path, status, says) in cases {
        let page = visitor.post(path, &[("csrf", &csrf)]);
        assert_page(&page, status, says);
        assert!(!page.body.contains("<script>alert"), "{path}: unescaped");
    }

    // The throughput history's `{stats}` keys are no queue.
    let stats = env.pending_key("stats").replace(":pending", ":totals");
    let _: () = redis::cmd("HSET")
        .arg(&stats)
        .arg("succeeded")
        .arg(1)
        .query(&mut env.redis())
        .expect("HSET");
    assert!(http.get("/queues").json().get("stats").is_none());
    assert!(!visitor.get("/ui/").body.contains(r#"data-queue="stats""#));

    // A queue outside queues.names that holds jobs (pushed by a raw
    // producer) is listed and can be paused.
    env.push(
        "tenant-7.eu_west",
        &[json!({ "id": "odd-1", "kind": "noop" }).to_string()],
    );
    let overview = visitor.get("/ui/");
    assert!(overview.body.contains(r#"data-queue="tenant-7.eu_west""#));
    let done = visitor.post(
        "/ui/queues/tenant-7.eu_west/pause",
        &[("csrf", &csrf), ("from", "queues")],
    );
    assert_redirect(&done, "/ui/queues?notice=paused");
    assert!(paused(&http, "tenant-7.eu_west"));
    assert!(!paused(&http, "default"));
}

#[test]
fn cancelling_a_job_asks_first_and_needs_the_sessions_csrf_token() {
    let env = TestEnv::new();
    dead_job(&env, "finished-1");
    let api = ApiServer::start(
        &env,
        &[
            ("CONVEYOR__API__TOKEN", TOKEN),
            ("CONVEYOR__QUEUES__NAMES", "default,emails"),
        ],
    );
    let (mut visitor, http) = logged_in(&api);
    submit(&http, json!({ "id": "c1", "kind": "noop" }));
    submit(
        &http,
        json!({ "id": "later", "kind": "noop", "queue": "emails", "run_at": 4_102_444_800_000_i64 }),
    );

    let job = visitor.get("/ui/jobs/c1");
    assert_page(&job, 200, r#"href="/ui/jobs/c1/cancel?queue=default""#);
    let confirm = visitor.get("/ui/jobs/c1/cancel?queue=default");
    assert_page(&confirm, 200, "never starts");
    let csrf = csrf_of(&confirm.body);

    for forged in [vec![("csrf", "forged")], vec![("queue", "default")]] {
        assert_page(&visitor.post("/ui/jobs/c1/cancel", &forged), 403, "CSRF");
        assert_eq!(status_of(&http, "c1"), "queued");
    }
    let done = visitor.post(
        "/ui/jobs/c1/cancel",
        &[("csrf", &csrf), ("queue", "default")],
    );
    assert_redirect(&done, "/ui/jobs/c1?queue=default&notice=cancelled");
    assert_eq!(status_of(&http, "c1"), "cancelled");
    let page = visitor.get("/ui/jobs/c1?queue=default&notice=cancelled");
    assert_page(&page, 200, "Cancelled: it will not start");
    assert!(!page.body.contains("/cancel?"), "no cancel button any more");
    assert_page(
        &visitor.get("/ui/jobs/c1/cancel?queue=default"),
        409,
        "nothing to cancel",
    );

    // A scheduled job of another queue, found through the queue in the form.
    let done = visitor.post(
        "/ui/jobs/later/cancel",
        &[("csrf", &csrf), ("queue", "emails")],
    );
    assert_redirect(&done, "/ui/jobs/later?queue=emails&notice=cancelled");
    assert_eq!(status_of(&http, "later?queue=emails"), "cancelled");

    // A finished job, and ids or queues that are not.
    assert_page(
        &visitor.get("/ui/jobs/finished-1/cancel"),
        409,
        "is dead: there is nothing to cancel",
    );
    let cases = [
        ("/ui/jobs/finished-1/cancel", "default", 409, "is dead"),
        (
            "/ui/jobs/no-such-job/cancel",
            "",
            404,
            "to cancel in any configured queue",
        ),
        (
            "/ui/jobs/%3Cb%3Ex%3C%2Fb%3E/cancel",
            "",
            400,
            "is not a job id",
        ),
        (
            "/ui/jobs/c1/cancel",
            "bad queue",
            400,
            "is not a queue name",
        ),
    ];
    for (path, queue, status, says) in cases {
        let page = visitor.post(path, &[("csrf", &csrf), ("queue", queue)]);
        assert_page(&page, status, says);
        assert!(!page.body.contains("<b>x"), "{path}: unescaped");
    }
    assert_eq!(env.row("finished-1").status, "dead");
}

#[test]
fn the_limiters_page_shows_each_limiter_with_its_use() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[("CONVEYOR__API__TOKEN", TOKEN)]);
    let (mut visitor, http) = logged_in(&api);
    assert_page(&visitor.get("/ui/limiters"), 200, "No limiters");
    let stored = http.send(
        http.client()
            .put(format!("{}/limiters/partner-api", http.base))
            .header("content-type", "application/json")
            .body(r#"{"kind":"http","concurrency":3,"per_key_rate":"5/1m"}"#),
    );
    assert_eq!(stored.status, 200, "{}", stored.text);
    let page = visitor.get("/ui/limiters");
    assert_page(&page, 200, r#"data-limiter="partner-api""#);
    for cell in [
        r#"<td class="num concurrency">3</td>"#,
        r#"<td class="num per-key-rate">5/1m</td>"#,
        r#"<td class="num running">0</td>"#,
        r#"<td class="num waiting">0</td>"#,
        "kind <code>http</code>",
        r#"aria-current="page">Limiters</a>"#,
    ] {
        assert!(page.body.contains(cell), "no {cell} in {}", page.body);
    }
    assert!(
        !page.body.contains("<form method=\"post\""),
        "a read-only page"
    );
}
