//! The private-address guard: which addresses a request may reach
//! (`kinds.http.allow_private`, `kinds.http.allow_hosts`). IP literals are
//! checked before the first request and on every redirect hop, host names by
//! [`GuardedResolver`] on the addresses they resolve to.
//!
//! This module owns those checks and the [`Refusal`] they give. It must
//! never let a refused address reach a connection, never look a name up a
//! second time to check it (the addresses checked are the ones connected
//! to), and never call a refusal retryable: the same payload would be
//! refused again.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use super::address::{classify, AddressClass};
use crate::config::HttpKindSettings;

/// Why the guard stopped a request. Always permanent: the same payload would
/// be refused again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refused to connect to {ip}{}: it is {class}; set \
         kinds.http.allow_private = true or add {host} to kinds.http.allow_hosts \
         to allow it",
        for_host(.host, .ip)
    )]
    /// The address is not public and not allowed by the settings.
    Address {
        /// The host name of the URL (or the address itself).
        host: String,
        /// The address refused.
        ip: IpAddr,
        /// What kind of address it is.
        class: AddressClass,
    },
    /// A redirect hop the guard refused (the first URL was fine).
    #[error("redirected to {to}: {refusal}")]
    Redirect {
        /// Where the redirect pointed.
        to: String,
        /// Why that was refused.
        refusal: Box<Refusal>,
    },
    /// Not http or https.
    #[error("unsupported URL scheme {0:?}: only http and https")]
    Scheme(String),
    /// The URL names no host.
    #[error("URL has no host")]
    NoHost,
    /// Too many redirects.
    #[error("more than kinds.http.max_redirects ({0}) redirects")]
    TooManyRedirects(usize),
}

/// ` for host <name>`, unless the host is the address itself.
fn for_host(host: &str, ip: &IpAddr) -> String {
    if host.parse::<IpAddr>().ok() == Some(*ip) {
        String::new()
    } else {
        format!(" for host {host}")
    }
}

/// Decides which addresses may be reached.
#[derive(Debug)]
pub struct Guard {
    allow_private: bool,
    /// Lower case, without brackets or a trailing dot.
    allow_hosts: HashSet<String>,
}

impl Guard {
    /// A guard with the settings' `allow_private` and `allow_hosts`.
    pub fn new(settings: &HttpKindSettings) -> Guard {
        Guard {
            allow_private: settings.allow_private,
            allow_hosts: settings
                .allow_hosts
                .iter()
                .map(|h| normalize_host(h))
                .collect(),
        }
    }

    /// Whether `host` may reach any address (private ones included).
    pub fn host_allowed(&self, host: &str) -> bool {
        self.allow_private || self.allow_hosts.contains(&normalize_host(host))
    }

    /// Whether `host` may connect to `ip`.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let class = classify(ip);
        if class.is_public() || self.host_allowed(host) {
            Ok(())
        } else {
            Err(Refusal::Address {
                host: host.to_string(),
                ip,
                class,
            })
        }
    }

    /// Checks a URL before it is requested (first request or redirect hop):
    /// its scheme, and its host when that is an IP literal, which no
    /// resolver sees. Host names are checked after resolution instead.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme(url.scheme().to_string()));
        }
        match url.host() {
            None => Err(Refusal::NoHost),
            Some(url::Host::Ipv4(ip)) => self.check_ip(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(&ip.to_string(), IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }
}

fn normalize_host(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    match bare.parse::<IpAddr>() {
        // One spelling per address: "::0:1" and "::1" are the same host.
        Ok(ip) => ip.to_string(),
        Err(_) => bare.to_ascii_lowercase(),
    }
}

/// Resolves host names with the system resolver and keeps only the
/// addresses the guard allows; fails with a [`Refusal`] when none is left.
/// Checking the addresses that will actually be connected to (not a second
/// lookup) also defeats DNS rebinding.
pub(super) struct GuardedResolver {
    pub(super) guard: Arc<Guard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check_ip(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(refused) => {
                        refusal.get_or_insert(refused);
                        false
                    }
                })
                .collect();
            match refusal {
                Some(refused) if allowed.is_empty() => Err(refused.into()),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// The refusal somewhere in `error`'s chain of causes: the resolver and
/// the redirect policy hand theirs to reqwest, which wraps them.
pub(super) fn find_refusal<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a Refusal> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refusal) = error.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allow_private: bool, allow_hosts: &[&str]) -> HttpKindSettings {
        HttpKindSettings {
            allow_private,
            allow_hosts: allow_hosts.iter().map(|h| h.to_string()).collect(),
            ..HttpKindSettings::default()
        }
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a URL")
    }

    #[test]
    fn guard_refuses_private_ip_literals_by_default() {
        let guard = Guard::new(&settings(false, &[]));
        for target in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://[::ffff:7f00:1]/",
            // WHATWG host parsing turns these spellings into 127.0.0.1.
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            let refused = guard.check_url(&url(target)).expect_err(target);
            let text = refused.to_string();
            assert!(text.contains("kinds.http.allow_private"), "{text}");
            assert!(text.contains("kinds.http.allow_hosts"), "{text}");
        }
        assert!(guard.check_url(&url("https://93.184.216.34/")).is_ok());
        // Names are checked after resolution, not here.
        assert!(guard.check_url(&url("http://localhost/")).is_ok());
    }

    #[test]
    fn refusal_names_the_address_and_its_class() {
        let guard = Guard::new(&settings(false, &[]));
        let refused = guard
            .check_ip("metadata.internal", "169.254.169.254".parse().expect("ip"))
            .expect_err("metadata");
        assert_eq!(
            refused.to_string(),
            "refused to connect to 169.254.169.254 for host metadata.internal: it is a \
             cloud metadata address; set kinds.http.allow_private = true or add \
             metadata.internal to kinds.http.allow_hosts to allow it"
        );
    }

    #[test]
    fn guard_rejects_other_schemes() {
        let guard = Guard::new(&settings(true, &[]));
        assert_eq!(
            guard.check_url(&url("file:///etc/passwd")),
            Err(Refusal::Scheme("file".into()))
        );
    }

    #[test]
    fn allow_private_and_allow_hosts_open_the_guard() {
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        let open = Guard::new(&settings(true, &[]));
        assert!(open.check_ip("anything", loopback).is_ok());
        assert!(open.check_url(&url("http://127.0.0.1/")).is_ok());

        let listed = Guard::new(&settings(false, &["LocalHost.", "[::1]", "10.0.0.5"]));
        assert!(listed.check_ip("localhost", loopback).is_ok());
        assert!(listed.check_ip("LOCALHOST", loopback).is_ok());
        assert!(listed.check_url(&url("http://[::1]:99/")).is_ok());
        assert!(listed.check_url(&url("http://10.0.0.5/")).is_ok());
        // Listing a name does not allow its address spelled as a literal.
        assert!(listed.check_url(&url("http://127.0.0.1/")).is_err());
        assert!(listed.check_ip("other.example", loopback).is_err());
    }

    #[tokio::test]
    async fn resolver_refuses_names_of_private_addresses() {
        let guard = Arc::new(Guard::new(&settings(false, &[])));
        let resolver = GuardedResolver {
            guard: guard.clone(),
        };
        let name: Name = "localhost".parse().expect("name");
        let error = match resolver.resolve(name).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(error) => error,
        };
        let refusal = find_refusal(error.as_ref()).expect("a refusal");
        assert!(matches!(refusal, Refusal::Address { host, .. } if host == "localhost"));

        let listed = GuardedResolver {
            guard: Arc::new(Guard::new(&settings(false, &["localhost"]))),
        };
        let name: Name = "localhost".parse().expect("name");
        let addrs: Vec<SocketAddr> = listed.resolve(name).await.expect("allowed").collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
