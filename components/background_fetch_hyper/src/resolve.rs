//! Name resolution: the [`Resolve`] seam, the system resolver, a static one, and the adapter
//! that gives a resolver to hyper-util's connector.

use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Why a name could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveErrorKind {
    /// The name does not exist (NXDOMAIN, no address): a problem of that server only.
    NotFound,
    /// Resolution itself is unavailable (no network, resolver unreachable, try again later):
    /// a sign that the network is down.
    Unavailable,
}

/// A name resolution failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveError {
    /// What kind of failure.
    pub kind: ResolveErrorKind,
    /// Details.
    pub message: String,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ResolveError {}

/// Name resolution. IP-literal hosts never reach it.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` (a domain name), for `port`.
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Vec<SocketAddr>, ResolveError>>;
}

/// The system resolver: `getaddrinfo` on a blocking thread.
///
/// Failures are classified by `getaddrinfo`'s error code, never by its message (which differs
/// by platform: glibc's "Name or service not known", musl's "Name does not resolve",
/// Windows' "No such host is known"): `EAI_NONAME` and `EAI_NODATA` are
/// [`ResolveErrorKind::NotFound`]; everything else (`EAI_AGAIN`, which a SERVFAIL and a
/// machine without network both give, `EAI_FAIL`, system errors) is
/// [`ResolveErrorKind::Unavailable`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Vec<SocketAddr>, ResolveError>> {
        let host = host.to_owned();
        async move {
            let name = host.clone();
            let lookup = tokio::task::spawn_blocking(move || {
                let hints = dns_lookup::AddrInfoHints {
                    socktype: dns_lookup::SockType::Stream.into(),
                    ..Default::default()
                };
                dns_lookup::getaddrinfo(Some(&name), None, Some(hints)).map(|infos| {
                    infos
                        .filter_map(Result::ok)
                        .map(|info| SocketAddr::new(info.sockaddr.ip(), port))
                        .collect::<Vec<_>>()
                })
            })
            .await;
            let result = match lookup {
                Ok(r) => r,
                Err(e) => {
                    return Err(ResolveError {
                        kind: ResolveErrorKind::Unavailable,
                        message: format!("{host}: the resolver thread failed: {e}"),
                    });
                }
            };
            match result {
                Ok(mut v) => {
                    v.dedup();
                    if v.is_empty() {
                        Err(ResolveError {
                            kind: ResolveErrorKind::NotFound,
                            message: format!("{host}: no address"),
                        })
                    } else {
                        Ok(v)
                    }
                }
                Err(e) => {
                    let kind = ResolveErrorKind::from_lookup(e.kind());
                    let message = std::io::Error::from(e).to_string();
                    Err(ResolveError {
                        kind,
                        message: format!("{host}: {message}"),
                    })
                }
            }
        }
        .boxed()
    }
}

impl ResolveErrorKind {
    /// The kind of a `getaddrinfo` failure.
    fn from_lookup(kind: dns_lookup::LookupErrorKind) -> Self {
        use dns_lookup::LookupErrorKind as K;
        match kind {
            K::NoName | K::NoData => ResolveErrorKind::NotFound,
            _ => ResolveErrorKind::Unavailable,
        }
    }
}

/// A resolver with fixed answers for some names (like curl's `--resolve`), falling back to
/// another resolver for the rest.
#[derive(Clone)]
pub struct StaticResolver {
    map: HashMap<String, Vec<IpAddr>>,
    fallback: Option<Arc<dyn Resolve>>,
}

impl fmt::Debug for StaticResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticResolver")
            .field("map", &self.map)
            .finish()
    }
}

impl Default for StaticResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl StaticResolver {
    /// Fixed answers in front of the system resolver.
    pub fn new() -> Self {
        StaticResolver {
            map: HashMap::new(),
            fallback: Some(Arc::new(SystemResolver)),
        }
    }

    /// Fixed answers only: any other name is [`ResolveErrorKind::NotFound`].
    pub fn only() -> Self {
        StaticResolver {
            map: HashMap::new(),
            fallback: None,
        }
    }

    /// Answers `host` (case-insensitive) with `ip`.
    pub fn with(mut self, host: &str, ip: IpAddr) -> Self {
        self.map
            .entry(host.to_ascii_lowercase())
            .or_default()
            .push(ip);
        self
    }
}

impl Resolve for StaticResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> BoxFuture<'static, Result<Vec<SocketAddr>, ResolveError>> {
        if let Some(ips) = self.map.get(&host.to_ascii_lowercase()) {
            let v = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            return futures::future::ready(Ok(v)).boxed();
        }
        match &self.fallback {
            Some(f) => f.resolve(host, port),
            None => futures::future::ready(Err(ResolveError {
                kind: ResolveErrorKind::NotFound,
                message: format!("{host}: not in the static resolver"),
            }))
            .boxed(),
        }
    }
}

/// A [`Resolve`] as hyper-util's connector wants it (a `tower` service of names), for one
/// port.
#[derive(Clone)]
pub(crate) struct ResolverService {
    pub resolver: Arc<dyn Resolve>,
    pub port: u16,
}

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for ResolverService {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = BoxFuture<'static, Result<Self::Response, ResolveError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        self.resolver
            .resolve(name.as_str(), self.port)
            .map(|r| r.map(Vec::into_iter))
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getaddrinfo_failures_are_classified_by_their_code() {
        use dns_lookup::LookupErrorKind as K;
        assert_eq!(
            ResolveErrorKind::from_lookup(K::NoName),
            ResolveErrorKind::NotFound
        );
        assert_eq!(
            ResolveErrorKind::from_lookup(K::NoData),
            ResolveErrorKind::NotFound
        );
        assert_eq!(
            ResolveErrorKind::from_lookup(K::Again),
            ResolveErrorKind::Unavailable
        );
        assert_eq!(
            ResolveErrorKind::from_lookup(K::Fail),
            ResolveErrorKind::Unavailable
        );
        assert_eq!(
            ResolveErrorKind::from_lookup(K::System),
            ResolveErrorKind::Unavailable
        );
    }

    #[test]
    fn ip_literals_and_localhost_resolve_without_the_network() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v = rt
            .block_on(SystemResolver.resolve("localhost", 8080))
            .unwrap();
        assert!(
            v.iter().all(|a| a.port() == 8080 && a.ip().is_loopback()),
            "{v:?}"
        );
    }
}
