//! The API's connection and request limits against misbehaving clients:
//! slowloris-style clients that never finish their headers or drip their
//! body, more connections than `api.max_connections`, and oversized bodies
//! on any route. Other clients must still be answered, and every refusal is
//! JSON.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::http::ApiServer;
use support::TestEnv;

fn address(api: &ApiServer) -> String {
    api.base.trim_start_matches("http://").to_string()
}

fn connect(api: &ApiServer) -> TcpStream {
    let stream = TcpStream::connect(address(api)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
}

/// Reads until the server closes the connection; panics if it is still
/// open after the stream's read timeout.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the server kept the connection open: {e}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Slowloris: a hundred clients that start a request and send a header line
/// now and then without ever finishing. Requests of other clients are still
/// answered, and each slow client is cut off with 408 after
/// `api.client_timeout_ms`.
#[test]
fn slow_header_clients_do_not_block_others_and_are_cut_off() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[("CONVEYOR__API__CLIENT_TIMEOUT_MS", "1500")]);
    let http = api.http();
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut stream = connect(&api);
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .expect("start a request");
            stream
        })
        .collect();
    let mut answered = 0;
    // A few rounds of dripping one more header line on every slow client,
    // with ordinary requests from another client between them.
    for round in 0..4 {
        for stream in &mut slow {
            let _ = stream.write_all(format!("X-Drip-{round}: 1\r\n").as_bytes());
        }
        assert_eq!(http.get("/health").status, 200);
        let submitted = http.post("/jobs", r#"{"kind":"noop"}"#);
        assert_eq!(submitted.status, 202, "{}", submitted.text);
        answered += 2;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(answered, 8);
    let mut cut_off = 0;
    for stream in &mut slow {
        let reply = read_to_close(stream);
        if reply.starts_with("HTTP/1.1 408") || reply.is_empty() {
            cut_off += 1;
        }
    }
    assert_eq!(cut_off, slow.len());
}

/// A client that sends its headers and then drips its body gets 408 (JSON,
/// naming the setting) after `api.request_timeout_ms`; a fast client beside
/// it is answered meanwhile.
#[test]
fn a_slow_body_gets_408_and_others_are_answered() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[("CONVEYOR__API__REQUEST_TIMEOUT_MS", "1000")]);
    let http = api.http();
    let mut stream = connect(&api);
    stream
        .write_all(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 200\r\n\r\n{\"kind\":",
        )
        .expect("headers");
    let dripper = {
        let mut stream = stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            for _ in 0..15 {
                if stream.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    assert_eq!(http.get("/health").status, 200);
    let reply = read_to_close(&mut stream);
    dripper.join().expect("dripper");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    let body = &reply[reply.find("\r\n\r\n").expect("a body") + 4..];
    let json: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON body");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("api.request_timeout_ms")),
        "{json}"
    );
}

/// With `api.max_connections` held by idle keep-alive clients, a new client
/// waits to be accepted instead of being served past the limit; it is
/// answered once the others go.
#[test]
fn connections_beyond_the_limit_wait_for_a_free_one() {
    let env = TestEnv::new();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let limit = threads.to_string();
    let api = ApiServer::start(
        &env,
        &[
            ("CONVEYOR__API__MAX_CONNECTIONS", limit.as_str()),
            ("CONVEYOR__API__KEEP_ALIVE_MS", "60000"),
            ("CONVEYOR__API__CLIENT_TIMEOUT_MS", "60000"),
        ],
    );
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held: Vec<TcpStream> = (0..threads)
        .map(|_| {
            let mut stream = connect(&api);
            stream.write_all(request).expect("request");
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).expect("a response");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            stream
        })
        .collect();
    let mut waiting = connect(&api);
    waiting
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    waiting.write_all(request).expect("request");
    let mut buf = [0u8; 1024];
    let early = waiting.read(&mut buf);
    assert!(early.is_err(), "served past the limit: {early:?}");
    held.clear();
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let n = waiting
        .read(&mut buf)
        .expect("answered once a slot is free");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
}

/// A declared body over `api.max_body_bytes` is refused with JSON 413 on
/// every route, before it is read.
#[test]
fn oversized_bodies_are_refused_on_every_route() {
    let env = TestEnv::new();
    let api = ApiServer::start(&env, &[("CONVEYOR__API__MAX_BODY_BYTES", "1000")]);
    let http = api.http();
    for (method, path) in [
        ("POST", "/jobs"),
        ("POST", "/jobs/batch"),
        ("GET", "/health"),
        ("GET", "/queues"),
        ("GET", "/no/such/route"),
    ] {
        let request = http
            .client()
            .request(
                method.parse().expect("method"),
                format!("{}{path}", api.base),
            )
            .body(vec![b' '; 5000]);
        let response = http.send(request);
        assert_eq!(response.status, 413, "{method} {path}: {}", response.text);
        assert!(
            response.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("api.max_body_bytes")),
            "{}",
            response.text
        );
    }
}
