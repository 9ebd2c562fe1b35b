//! The dashboard's static files, compiled into the binary: its stylesheet
//! and script, and the vendored uPlot chart library (see
//! `assets/vendor/uplot/VERSION`). Nothing is ever fetched from elsewhere.
//!
//! This module owns the list of assets; it must never serve a file by a
//! path taken from the request.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::error::UiError;

/// (name, content type, bytes) of every asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/favicon.svg"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/vendor/uplot/uPlot.min.css"),
    ),
];

/// The asset called `name`, if there is one.
pub(super) fn find(name: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(asset, _, _)| *asset == name)
        .map(|(_, kind, bytes)| (*kind, *bytes))
}

pub(super) async fn serve(name: web::Path<String>) -> Result<HttpResponse, UiError> {
    let Some((kind, bytes)) = find(&name) else {
        return Err(UiError::NotFound(format!("no asset {:?}", name.as_str())));
    };
    Ok(HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_by_name_only() {
        assert!(find("app.js").is_some());
        assert!(find("uPlot.iife.min.js").is_some());
        assert!(find("../Cargo.toml").is_none());
        assert!(ASSETS.iter().all(|(_, _, bytes)| !bytes.is_empty()));
    }
}
