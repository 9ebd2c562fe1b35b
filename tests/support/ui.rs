//! A dashboard visitor for tests: a blocking HTTP client that keeps one
//! session cookie, and helpers to read the pages it gets.

use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::redirect::Policy;

use super::TestEnv;

/// The API token of the dashboard tests.
pub const TOKEN: &str = "ui-s3cret";

/// A blocking client that keeps one session cookie and follows no redirects.
pub struct Visitor {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Visitor {
    pub fn new(base: &str) -> Visitor {
        Visitor {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .expect("client"),
            base: base.to_string(),
            cookie: None,
        }
    }

    pub fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header(COOKIE, cookie.clone()),
            None => request,
        };
        let (status, headers, body) = self.runtime.block_on(async {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            (status, headers, response.text().await.expect("body"))
        });
        if let Some(set) = headers.get(SET_COOKIE) {
            let pair = set
                .to_str()
                .expect("ascii")
                .split(';')
                .next()
                .unwrap_or_default();
            self.cookie = Some(pair.to_string()).filter(|p| !p.ends_with('='));
        }
        Page {
            status,
            headers,
            body,
        }
    }

    pub fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        self.send(request)
    }

    pub fn login(&mut self, token: &str) -> Page {
        self.post("/ui/login", &[("token", token), ("next", "/ui/dead")])
    }
}

/// The CSRF token in a page's forms.
pub fn csrf_of(body: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = body.find(marker).expect("a form with a CSRF token") + marker.len();
    body[start..start + 64].to_string()
}

/// Writes a dead row the way a worker would have (schema by `conveyor migrate`).
pub fn dead_job(env: &TestEnv, id: &str) {
    let (code, log) = env.conveyor_output(&["migrate"], &[]);
    assert_eq!(code, 0, "{log}");
    let sql = format!(
        "INSERT INTO job_results (id, queue, kind, status, attempts, error, finished_at, worker, message)
         VALUES ('{id}', 'default', 'noop', 'dead', 3, 'boom', UTC_TIMESTAMP(6), 'w1',
                 '{{\"id\":\"{id}\",\"kind\":\"noop\",\"payload\":1}}')"
    );
    let _: Vec<(i64,)> = env.query(&sql);
}

pub fn pending(env: &TestEnv) -> Vec<String> {
    let mut conn = env.redis();
    redis::cmd("LRANGE")
        .arg(env.pending_key("default"))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .expect("LRANGE")
}

pub fn assert_page(page: &Page, status: u16, says: &str) {
    assert_eq!(page.status, status, "{}", page.body);
    let kind = page.headers.get(CONTENT_TYPE).expect("content type");
    assert!(
        kind.to_str().unwrap_or_default().starts_with("text/html"),
        "{kind:?}"
    );
    assert!(page.body.contains(says), "no {says:?} in {}", page.body);
    assert!(page.body.contains("</html>"), "a whole page");
}
