//! The dashboard over plain HTTP: login sessions, CSRF tokens, expiry, the
//! read-only mode without a token, security headers, and bad input in URLs
//! and forms (a clear page, never a 500). Browser behaviour is in
//! `dashboard_browser.rs`.

mod support;

use std::time::Duration;

use reqwest::header::{LOCATION, SET_COOKIE};
use support::http::ApiServer;
use support::ui::{assert_page, csrf_of, dead_job, pending, Visitor, TOKEN};
use support::{free_port, wait_until, TestEnv};

#[test]
fn a_login_session_and_its_csrf_token_guard_every_action() {
    let env = TestEnv::new();
    dead_job(&env, "d1");
    let api = ApiServer::start(&env, &[("CONVEYOR__API__TOKEN", TOKEN)]);
    let mut visitor = Visitor::new(&api.base);

    let first = visitor.get("/ui/dead");
    assert_eq!(first.status, 303);
    assert_eq!(
        first.headers[LOCATION],
        "/ui/login?next=%2Fui%2Fdead&expired=0"
    );
    assert_page(&visitor.login("wrong"), 401, "not the API token");
    assert!(visitor.cookie.is_none());

    let login = visitor.login(TOKEN);
    assert_eq!(login.status, 303);
    assert_eq!(login.headers[LOCATION], "/ui/dead");
    let set = login.headers[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attribute), "{set}");
    }
    let page = visitor.get("/ui/dead");
    assert_page(&page, 200, "d1");
    let policy = page.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"));
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let csrf = csrf_of(&page.body);

    // Forged or missing tokens change nothing.
    assert_page(
        &visitor.post("/ui/jobs/d1/retry", &[("csrf", "forged")]),
        403,
        "CSRF",
    );
    assert_page(
        &visitor.post("/ui/jobs/d1/retry", &[]),
        403,
        "nothing was changed",
    );
    assert_page(
        &visitor.post(
            "/ui/dead/bulk",
            &[("action", "delete"), ("csrf", &csrf[..63])],
        ),
        403,
        "CSRF",
    );
    assert!(pending(&env).is_empty());
    assert_eq!(env.row("d1").status, "dead");

    // Another session's token does not do either.
    let mut other = Visitor::new(&api.base);
    other.login(TOKEN);
    assert_page(
        &other.post("/ui/jobs/d1/retry", &[("csrf", &csrf)]),
        403,
        "CSRF",
    );
    assert!(pending(&env).is_empty());

    // The right one does.
    let retried = visitor.post("/ui/jobs/d1/retry", &[("csrf", &csrf)]);
    assert_eq!(retried.status, 303, "{}", retried.body);
    let pushed = pending(&env);
    assert_eq!(pushed.len(), 1);
    assert!(pushed[0].starts_with(r#"{"id":"d1""#), "{pushed:?}");

    // The JSON API still wants its bearer token; the cookie is not enough.
    assert_eq!(visitor.get("/queues").status, 401);

    // Logging out ends the session.
    assert_eq!(visitor.post("/ui/logout", &[("csrf", &csrf)]).status, 303);
    assert_eq!(visitor.get("/ui/").status, 303);
}

#[test]
fn bad_input_gets_a_clear_page() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[]);
    let mut visitor = Visitor::new(&api.base);
    let cases = [
        (
            "/ui/jobs/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            400,
            "is not a job id",
        ),
        ("/ui/jobs/a%00b", 400, "is not a job id"),
        (
            &format!("/ui/jobs/{}", "x".repeat(65)),
            400,
            "is not a job id",
        ),
        ("/ui/jobs/unknown-job", 404, "no job"),
        ("/ui/queues/bad%20name", 400, "is not a queue name"),
        ("/ui/queues/default?tab=%3Cb%3E", 400, "tab must be"),
        ("/ui/queues/default?page=-1", 400, "bad query string"),
        ("/ui/dead?age=1y", 400, "age must be"),
        ("/ui/dead?page=abc", 400, "page must be a whole number"),
        ("/ui/dead?queue=%3Cscript%3E", 400, "is not a queue name"),
        (
            "/ui/dead-letters/1%3B%20DROP",
            400,
            "is not a dead letter id",
        ),
        ("/ui/dead-letters/42", 404, "no dead letter 42"),
        ("/ui/no/such/page", 404, "no page GET /ui/no/such/page"),
        ("/ui/?range=%3Cscript%3E", 400, "range must be"),
    ];
    for (path, status, says) in cases {
        let page = visitor.get(path);
        assert_page(&page, status, says);
        assert!(!page.body.contains("<script>alert"), "{path}: unescaped");
    }
    let huge = "x".repeat(64 * 1024);
    let page = visitor.post("/ui/dead/bulk", &[("csrf", &huge)]);
    assert_page(&page, 400, "bad form");
}

#[test]
fn sessions_expire() {
    let env = TestEnv::new();
    let api = ApiServer::start(
        &env,
        &[
            ("CONVEYOR__API__TOKEN", TOKEN),
            ("CONVEYOR__API__SESSION_TTL_MS", "1000"),
        ],
    );
    let mut visitor = Visitor::new(&api.base);
    assert_eq!(visitor.login(TOKEN).status, 303);
    assert_eq!(visitor.get("/ui/").status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    let expired = visitor.get("/ui/dead");
    assert_eq!(expired.status, 303);
    assert_eq!(
        expired.headers[LOCATION],
        "/ui/login?next=%2Fui%2Fdead&expired=1"
    );
    assert_page(
        &visitor.get("/ui/login?expired=1"),
        200,
        "Your session expired",
    );
}

#[test]
fn without_a_token_the_dashboard_is_read_write_only_on_loopback() {
    let env = TestEnv::new();
    dead_job(&env, "d2");
    let loopback = ApiServer::start(&env, &[]);
    let mut local = Visitor::new(&loopback.base);
    let page = local.get("/ui/dead");
    assert_page(&page, 200, "d2");
    assert!(!page.body.contains("Read-only"));
    assert!(
        local.cookie.is_some(),
        "a session is issued on the first visit"
    );

    let port = free_port();
    let bind = format!("0.0.0.0:{port}");
    let _api = env.conveyor(&["api", "--bind", &bind], &[]);
    let base = format!("http://127.0.0.1:{port}");
    wait_until("the API to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mut remote = Visitor::new(&base);
    let page = remote.get("/ui/dead");
    assert_page(&page, 200, "Read-only");
    assert!(!page.body.contains(r#"name="csrf""#), "no action forms");
    let refused = remote.post("/ui/jobs/d2/retry", &[("csrf", "anything")]);
    assert_page(&refused, 403, "read-only");
    assert!(pending(&env).is_empty());
    let overview = remote.get("/ui/");
    assert_page(&overview, 200, "Read-only");
    assert!(
        !overview.body.contains(r#"name="csrf""#),
        "no pause buttons"
    );
    let refused = remote.post("/ui/queues/default/pause", &[("csrf", "anything")]);
    assert_page(&refused, 403, "read-only");
    let keys = env.leftover_keys();
    assert!(
        keys.iter().all(|(key, _)| !key.ends_with(":paused")),
        "{keys:?}"
    );
}
