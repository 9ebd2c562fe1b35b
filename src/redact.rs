//! Keeping secrets out of logs and errors: passwords in URLs, and URLs
//! quoted in free text.
//!
//! This module owns the masking. It must never depend on another module of
//! the crate, so every module that logs a URL can use it.

/// The URL with any password replaced by `***`, safe for logs and errors.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // set_password fails only for URLs that cannot have one, and this one has one.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => redact_secrets_in(raw),
    }
}

/// Free text (an error message) with any `user:password@` of a URL in it masked.
pub fn redact_text(text: &str) -> String {
    redact_secrets_in(text)
}

/// Masks `user:password@` in free text that may quote a URL.
pub(crate) fn redact_secrets_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_inclusive(char::is_whitespace) {
        match (word.find("://"), word.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &word[scheme_end + 3..at];
                match credentials.find(':') {
                    Some(colon) => {
                        out.push_str(&word[..scheme_end + 3 + colon + 1]);
                        out.push_str("***");
                        out.push_str(&word[at..]);
                    }
                    None => out.push_str(word),
                }
            }
            _ => out.push_str(word),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("mysql://u:secret@127.0.0.1:3306/db"),
            "mysql://u:***@127.0.0.1:3306/db"
        );
        assert!(!redact_secrets_in("failed for redis://:pw@h:1/0 now").contains("pw"));
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
