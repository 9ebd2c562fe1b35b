//! The API's OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` annotations and the body schemas, served at
//! `GET /openapi.json` and kept in `docs/openapi.json` (a test fails when
//! the two differ).
//!
//! This module owns the document and what follows from it for requests no
//! route takes: a documented path with a method it does not have answers
//! 405 with the methods it has in `Allow`. It must never describe a route
//! the server does not serve (a test compares the two lists).

use std::sync::OnceLock;

use actix_web::http::Method;
use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::schemas::{
    CancelReceipt, CancelState, ErrorBody, FinishedError, Health, JobReceipt, JobState, JobStatus,
    JobSubmission, LimiterInForce, QueueDepth, QueueDepths, Readiness,
};
use super::{control, jobs, limiters, ops, schedules};
use crate::limiters::LimiterConfig;
use crate::schedules::control::ScheduleView;
use crate::store::RunRecord;

/// The description of the whole API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "conveyor",
        description = "Submit background jobs, follow and cancel them, steer queues, \
            schedules and limiters, and watch the worker. Every error is JSON: \
            {\"error\": \"...\", \"field\": \"<field or null>\"}.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        jobs::submit,
        jobs::submit_batch,
        jobs::status,
        control::cancel,
        ops::queues,
        control::pause,
        control::resume,
        schedules::list,
        schedules::trigger,
        schedules::pause,
        schedules::resume,
        limiters::list,
        limiters::put,
        ops::health,
        ops::ready,
        ops::metrics,
        openapi_json,
    ),
    components(schemas(
        JobSubmission,
        JobReceipt,
        JobStatus,
        JobState,
        CancelReceipt,
        CancelState,
        QueueDepth,
        QueueDepths,
        ScheduleView,
        RunRecord,
        LimiterConfig,
        LimiterInForce,
        Health,
        Readiness,
        ErrorBody,
        FinishedError,
    )),
    modifiers(&BearerToken, &LimiterNeedsALimit),
    // The token is needed only when `api.token` is set; `/health` never needs it.
    security((), ("bearer" = [])),
    tags(
        (name = "jobs", description = "Submitting jobs, reading their status, cancelling them"),
        (name = "queues", description = "Queue depths, pause and resume"),
        (name = "schedules", description = "Cron schedules: list, run now, pause, resume"),
        (name = "limiters", description = "Concurrency and rate limiters: list, change"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    ),
)]
pub(super) struct ApiDoc;

/// The document as pretty JSON with a trailing newline, built once.
pub fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serialising a document of plain maps and strings cannot fail; were
        // it to, the served text says so instead of taking the API down.
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\", \"field\": null}}"));
        text.push('\n');
        text
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 description of this API", content_type = "application/json", body = Object),
        (status = 401, description = "`api.token` is set and the request lacks it", body = ErrorBody),
    ),
)]
pub(super) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

/// `Authorization: Bearer <api.token>`, required on every route but
/// `/health` when `api.token` is set.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// A limiter definition sets at least one limit (a rule across fields that
/// the derived schema cannot say).
struct LimiterNeedsALimit;

impl Modify for LimiterNeedsALimit {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        if let Some(RefOr::T(definition)) = components.schemas.remove("LimiterConfig") {
            let combined = super::schemas::with_a_limit(definition);
            components
                .schemas
                .insert("LimiterConfig".to_string(), RefOr::T(combined));
        }
    }
}

/// The documented routes: (path template, methods), in document order.
fn routes() -> &'static [(String, Vec<Method>)] {
    static ROUTES: OnceLock<Vec<(String, Vec<Method>)>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let doc = ApiDoc::openapi();
        doc.paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    (&item.get, Method::GET),
                    (&item.put, Method::PUT),
                    (&item.post, Method::POST),
                    (&item.delete, Method::DELETE),
                    (&item.patch, Method::PATCH),
                ]
                .into_iter()
                .filter(|(operation, _)| operation.is_some())
                .map(|(_, method)| method)
                .collect();
                (path.clone(), methods)
            })
            .collect()
    })
}

/// Whether `path` matches `template` (`{name}` matches one non-empty segment).
fn matches(template: &str, path: &str) -> bool {
    let mut want = template.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// The methods a documented path has, when `path` is one (for a 405).
pub(super) fn allowed_methods(path: &str) -> Option<&'static [Method]> {
    routes()
        .iter()
        .find(|(template, _)| matches(template, path))
        .map(|(_, methods)| methods.as_slice())
}

/// The value of a 405's `Allow` header.
pub(super) fn allow_value(methods: &[Method]) -> String {
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is this document. Regenerate it with
    /// `CONVEYOR_WRITE_OPENAPI=1 cargo test --lib openapi`.
    #[test]
    fn the_checked_in_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        if std::env::var_os("CONVEYOR_WRITE_OPENAPI").is_some() {
            std::fs::write(path, document()).expect("docs/openapi.json written");
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == document(),
            "docs/openapi.json differs from the API's document: regenerate it with \
             CONVEYOR_WRITE_OPENAPI=1 cargo test --lib openapi, and commit it"
        );
    }

    /// Every documented operation is served, and a method a documented path
    /// does not list reaches no handler (unless another documented path takes
    /// it: `GET /jobs/batch` is the status of a job called `batch`). The
    /// probe runs the real route table without state: a handler that is
    /// reached fails for want of it, which is not the fallback's 418.
    #[actix_web::test]
    async fn the_document_and_the_route_table_agree() {
        use actix_web::{test, web, App};
        let doc: serde_json::Value = serde_json::from_str(document()).expect("JSON");
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        let app = test::init_service(
            App::new()
                .configure(super::super::routes)
                .default_service(web::to(HttpResponse::ImATeapot)),
        )
        .await;
        let every = [
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ];
        for (template, methods) in routes() {
            let path = template
                .replace("{id}", "x")
                .replace("{queue}", "x")
                .replace("{name}", "x");
            for method in &every {
                let request = test::TestRequest::default()
                    .method(method.clone())
                    .uri(&path)
                    .to_request();
                let reached = test::call_service(&app, request).await.status() != 418;
                let documented = methods.contains(method)
                    || routes().iter().any(|(other, others)| {
                        other != template && matches(other, &path) && others.contains(method)
                    });
                assert_eq!(reached, documented, "{method} {path}");
            }
        }
    }

    /// No route of the table is left out of the document (read from the
    /// table's source, so a new route cannot be forgotten).
    #[test]
    fn every_route_in_the_table_is_documented() {
        let source = include_str!("mod.rs");
        let table = source
            .split("fn routes(")
            .nth(1)
            .and_then(|rest| rest.split("\n}\n").next())
            .expect("fn routes in api/mod.rs");
        let served: Vec<&str> = table
            .split(".route(")
            .skip(1)
            .filter_map(|call| call.split('"').nth(1))
            .collect();
        assert!(served.len() >= 16, "{served:?}");
        for path in served {
            assert!(
                routes().iter().any(|(template, _)| template == path),
                "{path} is served but not in the document"
            );
        }
    }

    #[test]
    fn a_documented_path_lists_its_methods_and_others_are_not_documented() {
        let allowed = |path| allowed_methods(path).map(<[Method]>::to_vec);
        assert_eq!(
            allowed("/jobs/abc"),
            Some(vec![Method::GET, Method::DELETE])
        );
        assert_eq!(allowed("/jobs"), Some(vec![Method::POST]));
        assert_eq!(allowed("/jobs/batch"), Some(vec![Method::POST]));
        assert_eq!(allowed("/limiters/x"), Some(vec![Method::PUT]));
        assert_eq!(allowed("/queues/q/pause"), Some(vec![Method::POST]));
        assert_eq!(allowed("/jobs/"), None);
        assert_eq!(allowed("/jobs/a/b"), None);
        assert_eq!(allowed("/ui/"), None);
        assert_eq!(allowed("/nothing"), None);
        assert_eq!(allow_value(&[Method::GET, Method::DELETE]), "GET, DELETE");
    }
}
