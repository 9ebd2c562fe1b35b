//! The operator's web dashboard, served under `/ui/` by the HTTP API.
//!
//! Server-rendered HTML (askama templates in `templates/ui/`, checked at
//! compile time and escaped automatically), a small script that refreshes
//! the overview and draws its chart with the vendored uPlot, and every
//! asset compiled into the binary: the dashboard works on an air-gapped
//! host and reads fine without JavaScript.
//!
//! | page | shows | actions |
//! |---|---|---|
//! | `/ui/` | totals, throughput (1 h / 24 h), queues (paused or not), workers alive | pause, resume a queue |
//! | `/ui/queues/{q}` | waiting, due again, scheduled, running jobs, paged | pause, resume |
//! | `/ui/jobs/{id}` | envelope, status, attempts, timings, output or error, worker | retry, delete, enqueue a copy, cancel (after a confirmation) |
//! | `/ui/dead` | dead jobs by queue, kind, error text, age | retry / delete one, or all that match |
//! | `/ui/dead-letters` | raw bytes (escaped), reason, time | delete, push again |
//! | `/ui/workers` | beacons and leases | |
//! | `/ui/schedules` | cron, time zone, next run, state, latest runs | run now, pause, resume |
//! | `/ui/limiters` | each limiter's selector and limits, slots in use, jobs held back | |
//!
//! The pages read and act through the same `redis_queue`, `store`,
//! [`crate::requeue`], [`crate::control`], [`crate::limiters::control`] and
//! [`crate::schedules::control`] functions as the JSON API and the CLI: this
//! module has no queries of its own. It must never change anything on a
//! request that the `guard` module did not authorize (session, CSRF token,
//! writable): every action handler takes the guard's `Authorized` extractor.

mod assets;
mod cancel;
mod dead;
mod error;
mod guard;
mod jobs;
mod letters;
mod limiters;
mod login;
mod overview;
mod queues;
mod schedules;
mod session;
mod view;
mod workers;

use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};

pub use error::UiError;
pub use guard::{CONTENT_SECURITY_POLICY, SESSION_COOKIE};
pub use session::{Session, SessionError, SessionKey};

/// Largest form the dashboard reads (bytes).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Whether `path` belongs to the dashboard (which checks its own session
/// instead of the API's bearer token).
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Adds the `/ui` scope to an API app.
pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/ui")
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                UiError::BadRequest(format!("bad query string: {error}")).into()
            }))
            .app_data(
                web::FormConfig::default()
                    .limit(MAX_FORM_BYTES)
                    .error_handler(|error, _| {
                        UiError::BadRequest(format!("bad form: {error}")).into()
                    }),
            )
            .app_data(
                web::PathConfig::default().error_handler(|error, _| {
                    UiError::BadRequest(format!("bad path: {error}")).into()
                }),
            )
            .wrap(from_fn(guard::guard))
            .route("", web::get().to(to_overview))
            .route("/", web::get().to(overview::page))
            .route("/overview.json", web::get().to(overview::json))
            .route("/history.json", web::get().to(overview::history))
            .route("/login", web::get().to(login::form))
            .route("/login", web::post().to(login::login))
            .route("/logout", web::post().to(login::logout))
            .route("/queues", web::get().to(queues::list))
            .route("/queues/{name}", web::get().to(queues::show))
            .route("/queues/{name}/{action}", web::post().to(queues::act))
            .route("/jobs", web::get().to(jobs::find))
            .route("/jobs/{id}", web::get().to(jobs::show))
            .route("/jobs/{id}/message", web::get().to(jobs::message))
            .route("/jobs/{id}/retry", web::post().to(jobs::retry))
            .route("/jobs/{id}/copy", web::post().to(jobs::copy))
            .route("/jobs/{id}/delete", web::post().to(jobs::delete))
            .route("/jobs/{id}/cancel", web::get().to(cancel::confirm))
            .route("/jobs/{id}/cancel", web::post().to(cancel::cancel))
            .route("/dead", web::get().to(dead::list))
            .route("/dead/confirm", web::get().to(dead::confirm))
            .route("/dead/bulk", web::post().to(dead::bulk))
            .route("/dead-letters", web::get().to(letters::list))
            .route("/dead-letters/{id}", web::get().to(letters::show))
            .route("/dead-letters/{id}/raw", web::get().to(letters::raw))
            .route("/dead-letters/{id}/delete", web::post().to(letters::delete))
            .route("/dead-letters/{id}/push", web::post().to(letters::push))
            .route("/workers", web::get().to(workers::page))
            .route("/schedules", web::get().to(schedules::list))
            .route("/schedules/{name}/{action}", web::post().to(schedules::act))
            .route("/limiters", web::get().to(limiters::list))
            .route("/assets/{name}", web::get().to(assets::serve))
            .default_service(web::to(no_page)),
    );
}

async fn to_overview() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

async fn no_page(req: HttpRequest) -> Result<HttpResponse, UiError> {
    let (text, _) = view::escaped_bytes(req.path().as_bytes(), 200);
    Err(UiError::NotFound(format!(
        "no page {} {}",
        req.method(),
        view::shorten(&text, 100)
    )))
}
