//! Proxies: which requests go through which HTTP proxy (the rules of curl's `HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`, matched by hyper-util's proxy matcher), with
//! credentials taken from the proxy URL. The connector tunnels `https` with `CONNECT`
//! (hyper-util's tunnel) and sends plain `http` to the proxy in absolute form.

use http::HeaderValue;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use std::fmt;
use std::sync::Arc;

/// A proxy URL or rule that cannot be used; the message quotes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyError(pub String);

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProxyError {}

/// Which requests go through a proxy, and which proxy: [`crate::Config::proxy`].
///
/// Proxy URLs are `http://[user:password@]host[:port]` (a URL without a scheme is read as
/// `http://`, as curl does; the port defaults to 80); user and password are percent-decoded
/// and sent as `Proxy-Authorization: Basic`. A proxy reached over TLS (`https://`) or SOCKS is
/// not supported: [`ProxyConfigBuilder::build`] says so.
#[derive(Clone)]
pub struct ProxyConfig {
    matcher: Arc<Matcher>,
    summary: String,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        f.write_str(&self.summary)
    }
}

/// Builds a [`ProxyConfig`]; every part is optional.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfigBuilder {
    all: Option<String>,
    http: Option<String>,
    https: Option<String>,
    no: Option<String>,
}

impl ProxyConfigBuilder {
    /// The proxy for every scheme without its own (`ALL_PROXY`).
    pub fn all(mut self, url: &str) -> Self {
        self.all = Some(url.to_owned());
        self
    }
    /// The proxy for `http` URLs (`HTTP_PROXY`).
    pub fn http(mut self, url: &str) -> Self {
        self.http = Some(url.to_owned());
        self
    }
    /// The proxy for `https` URLs (`HTTPS_PROXY`).
    pub fn https(mut self, url: &str) -> Self {
        self.https = Some(url.to_owned());
        self
    }
    /// Hosts fetched directly (`NO_PROXY`): comma-separated names (each also matching its
    /// subdomains, a leading dot allowed), IP addresses, networks (`10.0.0.0/8`) or `*`.
    pub fn no(mut self, list: &str) -> Self {
        self.no = Some(list.to_owned());
        self
    }

    /// Checks every proxy URL: a bad one is an error that quotes it.
    pub fn build(self) -> Result<ProxyConfig, ProxyError> {
        let mut b = Matcher::builder();
        let mut summary = Vec::new();
        for (name, value) in [
            ("all", &self.all),
            ("http", &self.http),
            ("https", &self.https),
        ] {
            let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            let shown = check_proxy_url(value)?;
            summary.push(format!("{name}: {shown}"));
            b = match name {
                "all" => b.all(value.to_owned()),
                "http" => b.http(value.to_owned()),
                _ => b.https(value.to_owned()),
            };
        }
        if let Some(no) = self.no.as_deref().filter(|v| !v.trim().is_empty()) {
            summary.push(format!("no: {no}"));
            b = b.no(no.to_owned());
        }
        Ok(ProxyConfig {
            matcher: Arc::new(b.build()),
            summary: format!("ProxyConfig({})", summary.join(", ")),
        })
    }
}

/// Checks a proxy URL; returns it without its credentials.
fn check_proxy_url(value: &str) -> Result<String, ProxyError> {
    let full = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let bad = |why: &str| ProxyError(format!("{value:?} is not a usable proxy URL: {why}"));
    let url = url::Url::parse(&full).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => return Err(bad("proxies reached over TLS (https://) are not supported")),
        s if s.starts_with("socks") => return Err(bad("SOCKS proxies are not supported")),
        s => return Err(bad(&format!("the scheme {s:?} is not http"))),
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(bad("no host"));
    };
    // hyper-util reads the URL again with http::Uri: it must agree.
    if full.parse::<http::Uri>().is_err() {
        return Err(bad("not a valid URI"));
    }
    Ok(format!(
        "http://{host}:{}",
        url.port_or_known_default().unwrap_or(80)
    ))
}

impl ProxyConfig {
    /// A builder.
    pub fn builder() -> ProxyConfigBuilder {
        ProxyConfigBuilder::default()
    }

    /// The rules of the environment, as curl reads them: `HTTP_PROXY`, `HTTPS_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY`, upper-case first, then lower-case (`http_proxy`, ...). A
    /// bad value is an error naming the variable.
    ///
    /// AD-HOC: as curl does, `HTTP_PROXY` in upper case is read too; hyper-util's own
    /// `Matcher::from_env` ignores every variable when `REQUEST_METHOD` is set (a CGI
    /// script, where `HTTP_PROXY` may come from a request's `Proxy:` header); this reads them
    /// in any case, since a downloader is not a CGI script.
    pub fn from_env() -> Result<ProxyConfig, ProxyError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`ProxyConfig::from_env`] with the variables read through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<ProxyConfig, ProxyError> {
        let first = |names: [&str; 2]| -> Result<Option<String>, ProxyError> {
            for n in names {
                if let Some(v) = var(n).filter(|v| !v.trim().is_empty()) {
                    if n != "NO_PROXY" && n != "no_proxy" {
                        check_proxy_url(&v).map_err(|e| ProxyError(format!("{n}: {e}")))?;
                    }
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };
        let mut b = ProxyConfig::builder();
        if let Some(v) = first(["ALL_PROXY", "all_proxy"])? {
            b = b.all(&v);
        }
        if let Some(v) = first(["HTTP_PROXY", "http_proxy"])? {
            b = b.http(&v);
        }
        if let Some(v) = first(["HTTPS_PROXY", "https_proxy"])? {
            b = b.https(&v);
        }
        if let Some(v) = first(["NO_PROXY", "no_proxy"])? {
            b = b.no(&v);
        }
        b.build()
    }

    /// Whether no request goes through a proxy.
    pub fn is_empty(&self) -> bool {
        let probe = |s: &'static str| self.matcher.intercept(&http::Uri::from_static(s)).is_none();
        probe("http://proxy-probe.invalid/") && probe("https://proxy-probe.invalid/")
    }

    /// The proxy for `uri`, if it goes through one.
    pub(crate) fn intercept(&self, uri: &http::Uri) -> Option<Proxy> {
        self.matcher.intercept(uri).map(|i| Proxy::new(&i))
    }
}

/// The proxy a request goes through.
#[derive(Clone, Debug)]
pub(crate) struct Proxy {
    /// `http://host:port/`
    pub uri: http::Uri,
    /// `Proxy-Authorization`, if the URL had credentials.
    pub auth: Option<HeaderValue>,
}

impl Proxy {
    fn new(i: &Intercept) -> Self {
        Proxy {
            uri: i.uri().clone(),
            auth: i.basic_auth().cloned(),
        }
    }

    /// `host:port` of the proxy, for messages.
    pub fn authority(&self) -> String {
        let host = self.uri.host().unwrap_or("");
        format!("{host}:{}", self.uri.port_u16().unwrap_or(80))
    }
}
