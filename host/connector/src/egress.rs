//! Where a confined tenant's connectors may connect: an allow-list of `host:port`
//! addresses, checked with the same parser the client that connects uses.
//!
//! A URL is parsed once, by the `url` crate that `reqwest` sends with, and the parsed
//! URL is what the http sink sends to: there is no second reading of the text that could
//! disagree with the check (userinfo, `\`, `?`, `#`, percent-encoding and numeric host
//! tricks all end up in the one parsed host). URLs with userinfo are refused, only
//! `http` and `https` are taken, and the port is the URL's or the scheme's default. The
//! http sink follows no redirects and uses no proxy, so the checked host is the only one
//! it talks to. Kafka brokers are checked as listed in `bootstrap.servers`, and again as
//! the brokers the cluster advertises in its metadata, before a client produces or
//! consumes anything.

use fungi_common::{FungiError, Result};
use reqwest::Url;

/// The `host:port` addresses a tenant's connectors may reach. Hosts compare without
/// case; IPv6 addresses are written in brackets (`[::1]:9092`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    allowed: Vec<String>,
}

impl Egress {
    /// An allow-list of `host:port` entries.
    pub fn new(allowed: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Egress {
            allowed: allowed
                .into_iter()
                .map(|a| a.into().trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// The allowed addresses.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Refuses `address` (`host:port`) unless it is allowed; `what` names it in the
    /// message (`table 'out': broker`).
    pub fn check_address(&self, what: &str, address: &str) -> Result<()> {
        let normalized = address.trim().to_ascii_lowercase();
        if self.allowed.contains(&normalized) {
            return Ok(());
        }
        Err(FungiError::Config(format!(
            "{what} '{address}' is not among the tenant's allowed egress hosts ({})",
            if self.allowed.is_empty() {
                "none".to_string()
            } else {
                self.allowed.join(", ")
            }
        )))
    }

    /// Refuses Kafka brokers (`host:port`, comma-separated) outside the allow-list.
    pub fn check_brokers(&self, what: &str, servers: &str) -> Result<()> {
        let mut any = false;
        for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            any = true;
            self.check_address(what, server)?;
        }
        if !any {
            return Err(FungiError::Config(format!("{what}: no broker is named")));
        }
        Ok(())
    }

    /// Parses `url` as the http client will, refuses what it must not send to, and
    /// returns the parsed URL to send to.
    pub fn check_url(&self, what: &str, url: &str) -> Result<Url> {
        let parsed = parse_http_url(what, url)?;
        self.check_address(what, &address_of(&parsed))?;
        Ok(parsed)
    }
}

/// Parses an http(s) URL the way the http sink sends to it: with the `url` crate,
/// without userinfo, with a host.
pub fn parse_http_url(what: &str, url: &str) -> Result<Url> {
    let bad = |why: &str| FungiError::Config(format!("{what} '{url}': {why}"));
    let parsed = Url::parse(url.trim()).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("not an http:// or https:// URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "a URL with a user name or password (user@host) is refused; send credentials \
             some other way",
        ));
    }
    if parsed.host().is_none() {
        return Err(bad("the URL has no host"));
    }
    Ok(parsed)
}

/// `host:port` of a parsed http(s) URL as the client connects to it (the port is the
/// scheme's default when the URL has none).
pub fn address_of(url: &Url) -> String {
    // `host_str` writes IPv6 addresses in brackets.
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(0);
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress() -> Egress {
        Egress::new(["hooks.example:8080", "127.0.0.1:9000", "[::1]:9092"])
    }

    #[test]
    fn urls_are_checked_as_the_client_reads_them() {
        let e = egress();
        let url = e
            .check_url("url", "http://HOOKS.example:8080/a?b#c")
            .unwrap();
        assert_eq!(address_of(&url), "hooks.example:8080");
        assert!(e.check_url("url", "http://127.0.0.1:9000/x").is_ok());
        for bad in [
            // userinfo that an ad-hoc split would read as the host
            "http://hooks.example:8080@evil.example:8080/",
            "http://user:pw@hooks.example:8080/",
            // the host is what comes before '\', '?', '#' for the client
            "http://evil.example:8080\\@hooks.example:8080/",
            "http://evil.example:8080?@hooks.example:8080/",
            "http://evil.example:8080#@hooks.example:8080/",
            // the default port is not an allowed one
            "http://hooks.example/",
            // numeric forms of another address
            "http://0x7f.1:8080/",
            "http://[::ffff:127.0.0.1]:9000/",
            "file:///etc/passwd",
            "ftp://hooks.example:8080/",
            "http:///nohost",
            "not a url",
        ] {
            assert!(e.check_url("url", bad).is_err(), "{bad} was accepted");
        }
        // Numeric forms of an allowed address are that address, as the client reads it.
        assert!(e.check_url("url", "http://2130706433:9000/").is_ok());
        assert_eq!(
            address_of(&parse_http_url("u", "http://2130706433:9000/").unwrap()),
            "127.0.0.1:9000"
        );
    }

    #[test]
    fn brokers_are_checked_one_by_one() {
        let e = egress();
        assert!(e.check_brokers("b", "127.0.0.1:9000, [::1]:9092").is_ok());
        assert!(e.check_brokers("b", "127.0.0.1:9000,evil:9092").is_err());
        assert!(e.check_brokers("b", " , ").is_err());
        assert!(Egress::default().check_address("b", "a:1").is_err());
    }
}
