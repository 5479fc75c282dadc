//! Who may talk to the dashboard. Any web page the user opens can send
//! requests to 127.0.0.1, so every request must prove it came from the
//! page devcluster opened:
//!
//! - the Host header names the loopback (`127.0.0.1` or `localhost`), so a
//!   DNS-rebound name pointing at 127.0.0.1 is refused;
//! - the per-run secret comes in the URL devcluster opens (`?k=`), which
//!   is answered with an HttpOnly, SameSite=Strict cookie and a redirect
//!   that drops it from the address bar; later requests carry the cookie;
//! - actions are POSTs carrying a second per-run value (the CSRF token, in
//!   the page) in a header, which a cross-site form cannot set.
//!
//! Checked before any routing, so a refused request changes nothing.

use http::{HeaderMap, Method, StatusCode};

/// The per-run values. Both are 128-bit random, hex.
#[derive(Clone)]
pub struct Secrets {
    pub secret: String,
    pub csrf: String,
    pub port: u16,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// 128 random bits as hex.
pub fn random_hex() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(std::io::Error::other)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Secrets {
    pub fn generate(port: u16) -> std::io::Result<Self> {
        Ok(Self {
            secret: random_hex()?,
            csrf: random_hex()?,
            port,
        })
    }

    pub fn cookie_name(&self) -> String {
        // Cookies are not scoped by port: two dashboards on one host must
        // not overwrite each other's.
        format!("devcluster-dashboard-{}", self.port)
    }
}

/// What the guard lets through.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Known by its cookie.
    Cookie,
    /// Known by the secret in the URL: set the cookie, redirect to `to`.
    SetCookie { to: String },
}

/// Why a request was refused: the status and the one-line body.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
}

fn eq_ct(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn host_ok(headers: &HeaderMap, port: u16) -> bool {
    let Some(host) = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    ["127.0.0.1", "localhost"]
        .iter()
        .any(|name| host == *name || host == format!("{name}:{port}"))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `k` parameter of a query, and the query without it.
fn split_secret(query: &str) -> (Option<&str>, String) {
    let mut secret = None;
    let mut rest = Vec::new();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.strip_prefix("k=") {
            Some(v) => secret = Some(v),
            None => rest.push(kv),
        }
    }
    (secret, rest.join("&"))
}

/// Whether an action route (anything under `/api/` but status reads).
pub fn is_action(path: &str) -> bool {
    path.starts_with("/api/") && path != "/api/status"
}

/// Checks one request. `path` and `query` are the URI's.
pub fn check(
    s: &Secrets,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Admit, Refusal> {
    if !host_ok(headers, s.port) {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: "forbidden: the Host header must be 127.0.0.1 or localhost",
        });
    }
    let (in_url, rest) = split_secret(query.unwrap_or(""));
    let admit = if in_url.is_some_and(|k| eq_ct(k.as_bytes(), s.secret.as_bytes())) {
        let to = if rest.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{rest}")
        };
        Admit::SetCookie { to }
    } else if cookie_value(headers, &s.cookie_name())
        .is_some_and(|c| eq_ct(c.as_bytes(), s.secret.as_bytes()))
    {
        Admit::Cookie
    } else {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: "forbidden: open the URL `devcluster dashboard` printed (it carries this run's secret)",
        });
    };
    if is_action(path) {
        if method != Method::POST {
            return Err(Refusal {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: "method not allowed: actions are POST only",
            });
        }
        let csrf = headers
            .get("x-devcluster-csrf")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !eq_ct(csrf, s.csrf.as_bytes()) {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "forbidden: missing or wrong CSRF token",
            });
        }
        // A cross-site POST names its origin; ours is the loopback.
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let ok = [
                format!("http://127.0.0.1:{}", s.port),
                format!("http://localhost:{}", s.port),
            ]
            .iter()
            .any(|o| origin.as_bytes() == o.as_bytes());
            if !ok {
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    message: "forbidden: cross-origin request",
                });
            }
        }
    }
    Ok(admit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets {
            secret: "s3cret".into(),
            csrf: "csrf1".into(),
            port: 8080,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_secret_in_the_url_sets_the_cookie_and_is_dropped() {
        let h = headers(&[("host", "127.0.0.1:8080")]);
        let r = check(&secrets(), &Method::GET, "/", Some("k=s3cret&x=1"), &h);
        assert_eq!(r, Ok(Admit::SetCookie { to: "/?x=1".into() }));
        let h = headers(&[
            ("host", "localhost:8080"),
            ("cookie", "a=b; devcluster-dashboard-8080=s3cret"),
        ]);
        assert_eq!(
            check(&secrets(), &Method::GET, "/", None, &h),
            Ok(Admit::Cookie)
        );
    }

    #[test]
    fn refusals() {
        let s = secrets();
        let none = headers(&[("host", "127.0.0.1:8080")]);
        let r = check(&s, &Method::GET, "/", None, &none).unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let wrong = check(&s, &Method::GET, "/", Some("k=s3creT"), &none).unwrap_err();
        assert_eq!(wrong.status, StatusCode::FORBIDDEN);
        // Another port's cookie is not ours.
        let other = headers(&[
            ("host", "127.0.0.1:8080"),
            ("cookie", "devcluster-dashboard-9=s3cret"),
        ]);
        assert!(check(&s, &Method::GET, "/", None, &other).is_err());
        // DNS rebinding: the secret is right, the name is not ours.
        for host in ["evil.example:8080", "127.0.0.1.evil:8080", "127.0.0.1:9999"] {
            let h = headers(&[("host", host)]);
            let r = check(&s, &Method::GET, "/", Some("k=s3cret"), &h).unwrap_err();
            assert!(r.message.contains("Host"), "{host}: {r:?}");
        }
        let cookie = [
            ("host", "127.0.0.1:8080"),
            ("cookie", "devcluster-dashboard-8080=s3cret"),
        ];
        let r = check(&s, &Method::GET, "/api/suspend", None, &headers(&cookie)).unwrap_err();
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        let r = check(&s, &Method::POST, "/api/suspend", None, &headers(&cookie)).unwrap_err();
        assert!(r.message.contains("CSRF"), "{r:?}");
        let mut ok = cookie.to_vec();
        ok.push(("x-devcluster-csrf", "csrf1"));
        assert_eq!(
            check(&s, &Method::POST, "/api/suspend", None, &headers(&ok)),
            Ok(Admit::Cookie)
        );
        ok.push(("origin", "http://evil.example"));
        assert!(check(&s, &Method::POST, "/api/suspend", None, &headers(&ok)).is_err());
    }
}
