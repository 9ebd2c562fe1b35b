//! Dashboard sessions and CSRF tokens, as plain values (no I/O, the time is
//! an argument).
//!
//! A session is a signed cookie value `<expires unix ms>.<nonce>.<mac>`,
//! where the mac is HMAC-SHA256 over the first two parts. The key derives
//! from `api.token` when one is set, so every API process of a deployment
//! accepts the same sessions and changing the token ends them all; without a
//! token it is random per process. A form's CSRF token is the HMAC of its
//! session, so it is valid for that session only and needs no storage.
//! This module must never compare secrets in variable time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a session cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no session")]
    /// No cookie.
    Missing,
    #[error("the session cookie is malformed")]
    /// Not a session cookie.
    Malformed,
    #[error("the session cookie's signature does not match (the token changed, or it was forged)")]
    /// The signature does not match.
    Forged,
    #[error("the session expired")]
    /// Past its expiry.
    Expired,
}

/// A session that verified: its cookie value and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The cookie value.
    pub value: String,
    /// Expiry (unix ms).
    pub expires_ms: i64,
}

/// Signs and checks sessions and CSRF tokens.
#[derive(Clone)]
pub struct SessionKey {
    key: [u8; 32],
}

/// Never prints the key.
impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// The key of deployments with `api.token` set.
    pub fn from_token(token: &str) -> SessionKey {
        let mut hasher = Sha256::new();
        hasher.update(b"conveyor dashboard session key\0");
        hasher.update(token.as_bytes());
        SessionKey {
            key: hasher.finalize().into(),
        }
    }

    /// A key of this process only (no `api.token`).
    pub fn random() -> SessionKey {
        SessionKey {
            key: rand::random(),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        // HMAC accepts keys of any length: this cannot fail.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else {
            unreachable!("HMAC takes any key length")
        };
        for part in parts {
            mac.update(part);
            mac.update(b"\0");
        }
        hex(&mac.finalize().into_bytes())
    }

    /// A new session lasting `ttl_ms` from `now_ms`.
    pub fn issue(&self, now_ms: i64, ttl_ms: u64) -> Session {
        let expires_ms = now_ms.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        let nonce = hex(&rand::random::<[u8; 16]>());
        let signed = format!("{expires_ms}.{nonce}");
        let mac = self.mac(&[b"session", signed.as_bytes()]);
        Session {
            value: format!("{signed}.{mac}"),
            expires_ms,
        }
    }

    /// Checks a session cookie's value at `now_ms`.
    pub fn verify(&self, value: &str, now_ms: i64) -> Result<Session, SessionError> {
        let mut parts = value.splitn(3, '.');
        let (Some(expires), Some(nonce), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Malformed);
        };
        let expires_ms: i64 = expires.parse().map_err(|_| SessionError::Malformed)?;
        let signed = format!("{expires}.{nonce}");
        let expected = self.mac(&[b"session", signed.as_bytes()]);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return Err(SessionError::Forged);
        }
        if expires_ms <= now_ms {
            return Err(SessionError::Expired);
        }
        Ok(Session {
            value: value.to_string(),
            expires_ms,
        })
    }

    /// The CSRF token of `session`'s forms.
    pub fn csrf(&self, session: &Session) -> String {
        self.mac(&[b"csrf", session.value.as_bytes()])
    }

    /// Whether `presented` is `session`'s CSRF token.
    pub fn csrf_matches(&self, session: &Session, presented: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// Whether `presented` is the configured token, in constant time.
pub(super) fn token_matches(configured: &str, presented: &str) -> bool {
    !configured.is_empty() && bool::from(configured.as_bytes().ct_eq(presented.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn an_issued_session_verifies_until_it_expires() {
        let key = SessionKey::from_token("s3cret");
        let session = key.issue(NOW, 60_000);
        assert_eq!(
            key.verify(&session.value, NOW + 59_999),
            Ok(session.clone())
        );
        assert_eq!(
            key.verify(&session.value, NOW + 60_000),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn a_changed_token_or_a_tampered_cookie_is_refused() {
        let key = SessionKey::from_token("s3cret");
        let session = key.issue(NOW, 60_000);
        let other = SessionKey::from_token("other");
        assert_eq!(other.verify(&session.value, NOW), Err(SessionError::Forged));
        let later = session
            .value
            .replacen(&session.expires_ms.to_string(), "9999999999999", 1);
        assert_eq!(key.verify(&later, NOW), Err(SessionError::Forged));
        assert_eq!(key.verify("garbage", NOW), Err(SessionError::Malformed));
        assert_eq!(key.verify("x.y.z", NOW), Err(SessionError::Malformed));
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let key = SessionKey::random();
        let a = key.issue(NOW, 60_000);
        let b = key.issue(NOW, 60_000);
        assert!(key.csrf_matches(&a, &key.csrf(&a)));
        assert!(!key.csrf_matches(&a, &key.csrf(&b)));
        assert!(!key.csrf_matches(&a, ""));
    }

    #[test]
    fn an_empty_configured_token_matches_nothing() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret", "s3cre"));
        assert!(!token_matches("", ""));
    }
}
