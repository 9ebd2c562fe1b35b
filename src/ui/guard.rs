//! Who may see and change what: the dashboard's session check, its
//! read-only mode, CSRF checks and the security headers of every page.
//!
//! With `api.token` set, every page but the login form and the static
//! assets needs a session cookie (HttpOnly, SameSite=Strict) that the login
//! form issues; a missing or expired one leads to the login form. Without a
//! token a session is issued on the first visit, and actions are allowed
//! only when the server listens on a loopback address. This module must
//! never let a state-changing request through without a matching CSRF token.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::{Data, Form};
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError};
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::error::UiError;
use super::session::{Session, SessionError};
use super::view::Chrome;
use crate::api::ApiState;
use crate::job::now_ms;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "conveyor_session";

/// Scripts only from conveyor itself, never inline; nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Shown on every page of a dashboard that may not change anything.
pub(super) const READ_ONLY_BANNER: &str = "Read-only: this dashboard listens on a non-loopback \
     address without api.token. Set api.token to log in and use its actions.";

/// The visitor of a page: their session, and what they may do.
#[derive(Debug, Clone)]
pub(super) struct Viewer {
    pub session: Session,
    pub csrf: String,
    pub writable: bool,
    /// Logged in with the token (shows a logout button).
    pub logged_in: bool,
}

impl Viewer {
    /// The frame of a page this viewer sees.
    pub(super) fn chrome(&self, title: &str, active: &'static str) -> Chrome {
        Chrome {
            title: title.to_string(),
            active,
            csrf: self.csrf.clone(),
            writable: self.writable,
            banner: (!self.writable).then(|| READ_ONLY_BANNER.to_string()),
            logged_in: self.logged_in,
            ..Chrome::default()
        }
    }

    /// Allows a state-changing request: the dashboard must be writable and
    /// `csrf` must be this session's token. Call before changing anything.
    pub(super) fn authorize(&self, state: &ApiState, csrf: &str) -> Result<(), UiError> {
        if !self.writable {
            return Err(UiError::Forbidden(
                "this dashboard is read-only (non-loopback address without api.token): nothing was changed".into(),
            ));
        }
        if !state.session_key().csrf_matches(&self.session, csrf) {
            return Err(UiError::Forbidden(
                "the form's CSRF token is missing or does not belong to your session: nothing was changed. Reload the page and try again.".into(),
            ));
        }
        Ok(())
    }
}

/// The form of a one-button action: only its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// A form that carries the session's CSRF token.
pub(super) trait CsrfField {
    /// The token the form sent (empty when it sent none).
    fn csrf(&self) -> &str;
}

impl CsrfField for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A state-changing request the dashboard allows: writable, and its form
/// (`F`) carries this session's CSRF token. Taking it as a handler's
/// argument authorizes the request before the handler runs, so an action
/// handler cannot forget the check.
pub(super) struct Authorized<F = CsrfForm> {
    pub state: Data<ApiState>,
    pub form: F,
}

impl<F> FromRequest for Authorized<F>
where
    F: DeserializeOwned + CsrfField + 'static,
{
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let form = Form::<F>::from_request(req, payload);
        let state = req.app_data::<Data<ApiState>>().cloned();
        let viewer = req.extensions().get::<Viewer>().cloned();
        Box::pin(async move {
            let (Some(state), Some(viewer)) = (state, viewer) else {
                return Err(UiError::Unavailable("the dashboard is not configured".into()).into());
            };
            let form = form.await?.into_inner();
            viewer.authorize(&state, form.csrf())?;
            Ok(Authorized { state, form })
        })
    }
}

/// Pages anyone may fetch: the login form and the static assets.
fn is_open(path: &str) -> bool {
    path == "/ui/login" || (path.starts_with("/ui/assets/") && !path.contains(".."))
}

/// A session cookie for `session`.
pub(super) fn session_cookie(session: &Session, ttl_ms: u64, secure: bool) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, session.value.clone())
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(CookieDuration::milliseconds(
            i64::try_from(ttl_ms).unwrap_or(i64::MAX / 2),
        ))
        .finish()
}

/// A cookie that removes the session.
pub(super) fn removal_cookie() -> Cookie<'static> {
    let mut cookie = Cookie::build(SESSION_COOKIE, "")
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    cookie.make_removal();
    cookie
}

/// Middleware of the `/ui` scope: finds or issues the session, puts the
/// [`Viewer`] in the request, and adds the security headers.
pub(super) async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req
        .app_data::<actix_web::web::Data<ApiState>>()
        .map(|d| d.get_ref().clone())
    else {
        return Err(UiError::Unavailable("the dashboard is not configured".into()).into());
    };
    let mut issued = None;
    if !is_open(req.path()) {
        match viewer_of(&req, &state) {
            Ok(viewer) => {
                req.extensions_mut().insert(viewer);
            }
            Err(error) => {
                let response = error.error_response();
                return Ok(with_headers(req.into_response(response)));
            }
        }
        issued = req.extensions_mut().remove::<Issued>();
    }
    let secure = req.connection_info().scheme() == "https";
    let mut response = next.call(req).await?.map_into_boxed_body();
    if let Some(Issued(session)) = issued {
        let cookie = session_cookie(&session, state.settings().api.session_ttl_ms, secure);
        response.response_mut().add_cookie(&cookie)?;
    }
    Ok(with_headers(response))
}

/// A session issued during this request (no-token dashboards).
#[derive(Clone)]
struct Issued(Session);

/// The viewer of a request; without a token, a new session when it has none.
fn viewer_of(req: &ServiceRequest, state: &ApiState) -> Result<Viewer, UiError> {
    let key = state.session_key();
    let now = now_ms();
    let verified = req
        .cookie(SESSION_COOKIE)
        .ok_or(SessionError::Missing)
        .and_then(|cookie| key.verify(cookie.value(), now));
    let token_set = !state.settings().api.token.is_empty();
    let session = match (verified, token_set) {
        (Ok(session), _) => session,
        (Err(error), true) => {
            let next = req
                .uri()
                .path_and_query()
                .map_or("/ui/", |pq| pq.as_str())
                .to_string();
            return Err(UiError::Login {
                next,
                expired: error == SessionError::Expired,
            });
        }
        (Err(_), false) => {
            let session = key.issue(now, state.settings().api.session_ttl_ms);
            req.extensions_mut().insert(Issued(session.clone()));
            session
        }
    };
    let loopback = req.app_config().local_addr().ip().is_loopback();
    Ok(Viewer {
        csrf: key.csrf(&session),
        session,
        writable: token_set || loopback,
        logged_in: token_set,
    })
}

fn with_headers(mut response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_login_form_and_assets_are_open() {
        assert!(is_open("/ui/login"));
        assert!(is_open("/ui/assets/app.js"));
        assert!(!is_open("/ui/"));
        assert!(!is_open("/ui/login/../dead"));
        assert!(!is_open("/ui/dead"));
        assert!(!is_open("/ui/assets/../dead"));
    }

    #[test]
    fn the_policy_allows_no_inline_script() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
    }

    #[test]
    fn session_cookies_are_http_only_and_strict() {
        let session = Session {
            value: "1.2.3".into(),
            expires_ms: 1,
        };
        let cookie = session_cookie(&session, 60_000, false).to_string();
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(cookie.contains("Path=/ui"), "{cookie}");
    }
}
