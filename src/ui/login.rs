//! The login form (`/ui/login`) and logout, for dashboards with `api.token`.
//!
//! This module owns issuing and ending sessions. It must never redirect
//! anywhere but a dashboard page after a login (no open redirect), and
//! never echo the token.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::error::UiError;
use super::guard::{removal_cookie, session_cookie, CsrfForm, Viewer};
use super::session::token_matches;
use super::view::{html, see_other, Chrome};
use crate::api::ApiState;
use crate::job::now_ms;

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage<'a> {
    chrome: Chrome,
    next: &'a str,
    expired: bool,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    expired: String,
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

/// Where to go after a login: a dashboard page, else the overview.
pub(super) fn safe_next(next: &str) -> &str {
    let inside = next == "/ui" || next.starts_with("/ui/");
    if inside && !next.contains("//") && !next.contains('\\') && !next.contains("/login") {
        next
    } else {
        "/ui/"
    }
}

pub(super) async fn form(
    state: web::Data<ApiState>,
    query: web::Query<LoginQuery>,
) -> HttpResponse {
    if state.settings().api.token.is_empty() {
        return see_other("/ui/");
    }
    let page = LoginPage {
        chrome: Chrome::bare("Log in"),
        next: safe_next(&query.next),
        expired: query.expired == "1",
        error: None,
    };
    html(StatusCode::OK, &page)
}

pub(super) async fn login(
    state: web::Data<ApiState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, UiError> {
    let settings = state.settings();
    if settings.api.token.is_empty() {
        return Ok(see_other("/ui/"));
    }
    let next = safe_next(&form.next);
    if !token_matches(&settings.api.token, &form.token) {
        let page = LoginPage {
            chrome: Chrome::bare("Log in"),
            next,
            expired: false,
            error: Some("That is not the API token."),
        };
        return Ok(html(StatusCode::UNAUTHORIZED, &page));
    }
    let session = state
        .session_key()
        .issue(now_ms(), settings.api.session_ttl_ms);
    let secure = req.connection_info().scheme() == "https";
    let mut response = see_other(next);
    response
        .add_cookie(&session_cookie(
            &session,
            settings.api.session_ttl_ms,
            secure,
        ))
        .map_err(|e| UiError::BadRequest(e.to_string()))?;
    Ok(response)
}

pub(super) async fn logout(
    state: web::Data<ApiState>,
    viewer: web::ReqData<Viewer>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    if !state
        .session_key()
        .csrf_matches(&viewer.session, &form.csrf)
    {
        return Err(UiError::Forbidden(
            "the form's CSRF token does not belong to your session: you are still logged in".into(),
        ));
    }
    let mut response = see_other("/ui/login");
    response
        .add_cookie(&removal_cookie())
        .map_err(|e| UiError::BadRequest(e.to_string()))?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_pages_are_followed_after_a_login() {
        assert_eq!(safe_next("/ui/dead?queue=a"), "/ui/dead?queue=a");
        assert_eq!(safe_next("https://evil.example/"), "/ui/");
        assert_eq!(safe_next("//evil.example/ui/"), "/ui/");
        assert_eq!(safe_next("/ui//evil.example"), "/ui/");
        assert_eq!(safe_next("/ui/login"), "/ui/");
        assert_eq!(safe_next(""), "/ui/");
    }
}
