//! What every page shares: the frame around it ([`Chrome`]), rendering a
//! template into a response, and the plain functions that turn stored
//! values into text for a page (escaped bytes, truncation, ages, a message's
//! summary, paging).
//!
//! Everything here is free of I/O and tested on its own. Templates escape
//! whatever these functions return: this module must never produce HTML.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use askama::Template;
use serde_json::Value;

/// Rows per page of every paged list.
pub(super) const PAGE_SIZE: u64 = 50;
/// Bytes of a payload or raw message shown inline before "show all".
pub(super) const PREVIEW_BYTES: usize = 2048;
/// Bytes a "show all" page shows at most (the rest is a download).
pub(super) const FULL_VIEW_BYTES: usize = 256 * 1024;

/// The frame of a page: title, navigation, session and banner.
#[derive(Debug, Clone, Default)]
pub(super) struct Chrome {
    pub title: String,
    /// Which navigation entry is current.
    pub active: &'static str,
    /// The CSRF token of this session's forms (empty: no forms).
    pub csrf: String,
    /// Whether actions (retry, delete, pause...) are allowed.
    pub writable: bool,
    /// Shown above every page (e.g. a read-only dashboard).
    pub banner: Option<String>,
    /// A logout button (sessions of a token login).
    pub logged_in: bool,
    /// A one-line result of the last action.
    pub notice: Option<String>,
    /// Reload the page after this many ms (live pages, with JavaScript).
    pub refresh_ms: Option<u64>,
    /// JSON the script polls to update `data-live` elements.
    pub live_source: Option<&'static str>,
}

impl Chrome {
    /// The frame of pages shown without a session (errors, login).
    pub(super) fn bare(title: &str) -> Chrome {
        Chrome {
            title: title.to_string(),
            ..Chrome::default()
        }
    }
}

/// Renders `page` with `status`, as HTML that is never cached.
pub(super) fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Err(error) => {
            log::error!(target: "conveyor::ui", "rendering a page failed: {error}");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("the page could not be rendered; see the server log")
        }
    }
}

/// `text` as one part of a URL path or query (percent-encoded).
pub(super) fn url_part(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A redirect after a form (303: the browser follows with a GET).
pub(super) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_string()))
        .finish()
}

/// Bytes as readable text: valid UTF-8 stays (control characters escaped
/// like `\n`, `\u{1b}`), invalid bytes become `\xNN`. At most `max` bytes
/// of input are shown; the flag says whether some were left out.
pub(super) fn escaped_bytes(raw: &[u8], max: usize) -> (String, bool) {
    let shown = &raw[..raw.len().min(max)];
    let mut out = String::with_capacity(shown.len());
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    (out, raw.len() > max)
}

/// `text` with control characters escaped (like `\u{1b}`), but line
/// breaks and tabs kept: for error messages and stack traces.
pub(super) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` cut to `max` characters, with `…` when cut.
pub(super) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

/// A JSON value pretty-printed, cut to `max` bytes (on a character
/// boundary); the flag says whether it was cut.
pub(super) fn pretty_json(value: &Value, max: usize) -> (String, bool) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    cut_text(text, max)
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(super) fn cut_text(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

/// "4s", "12m 5s", "3h 2m", "2d 4h": a duration in milliseconds, for humans.
pub(super) fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A unix-ms time as RFC 3339 UTC (seconds precision).
pub(super) fn rfc3339(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".to_string())
}

/// What a listing shows of a message: its id, kind, enqueue time and a
/// short payload, read leniently (a message that is not an envelope still
/// shows, escaped).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct MessageSummary {
    pub id: Option<String>,
    pub kind: String,
    pub enqueued_at_ms: Option<i64>,
    pub payload: String,
}

/// Characters of a payload a listing shows.
const SUMMARY_PAYLOAD_CHARS: usize = 120;

pub(super) fn summarize(raw: &[u8]) -> MessageSummary {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(raw) else {
        let (text, _) = escaped_bytes(raw, SUMMARY_PAYLOAD_CHARS * 4);
        return MessageSummary {
            kind: "(not a JSON object)".to_string(),
            payload: shorten(&text, SUMMARY_PAYLOAD_CHARS),
            ..MessageSummary::default()
        };
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
    let payload = map.get("payload").map(Value::to_string).unwrap_or_default();
    MessageSummary {
        id: text("id").filter(|id| crate::job::is_valid_job_id(id)),
        kind: text("kind").unwrap_or_else(|| "(no kind)".to_string()),
        enqueued_at_ms: map.get("enqueued_at").and_then(Value::as_i64),
        payload: shorten(
            &escaped_bytes(payload.as_bytes(), payload.len()).0,
            SUMMARY_PAYLOAD_CHARS,
        ),
    }
}

/// Paging of a list of unknown or known length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pager {
    /// 1-based page number.
    pub page: u64,
    pub has_previous: bool,
    pub has_next: bool,
}

impl Pager {
    /// `shown` rows on page `page`; `total` when the length is known.
    pub(super) fn new(page: u64, shown: usize, total: Option<u64>) -> Pager {
        let page = page.max(1);
        let has_next = match total {
            Some(total) => page * PAGE_SIZE < total,
            None => shown as u64 >= PAGE_SIZE,
        };
        Pager {
            page,
            has_previous: page > 1,
            has_next,
        }
    }

    /// Rows to skip for `page` (1-based).
    pub(super) fn offset(page: u64) -> u64 {
        page.max(1).saturating_sub(1).saturating_mul(PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_invalid_bytes_are_escaped() {
        let (text, cut) = escaped_bytes(b"a\x00b\n\xffc\x1b[31m\\", 100);
        assert_eq!(text, r"a\0b\n\xffc\u{1b}[31m\\");
        assert!(!cut);
        let (text, cut) = escaped_bytes("héllo".as_bytes(), 2);
        assert_eq!(text, r"h\xc3");
        assert!(cut);
    }

    #[test]
    fn markup_is_left_to_the_template_to_escape() {
        let (text, _) = escaped_bytes(b"<script>", 100);
        assert_eq!(text, "<script>");
    }

    #[test]
    fn errors_keep_their_lines_but_not_terminal_codes() {
        assert_eq!(
            printable("boom\n\tat x \u{1b}[31m"),
            "boom\n\tat x \\u{1b}[31m"
        );
    }

    #[test]
    fn text_is_cut_on_character_boundaries() {
        assert_eq!(shorten("abcdef", 3), "abc…");
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(cut_text("aé".to_string(), 2), ("a".to_string(), true));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(4_200), "4s");
        assert_eq!(human_duration(725_000), "12m 5s");
        assert_eq!(human_duration(3 * 3_600_000 + 120_000), "3h 2m");
        assert_eq!(human_duration(-5), "0s");
    }

    #[test]
    fn messages_are_summarized_leniently() {
        let s = summarize(br#"{"id":"a1","kind":"noop","payload":{"x":1},"enqueued_at":5}"#);
        assert_eq!(s.id.as_deref(), Some("a1"));
        assert_eq!((s.kind.as_str(), s.enqueued_at_ms), ("noop", Some(5)));
        assert_eq!(s.payload, r#"{"x":1}"#);
        let bad = summarize(b"\x01not json");
        assert_eq!(bad.kind, "(not a JSON object)");
        assert_eq!(bad.payload, r"\u{1}not json");
        let odd_id = summarize(br#"{"id":"<b>","kind":"k"}"#);
        assert_eq!(odd_id.id, None);
    }

    #[test]
    fn pages_know_their_neighbours() {
        assert_eq!(
            Pager::new(1, 50, None),
            Pager {
                page: 1,
                has_previous: false,
                has_next: true
            }
        );
        assert!(!Pager::new(2, 10, None).has_next);
        assert!(!Pager::new(1, 50, Some(50)).has_next);
        assert!(Pager::new(1, 50, Some(51)).has_next);
        assert_eq!(Pager::offset(3), 100);
        assert_eq!(Pager::offset(0), 0);
    }
}
