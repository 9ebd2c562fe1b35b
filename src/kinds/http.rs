//! `http`: one HTTP request, and what to extract from its response.
//!
//! Payload: `{"url", "method"?, "headers"?, "body"?, "extract"?: ["title",
//! "json"], "select"?: {"name": "css selector"}}`. Output: `{"status",
//! "elapsed_ms", "bytes", "title"?, "json"?, "selected"?: {"name": [texts]}}`.
//!
//! This module owns the payload of the kind and the extraction (HTML title
//! and CSS selections with scraper, JSON parsing). It must never send a
//! request, read a body or classify a failure itself: all of that is
//! [`super::http_client`]'s, shared with `gather`, so the address guard,
//! the body cap and the retry rules cannot differ between the two kinds.

use std::collections::BTreeMap;

use scraper::{Html, Selector};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::http_client::{HttpKinds, RequestSpec};
use super::{payload_as, JobContext, JobError, JobResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpPayload {
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<Value>,
    #[serde(default)]
    extract: Vec<Extract>,
    #[serde(default)]
    select: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Extract {
    /// The text of the document's first `<title>` (null when there is none).
    Title,
    /// The body parsed as JSON; a body that is not JSON fails the job.
    Json,
}

pub(super) async fn run(http: HttpKinds, ctx: JobContext, payload: Value) -> JobResult {
    let payload: HttpPayload = payload_as("http", payload)?;
    let spec = RequestSpec::new(
        "http",
        &payload.url,
        payload.method.as_deref(),
        &payload.headers,
        payload.body,
    )?;
    // Every payload problem is found before anything is sent.
    let selectors = payload
        .select
        .iter()
        .map(|(name, css)| {
            Selector::parse(css)
                .map(|selector| (name.clone(), selector))
                .map_err(|e| {
                    JobError::permanent(format!(
                        "invalid http payload: select.{name} {css:?} is not a CSS selector: {e}"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fetched = http
        .fetch(&spec, ctx.deadline)
        .await
        .map_err(|e| e.to_job_error(""))?;
    let mut output = Map::new();
    output.insert("status".into(), json!(fetched.status.as_u16()));
    output.insert(
        "elapsed_ms".into(),
        json!(fetched.elapsed.as_millis() as u64),
    );
    output.insert("bytes".into(), json!(fetched.body.len()));
    if payload.extract.contains(&Extract::Json) {
        let parsed: Value = serde_json::from_slice(&fetched.body).map_err(|e| {
            JobError::permanent(format!(
                "extract json: the response body of {} is not JSON: {e}",
                super::http_client::display_url(&spec.url)
            ))
        })?;
        output.insert("json".into(), parsed);
    }
    let wants_title = payload.extract.contains(&Extract::Title);
    if wants_title || !selectors.is_empty() {
        let text = String::from_utf8_lossy(&fetched.body);
        let document = Html::parse_document(&text);
        if wants_title {
            output.insert("title".into(), json!(title(&document)));
        }
        if !selectors.is_empty() {
            let selected: Map<String, Value> = selectors
                .iter()
                .map(|(name, selector)| (name.clone(), json!(select(&document, selector))))
                .collect();
            output.insert("selected".into(), Value::Object(selected));
        }
    }
    Ok(Value::Object(output))
}

/// The trimmed text of the first `<title>` element, if any.
fn title(document: &Html) -> Option<String> {
    let selector = Selector::parse("title").ok()?;
    document
        .select(&selector)
        .next()
        .map(|element| normalize_space(&element.text().collect::<String>()))
}

/// The text of every element `selector` matches, in document order.
fn select(document: &Html, selector: &Selector) -> Vec<String> {
    document
        .select(selector)
        .map(|element| normalize_space(&element.text().collect::<String>()))
        .collect()
}

/// Collapses runs of whitespace into one space and trims the ends, as a
/// browser shows text.
fn normalize_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_and_selections_come_from_a_real_parser() {
        let html = r#"<!doctype html><html><head>
            <title>  Hello &amp;
              world </title></head>
            <body><!-- <title>not this</title> -->
            <ul><li class="item">one</li><li class="item">t<b>w</b>o</li></ul>
            <script>var x = "<title>nor this</title>";</script>
            </body></html>"#;
        let document = Html::parse_document(html);
        assert_eq!(title(&document).as_deref(), Some("Hello & world"));
        let items = Selector::parse("li.item").expect("selector");
        assert_eq!(select(&document, &items), vec!["one", "two"]);
        let none = Selector::parse("p.missing").expect("selector");
        assert!(select(&document, &none).is_empty());
        assert_eq!(title(&Html::parse_document("<p>no title</p>")), None);
    }

    #[test]
    fn bad_payloads_are_permanent_and_named() {
        let http = HttpKinds::new(&crate::config::HttpKindSettings::default());
        let ctx = JobContext {
            id: "t".into(),
            queue: "q".into(),
            kind: "http".into(),
            attempt: 1,
            max_attempts: 3,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(5),
            cancel: Default::default(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for (payload, needle) in [
            (json!({}), "missing field `url`"),
            (json!({"url": "ftp://x/"}), "scheme"),
            (json!({"url": "not a url"}), "url"),
            (json!({"url": "http://x/", "method": "BREW"}), "method"),
            (
                json!({"url": "http://x/", "extract": ["pdf"]}),
                "unknown variant",
            ),
            (
                json!({"url": "http://x/", "select": {"a": "p["}}),
                "select.a",
            ),
            (
                json!({"url": "http://x/", "headers": {"a b": "c"}}),
                "header name",
            ),
        ] {
            let err = runtime
                .block_on(run(http.clone(), ctx.clone(), payload.clone()))
                .expect_err("invalid");
            assert!(err.is_permanent(), "{payload}");
            assert!(err.message.starts_with("invalid http payload"), "{err}");
            assert!(err.message.contains(needle), "{payload}: {err}");
        }
    }
}
