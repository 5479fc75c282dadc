//! A running `devcluster dashboard --no-browser -o json` and raw HTTP
//! requests to it (any Host header, any method).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use super::Test;

/// A request (method, path, headers) and the status it must get.
type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, u16);

pub struct Dashboard {
    child: Child,
    pub url: String,
    pub token: String,
    pub port: u16,
}

impl Dashboard {
    pub fn start(t: &Test, cluster: &str) -> Dashboard {
        let mut child = t
            .command()
            .args([
                "--cluster",
                cluster,
                "dashboard",
                "--no-browser",
                "-o",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dashboard -o json printed {line:?}: {e}")
        });
        Dashboard {
            child,
            url: v["url"].as_str().unwrap().into(),
            token: v["token"].as_str().unwrap().into(),
            port: v["port"].as_u64().unwrap() as u16,
        }
    }

    pub fn cookie(&self) -> String {
        format!("devcluster-dashboard-{}={}", self.port, self.token)
    }

    /// One raw request: status code and body.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: 127.0.0.1:{}\r\n", self.port));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Every refusal the guard owes: no secret, a wrong one, a foreign
    /// Host (DNS rebinding), a GET to an action, a POST without the CSRF
    /// token or from another origin. None may reach an action.
    pub fn assert_refusals(&self) {
        let cookie = self.cookie();
        let port = self.port.to_string();
        let foreign = format!("rebind.example:{port}");
        let cases: Vec<Case> = vec![
            ("GET", "/".into(), vec![], 403),
            ("GET", "/events".into(), vec![], 403),
            ("GET", "/api/status".into(), vec![], 403),
            ("POST", "/api/suspend".into(), vec![], 403),
            (
                "GET",
                "/?k=0123456789abcdef0123456789abcdef".into(),
                vec![],
                403,
            ),
            (
                "GET",
                format!("/?k={}", self.token),
                vec![("Host", foreign.clone())],
                403,
            ),
            (
                "POST",
                "/api/suspend".into(),
                vec![("Host", foreign.clone()), ("Cookie", cookie.clone())],
                403,
            ),
            (
                "GET",
                "/api/suspend".into(),
                vec![("Cookie", cookie.clone())],
                405,
            ),
            (
                "GET",
                "/api/halt".into(),
                vec![("Cookie", cookie.clone())],
                405,
            ),
            (
                "POST",
                "/api/suspend".into(),
                vec![("Cookie", cookie.clone())],
                403,
            ),
            (
                "POST",
                "/api/suspend".into(),
                vec![
                    ("Cookie", cookie.clone()),
                    ("X-Devcluster-CSRF", "wrong".into()),
                ],
                403,
            ),
        ];
        for (method, path, headers, want) in cases {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (got, body) = self.raw(method, &path, &h);
            assert_eq!(got, want, "{method} {path} {headers:?}: {body}");
        }
        // The secret in the URL is answered with the cookie and a redirect.
        let (got, _) = self.raw("GET", &format!("/?k={}", self.token), &[]);
        assert_eq!(got, 303);
        let (got, _) = self.raw("GET", "/", &[("Cookie", &cookie), ("Host", "localhost")]);
        assert_eq!(got, 200);
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
