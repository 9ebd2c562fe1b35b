//! A small blocking HTTP client for tests (reqwest on a private runtime), and
//! the in-process API server.

use std::net::TcpListener;
use std::sync::Arc;

use serde_json::Value;

use super::TestEnv;

/// A response: status, body text, and the body as JSON when it is JSON.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Response {
    /// The header `name` as text, when present.
    #[allow(dead_code)] // Not every test binary reads headers.
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.headers.get(name)?;
        Some(value.to_str().ok()?.to_string())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

impl Http {
    pub fn new(base: &str) -> Http {
        Http {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    pub fn with_token(mut self, token: &str) -> Http {
        self.token = Some(token.to_string());
        self
    }

    pub fn get(&self, path: &str) -> Response {
        self.send(self.client.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Response {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        self.send(request)
    }

    /// Any method, with a JSON body.
    #[allow(dead_code)] // Not every test binary uses other methods.
    pub fn request(&self, method: &str, path: &str, body: &str) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.send(request)
    }

    pub fn delete(&self, path: &str) -> Response {
        self.send(self.client.delete(format!("{}{path}", self.base)))
    }

    pub fn send(&self, mut request: reqwest::RequestBuilder) -> Response {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        self.runtime.block_on(async {
            let response = request.send().await.expect("request sent");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = response.text().await.expect("body read");
            Response {
                status,
                text,
                headers,
            }
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// The API served in-process on 127.0.0.1:0 from a thread of its own, with
/// this test's settings plus `extra` (`CONVEYOR__...` pairs). Stopped on drop.
pub struct ApiServer {
    pub base: String,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    pub fn start(env: &TestEnv, extra: &[(&str, &str)]) -> ApiServer {
        let mut vars = env.worker_env();
        vars.remove("RUST_LOG");
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings =
            conveyor::config::Settings::load_with_env(None, Some(vars)).expect("settings");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let state = conveyor::api::ApiState::new(Arc::new(settings), None).expect("state");
                let server = conveyor::api::serve(listener, state).expect("serve");
                tx.send(server.handle()).expect("handle sent");
                server.await.expect("server runs");
            });
        });
        let handle = rx.recv().expect("server started");
        ApiServer {
            base,
            handle,
            thread: Some(thread),
        }
    }

    pub fn http(&self) -> Http {
        Http::new(&self.base)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
