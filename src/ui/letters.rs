//! Dead letters (`/ui/dead-letters`): messages that never became a job,
//! with their raw bytes escaped and cut (a page per letter shows more, a
//! download gives all), the reason and the time; delete or push again.
//!
//! It reads and changes letters only through `store` and
//! [`crate::requeue`]. It must never put raw bytes into a page unescaped.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::UiError;
use super::guard::{Authorized, Viewer};
use super::view::{
    escaped_bytes, html, see_other, Chrome, Pager, FULL_VIEW_BYTES, PAGE_SIZE, PREVIEW_BYTES,
};
use crate::api::ApiState;
use crate::requeue;
use crate::store::{self, DeadFilter, DeadLetterRecord};

/// A letter as a page shows it.
pub(super) struct Letter {
    pub id: u64,
    pub queue: String,
    pub reason: String,
    pub received_at: String,
    pub bytes: usize,
    pub raw: String,
    pub cut: bool,
}

impl Letter {
    fn of(record: DeadLetterRecord, max: usize) -> Letter {
        let (raw, cut) = escaped_bytes(&record.raw, max);
        Letter {
            id: record.id,
            queue: record.queue,
            reason: record.reason,
            received_at: record.received_at,
            bytes: record.raw.len(),
            raw,
            cut,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/letters.html")]
struct LettersPage {
    chrome: Chrome,
    total: u64,
    letters: Vec<Letter>,
    pager: Pager,
}

#[derive(Template)]
#[template(path = "ui/letter.html")]
struct LetterPage {
    chrome: Chrome,
    letter: Letter,
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    page: Option<u64>,
    #[serde(default)]
    notice: String,
}

pub(super) async fn list(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, UiError> {
    let page_no = query.page.unwrap_or(1).max(1);
    let total = store::count_matching(state.pool(), &DeadFilter::default(), true).await?;
    let filter = DeadFilter {
        limit: Some(PAGE_SIZE),
        offset: Some(Pager::offset(page_no)),
        ..DeadFilter::default()
    };
    let records = store::list_dead_letters(state.pool(), &filter).await?;
    let mut chrome = viewer.chrome("Dead letters", "letters");
    chrome.notice = match query.notice.as_str() {
        "deleted" => Some("The dead letter was deleted.".into()),
        "pushed" => {
            Some("The message was pushed onto its queue again and the letter deleted.".into())
        }
        _ => None,
    };
    let page = LettersPage {
        chrome,
        total,
        pager: Pager::new(page_no, records.len(), Some(total)),
        letters: records
            .into_iter()
            .map(|r| Letter::of(r, PREVIEW_BYTES))
            .collect(),
    };
    Ok(html(StatusCode::OK, &page))
}

/// A letter id from the URL: a number.
fn letter_id(text: &str) -> Result<u64, UiError> {
    text.parse().map_err(|_| {
        UiError::BadRequest(format!(
            "{:?} is not a dead letter id: they are numbers",
            super::view::shorten(&escaped_bytes(text.as_bytes(), 200).0, 80)
        ))
    })
}

async fn find(state: &ApiState, id: u64) -> Result<DeadLetterRecord, UiError> {
    let filter = DeadFilter {
        ids: vec![id.to_string()],
        limit: Some(1),
        ..DeadFilter::default()
    };
    store::list_dead_letters(state.pool(), &filter)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| UiError::NotFound(format!("no dead letter {id}")))
}

pub(super) async fn show(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = letter_id(&id)?;
    let letter = Letter::of(find(&state, id).await?, FULL_VIEW_BYTES);
    let page = LetterPage {
        chrome: viewer.chrome(&format!("Dead letter {id}"), "letters"),
        letter,
    };
    Ok(html(StatusCode::OK, &page))
}

/// The raw bytes, as a download.
pub(super) async fn raw(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = letter_id(&id)?;
    let letter = find(&state, id).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"dead-letter-{id}.bin\""),
        ))
        .body(letter.raw))
}

fn back(notice: &str) -> HttpResponse {
    see_other(&format!("/ui/dead-letters?notice={notice}"))
}

pub(super) async fn delete(
    allowed: Authorized,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = letter_id(&id)?;
    let filter = DeadFilter::by_ids([id.to_string()]);
    if store::purge(allowed.state.pool(), &filter, true).await? == 0 {
        return Err(UiError::NotFound(format!("no dead letter {id}")));
    }
    Ok(back("deleted"))
}

/// Push the raw message onto its queue again (then the letter is deleted).
pub(super) async fn push(
    allowed: Authorized,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = letter_id(&id)?;
    let filter = DeadFilter::by_ids([id.to_string()]);
    let state = &allowed.state;
    if requeue::retry_letters(state.pool(), state.redis(), &filter)
        .await?
        .is_empty()
    {
        return Err(UiError::NotFound(format!("no dead letter {id}")));
    }
    Ok(back("pushed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letter_ids_are_numbers() {
        assert_eq!(letter_id("17").ok(), Some(17));
        assert!(letter_id("1; DROP").is_err());
        assert!(letter_id("<b>").is_err());
    }

    #[test]
    fn raw_bytes_are_escaped_and_cut() {
        let record = DeadLetterRecord {
            id: 1,
            claim_token: "t".into(),
            queue: "q".into(),
            raw: b"\x00\x01<script>".repeat(1000),
            reason: "not JSON".into(),
            received_at: "2026-01-01T00:00:00Z".into(),
        };
        let letter = Letter::of(record, 20);
        assert!(letter.cut);
        assert_eq!(letter.bytes, 10_000);
        assert!(letter.raw.starts_with(r"\0\u{1}<script>"));
    }
}
