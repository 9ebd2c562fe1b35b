//! What each fuzz target checks, as plain functions: the targets in
//! `fuzz_targets/` feed them libFuzzer's inputs, and the normal test run
//! (`tests/parsers.rs`) compiles them too and replays the seed corpus and
//! random inputs through them, so the checks never rot on a machine
//! without a nightly toolchain. Each panics on a finding.

use std::collections::HashMap;
use std::net::IpAddr;

use conveyor::config::{HttpKindSettings, Settings, MAX_DURATION_MS};
use conveyor::job::{parse_message, EnvelopeDefaults, RunAt, MAX_TIMEOUT_MS};
use conveyor::kinds::{classify, Guard, RequestSpec};

const DEFAULTS: EnvelopeDefaults = EnvelopeDefaults {
    max_attempts: 3,
    timeout_ms: 30_000,
    max_job_bytes: 1 << 20,
};

/// The envelope parser on any bytes: no panic; an accepted job has sane
/// fields, and a refused message says why (the reason stored beside it in
/// `dead_letters`).
pub fn envelope(raw: &[u8]) {
    match parse_message(raw, "fuzz-token", &DEFAULTS) {
        Ok(job) => {
            assert!(!job.id.is_empty() && !job.kind.is_empty());
            assert!((1..=MAX_TIMEOUT_MS).contains(&job.timeout_ms));
            assert!(job.max_attempts >= 1);
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// `run_at` as text and as the raw JSON of the field: no panic; an
/// accepted time is one chrono reads too, a refused one says what was
/// expected.
pub fn run_at(text: &str) {
    match RunAt::Rfc3339(text.to_string()).to_unix_ms() {
        Ok(_) => assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok()),
        Err(reason) => assert!(reason.contains("RFC 3339"), "{reason}"),
    }
    let raw = format!(r#"{{"kind":"noop","run_at":{text}}}"#);
    if let Err(error) = parse_message(raw.as_bytes(), "t", &DEFAULTS) {
        assert!(!error.to_string().is_empty());
    }
}

/// The configuration loader on any file text, with an empty environment:
/// no panic, and every refusal is a message.
pub fn config(text: &str) {
    match Settings::load_from_str(text, Some(HashMap::new())) {
        Ok(settings) => {
            assert!(settings.processor_slots() > 0);
            assert!(settings.recovery.lease_ms <= MAX_DURATION_MS);
            assert!(settings.recovery.heartbeat() < settings.lease());
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// The HTTP kinds' URL validation and address guard on any URL text: no
/// panic, and a URL the guard lets through never names a loopback,
/// private or metadata address as an IP literal, however it is spelled.
pub fn url_guard(text: &str) {
    let Ok(spec) = RequestSpec::new("http", text, None, &Default::default(), None) else {
        return;
    };
    let guard = Guard::new(&HttpKindSettings::default());
    if guard.check_url(&spec.url).is_ok() {
        let ip: Option<IpAddr> = match spec.url.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            _ => None,
        };
        assert!(ip.is_none_or(|ip| classify(ip).is_public()), "{text}");
    }
}
