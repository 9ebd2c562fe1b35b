//! Property tests of everything that parses outside input: the job envelope
//! (as producers push it), `run_at`, the configuration loader (file and
//! environment) and the HTTP kinds' URL and address guard. Whatever the
//! input, they must not panic or hang, and their errors must say what is
//! wrong and where. The same entry points are fuzzed by the targets in
//! `fuzz/`, whose checks are compiled here too and run on the seed corpus
//! and on random inputs (see docs/reliability.md, "How we test").

// Public there (the fuzz targets are another crate), private here.
#[allow(unreachable_pub)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{FixedOffset, TimeZone};
use conveyor::config::{HttpKindSettings, Settings, MAX_DURATION_MS};
use conveyor::job::{parse_message, EnvelopeDefaults, Malformed, RunAt, MAX_TIMEOUT_MS};
use conveyor::kinds::{classify, Guard, RequestSpec};
use proptest::prelude::*;
use serde_json::{json, Value};

const DEFAULTS: EnvelopeDefaults = EnvelopeDefaults {
    max_attempts: 3,
    timeout_ms: 30_000,
    max_job_bytes: 64 * 1024,
};

const ENVELOPE_FIELDS: [&str; 7] = [
    "id",
    "kind",
    "payload",
    "max_attempts",
    "timeout_ms",
    "run_at",
    "enqueued_at",
];

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object whose keys are mostly envelope fields, with any values.
fn envelope_shaped() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => prop::sample::select(ENVELOPE_FIELDS.to_vec()).prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
    ];
    prop::collection::btree_map(key, any_json(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn valid_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

/// The fuzz targets' checks on their seed corpus (`fuzz/corpus/<target>/`).
#[test]
fn fuzz_checks_hold_on_the_seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    type Check = fn(&[u8]);
    let checks: [(&str, Check); 4] = [
        ("envelope", fuzz_checks::envelope),
        ("run_at", |b| {
            fuzz_checks::run_at(&String::from_utf8_lossy(b))
        }),
        ("config", |b| {
            fuzz_checks::config(&String::from_utf8_lossy(b))
        }),
        ("url_guard", |b| {
            fuzz_checks::url_guard(&String::from_utf8_lossy(b))
        }),
    ];
    for (target, check) in checks {
        let entries = std::fs::read_dir(root.join(target)).expect("a seed corpus");
        let mut seeds = 0;
        for entry in entries {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("seed");
            check(&bytes);
            seeds += 1;
        }
        assert!(seeds > 0, "{target} has seeds");
    }
}

proptest! {
    #[test]
    fn envelope_parser_survives_any_bytes(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_checks::envelope(&raw);
    }

    #[test]
    fn fuzz_checks_hold_on_random_text(text in "[ -~]{0,80}") {
        fuzz_checks::run_at(&text);
        fuzz_checks::config(&text);
        fuzz_checks::url_guard(&text);
    }

    #[test]
    fn envelope_errors_name_a_real_field(value in envelope_shaped()) {
        let raw = serde_json::to_vec(&value).expect("serialisable");
        match parse_message(&raw, "tok-1", &DEFAULTS) {
            Ok(job) => {
                let given = value.get("id").and_then(Value::as_str);
                prop_assert!(given.is_none_or(|id| id == job.id));
                prop_assert!(job.timeout_ms >= 1 && job.timeout_ms <= MAX_TIMEOUT_MS);
            }
            Err(Malformed::FieldType { field, reason }) => {
                prop_assert!(ENVELOPE_FIELDS.contains(&field.as_str()), "{field}: {reason}");
            }
            Err(Malformed::BadField { field, .. }) => {
                prop_assert!(ENVELOPE_FIELDS.contains(&field), "{field}");
            }
            Err(Malformed::Invalid(reason)) => {
                // Only a missing kind leaves no single field to blame.
                prop_assert!(value.get("kind").is_none(), "{value}: {reason}");
                prop_assert!(reason.contains("kind"), "{reason}");
            }
            Err(other @ Malformed::TooLarge { .. }) => prop_assert!(false, "{other}"),
        }
    }

    #[test]
    fn valid_envelopes_parse_to_what_was_sent(
        id in valid_id(),
        kind in "[a-z_]{1,64}",
        payload in any_json(),
        max_attempts in 1u32..=1000,
        timeout_ms in 1u64..=MAX_TIMEOUT_MS,
        run_at in any::<i64>(),
    ) {
        let raw = json!({
            "id": id, "kind": kind, "payload": payload,
            "max_attempts": max_attempts, "timeout_ms": timeout_ms, "run_at": run_at,
        });
        let job = parse_message(raw.to_string().as_bytes(), "tok", &DEFAULTS)
            .map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
        prop_assert_eq!(job.id, id);
        prop_assert_eq!(job.kind, kind);
        prop_assert_eq!(job.payload, payload);
        prop_assert_eq!(job.max_attempts, max_attempts);
        prop_assert_eq!(job.timeout_ms, timeout_ms);
        prop_assert_eq!(job.run_at_ms, Some(run_at));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(depth in 1usize..20_000, object in any::<bool>()) {
        let (open, close) = if object { (r#"{"a":"#, "}") } else { ("[", "]") };
        let raw = format!(
            r#"{{"kind":"noop","payload":{}1{}}}"#,
            open.repeat(depth),
            close.repeat(depth)
        );
        let limits = EnvelopeDefaults { max_job_bytes: 1 << 20, ..DEFAULTS };
        let parsed = parse_message(raw.as_bytes(), "t", &limits);
        // serde_json refuses nesting deeper than 128 levels.
        prop_assert_eq!(parsed.is_ok(), depth < 127, "depth {}", depth);
    }

    #[test]
    fn run_at_of_any_text_is_a_time_or_says_why(text in ".{0,40}") {
        match RunAt::Rfc3339(text.clone()).to_unix_ms() {
            Ok(_) => prop_assert!(chrono::DateTime::parse_from_rfc3339(&text).is_ok()),
            Err(reason) => prop_assert!(reason.contains("RFC 3339"), "{reason}"),
        }
    }

    #[test]
    fn run_at_round_trips_through_rfc3339(
        ms in -62_135_596_800_000i64..=253_402_300_799_999,
        offset_minutes in -1439i32..=1439,
        fractional in any::<bool>(),
    ) {
        let zone = FixedOffset::east_opt(offset_minutes * 60).expect("offset in range");
        let time = zone.timestamp_millis_opt(ms).single().expect("a time in range");
        let text = if fractional {
            time.to_rfc3339_opts(chrono::SecondsFormat::Millis, offset_minutes == 0)
        } else {
            time.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        };
        let expected = if fractional { ms } else { ms.div_euclid(1000) * 1000 };
        prop_assert_eq!(RunAt::Rfc3339(text).to_unix_ms(), Ok(expected));
    }

    #[test]
    fn run_at_of_another_type_names_the_field(value in any_json()) {
        prop_assume!(!value.is_string() && !value.is_i64() && !value.is_null());
        let raw = json!({"kind": "noop", "run_at": value}).to_string();
        match parse_message(raw.as_bytes(), "t", &DEFAULTS) {
            Err(Malformed::FieldType { field, reason }) => {
                prop_assert_eq!(field, "run_at");
                prop_assert!(reason.contains("RFC 3339"), "{reason}");
            }
            other => prop_assert!(false, "{raw}: {other:?}"),
        }
    }
}

/// Every scalar key of `config/default.toml`, as `section.key`.
const CONFIG_KEYS: [&str; 37] = [
    "redis.url",
    "redis.key_prefix",
    "redis.response_timeout_ms",
    "mysql.url",
    "mysql.pool_max",
    "queues.names",
    "queues.claim_batch",
    "queues.max_in_flight",
    "queues.idle_wait_ms",
    "processors.count",
    "processors.concurrency",
    "db.batch_size",
    "db.flush_ms",
    "db.max_concurrent_flushes",
    "db.eager_flushes",
    "db.retry_base_ms",
    "db.retry_max_ms",
    "retry.max_attempts",
    "retry.base_ms",
    "retry.max_ms",
    "jobs.default_timeout_ms",
    "limits.max_job_bytes",
    "scheduler.tick_ms",
    "recovery.lease_ms",
    "recovery.heartbeat_ms",
    "shutdown.timeout_ms",
    "metrics.log_interval_ms",
    "metrics.mailbox_high_water",
    "api.bind",
    "api.token",
    "api.max_body_bytes",
    "kinds.http.max_body_bytes",
    "kinds.http.connect_timeout_ms",
    "kinds.http.max_redirects",
    "kinds.http.retry_after_default_ms",
    "kinds.http.retry_after_max_ms",
    "kinds.http.allow_hosts",
];

fn env_name(key: &str) -> String {
    format!("CONVEYOR__{}", key.replace('.', "__").to_uppercase())
}

fn config_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_string()),
        "[ -~]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn config_errors_name_the_key(
        key in prop::sample::select(CONFIG_KEYS.to_vec()),
        value in config_value(),
    ) {
        let env = HashMap::from([(env_name(key), value.clone())]);
        match Settings::load_with_env(None, Some(env)) {
            Err(error) => {
                let text = error.to_string();
                prop_assert!(text.contains(key), "{key}={value:?}: {text}");
            }
            Ok(_) if key.ends_with("_ms") => {
                // Durations the clock cannot add to now are refused.
                let ms: u64 = value.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert!(ms <= MAX_DURATION_MS, "{key}={ms}");
            }
            Ok(_) => {}
        }
    }

    #[test]
    fn config_file_of_any_text_loads_or_says_why(text in "[ -~\n]{0,200}") {
        if let Err(error) = Settings::load_from_str(&text, Some(HashMap::new())) {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn config_file_values_of_any_type_name_the_key(
        key in prop::sample::select(CONFIG_KEYS.to_vec()),
        value in prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            "[a-z ]{0,10}".prop_map(|s| format!("{s:?}")),
            Just("[1, 2]".to_string()),
            Just("1.5".to_string()),
        ],
    ) {
        let (section, name) = key.rsplit_once('.').expect("dotted key");
        let text = format!("[{section}]\n{name} = {value}\n");
        if let Err(error) = Settings::load_from_str(&text, Some(HashMap::new())) {
            let message = error.to_string();
            prop_assert!(message.contains(key), "{text}: {message}");
        }
    }
}

fn default_guard() -> Guard {
    Guard::new(&HttpKindSettings::default())
}

/// `http://<ip>/` checked the way a job's URL is, before anything is sent.
fn guard_allows(guard: &Guard, host: &str) -> Result<bool, String> {
    let url = format!("http://{host}/");
    let spec = RequestSpec::new("http", &url, None, &Default::default(), None)
        .map_err(|e| e.message.clone())?;
    Ok(guard.check_url(&spec.url).is_ok())
}

proptest! {
    #[test]
    fn guard_lets_through_exactly_the_public_ipv4_addresses(ip in any::<Ipv4Addr>()) {
        let allowed = guard_allows(&default_guard(), &ip.to_string())
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(allowed, classify(IpAddr::V4(ip)).is_public(), "{}", ip);
    }

    #[test]
    fn guard_lets_through_exactly_the_public_ipv6_addresses(ip in any::<Ipv6Addr>()) {
        let allowed = guard_allows(&default_guard(), &format!("[{ip}]"))
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(allowed, classify(IpAddr::V6(ip)).is_public(), "{}", ip);
    }

    #[test]
    fn guard_sees_through_other_spellings_of_private_addresses(
        base in prop::sample::select(vec![0x7f00_0000u32, 0x0a00_0000, 0xa9fe_0000]),
        low in any::<u16>(),
        spelling in 0usize..4,
    ) {
        let ip = base | u32::from(low);
        let [a, b, c, d] = ip.to_be_bytes();
        let host = match spelling {
            0 => ip.to_string(),
            1 => format!("{ip:#x}"),
            2 => format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
            _ => format!("{a}.{}", (u32::from(b) << 16) | (u32::from(c) << 8) | u32::from(d)),
        };
        prop_assert_eq!(guard_allows(&default_guard(), &host), Ok(false), "{}", host);
    }

    #[test]
    fn guard_never_passes_a_private_literal_in_any_url(text in "https?://[ -~]{0,40}") {
        let spec = match RequestSpec::new("http", &text, None, &Default::default(), None) {
            Ok(spec) => spec,
            Err(error) => {
                prop_assert!(error.message.starts_with("invalid http payload"));
                return Ok(());
            }
        };
        if default_guard().check_url(&spec.url).is_ok() {
            let ip = match spec.url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            prop_assert!(ip.is_none_or(|ip| classify(ip).is_public()), "{}", text);
        }
    }
}

#[test]
fn a_huge_timeout_is_refused_instead_of_overflowing_the_clock() {
    let raw = format!(r#"{{"kind":"noop","timeout_ms":{}}}"#, u64::MAX);
    let error = parse_message(raw.as_bytes(), "t", &DEFAULTS).expect_err("refused");
    assert!(error.to_string().contains("timeout_ms"), "{error}");
}
