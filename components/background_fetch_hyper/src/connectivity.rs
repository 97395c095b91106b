//! The online/offline signal.

use crate::config::ConnectivityConfig;
use crate::resolve::Resolve;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::watch;

/// How many destinations known to work the probes remember.
const MAX_KNOWN_GOOD: usize = 4;

/// Whether the network looks online, as seen from this host's connections.
///
/// * A failure to reach **one destination** is that destination's: the record fails with a
///   temporary error and the engine retries it; other downloads go on. Refused and reset
///   connections and unknown names say nothing about the network at all.
/// * A failure that *could* mean the network itself is down (the network or host is
///   unreachable, the connect timeout passed, name resolution is unavailable: what a machine
///   without network gets, but also what one broken name server answering SERVFAIL gives)
///   starts a **check**: a TCP connection to destinations known to work
///   ([`ConnectivityConfig::probe_targets`], or the last few destinations that accepted a
///   connection, other than the failing one). Only when every one of them fails too does the
///   signal go **offline**. With no destination to compare with, it stays online.
/// * It goes back **online** when any later connection succeeds, or when a probe succeeds:
///   while offline, every [`ConnectivityConfig::probe_interval`] the host opens (and at once
///   closes) a TCP connection to the same destinations. After
///   [`ConnectivityConfig::recheck_after`] offline with no successful probe, it goes back
///   online anyway so that real requests are tried again.
/// * The embedder may also say so itself with [`Connectivity::set_online`] (an operating
///   system signal, say); detection keeps running.
///
/// Wire it to the engine with [`crate::HyperNetwork::drive_engine`], or by hand: forward
/// [`Connectivity::changes`] to `Engine::set_online`. While the engine is offline it starts no
/// fetch and interrupts running `GET` records; they resume with Range once it is back online.
#[derive(Clone)]
pub struct Connectivity {
    inner: Arc<Inner>,
}

struct Inner {
    tx: watch::Sender<bool>,
    config: ConnectivityConfig,
    resolver: Arc<dyn Resolve>,
    connect_timeout: Duration,
    handle: Handle,
    /// Destinations that accepted a connection lately, most recent first.
    known_good: Mutex<VecDeque<(String, u16)>>,
    checking: AtomicBool,
    probing: AtomicBool,
    /// The embedder set the state itself (no optimistic recheck then).
    manual: AtomicBool,
}

impl std::fmt::Debug for Connectivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectivity")
            .field("online", &self.is_online())
            .finish()
    }
}

impl Connectivity {
    pub(crate) fn new(
        config: ConnectivityConfig,
        resolver: Arc<dyn Resolve>,
        connect_timeout: Duration,
        handle: Handle,
    ) -> Self {
        let (tx, _) = watch::channel(true);
        Connectivity {
            inner: Arc::new(Inner {
                tx,
                config,
                resolver,
                connect_timeout,
                handle,
                known_good: Mutex::new(VecDeque::new()),
                checking: AtomicBool::new(false),
                probing: AtomicBool::new(false),
                manual: AtomicBool::new(false),
            }),
        }
    }

    /// Whether the network looks online now.
    pub fn is_online(&self) -> bool {
        *self.inner.tx.borrow()
    }

    /// The current state, then every change. The stream never ends while the host lives.
    pub fn changes(&self) -> BoxStream<'static, bool> {
        let rx = self.inner.tx.subscribe();
        futures::stream::unfold((rx, true), |(mut rx, first)| async move {
            if !first {
                rx.changed().await.ok()?;
            }
            let v = *rx.borrow_and_update();
            Some((v, (rx, false)))
        })
        .boxed()
    }

    /// Sets the state from outside (for example from the operating system's network
    /// notifications). Going offline starts the probe, as a detected failure does.
    pub fn set_online(&self, online: bool) {
        self.inner.manual.store(!online, Ordering::SeqCst);
        self.set(online);
    }

    fn set(&self, online: bool) {
        let changed = self.inner.tx.send_if_modified(|v| {
            let changed = *v != online;
            *v = online;
            changed
        });
        if changed {
            tracing::info!(online, "connectivity changed");
            if !online {
                self.start_probe();
            }
        }
    }

    /// A connection to `host:port` was established: the network works, and so does that
    /// destination.
    pub(crate) fn report_success(&self, host: &str, port: u16) {
        {
            let mut k = self
                .inner
                .known_good
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if k.front().is_none_or(|(h, p)| !(h == host && *p == port)) {
                k.retain(|(h, p)| !(h == host && *p == port));
                k.push_front((host.to_owned(), port));
                k.truncate(MAX_KNOWN_GOOD);
            }
        }
        if !self.is_online() {
            self.set(true);
        }
    }

    /// A connection attempt to `host:port` failed in a way that could mean the network is
    /// down: check destinations known to work before saying so.
    pub(crate) fn report_failure(&self, host: &str, port: u16) {
        if !self.inner.config.detect || !self.is_online() {
            return;
        }
        if self.inner.checking.swap(true, Ordering::SeqCst) {
            return;
        }
        let targets: Vec<(String, u16)> = self
            .targets()
            .into_iter()
            .filter(|(h, p)| !(h == host && *p == port))
            .collect();
        let this = self.clone();
        self.inner.handle.spawn(async move {
            // With nothing to compare with, the failure stays the destination's.
            if !targets.is_empty() && !this.any_reachable(&targets).await && this.is_online() {
                tracing::info!(?targets, "no destination known to work answers either");
                this.inner.manual.store(false, Ordering::SeqCst);
                this.set(false);
            }
            this.inner.checking.store(false, Ordering::SeqCst);
        });
    }

    /// What probes connect to: the configured targets, else the destinations known to work.
    fn targets(&self) -> Vec<(String, u16)> {
        if self.inner.config.probe_targets.is_empty() {
            let k = self
                .inner
                .known_good
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            k.iter().cloned().collect()
        } else {
            self.inner.config.probe_targets.clone()
        }
    }

    /// Whether any of `targets` accepts (or refuses: the network carried the answer) a TCP
    /// connection within the connect timeout.
    async fn any_reachable(&self, targets: &[(String, u16)]) -> bool {
        for (host, port) in targets {
            let attempt =
                tokio::time::timeout(self.inner.connect_timeout, self.reach(host, *port)).await;
            if attempt == Ok(true) {
                tracing::debug!(%host, port, "connectivity probe succeeded");
                return true;
            }
        }
        false
    }

    async fn reach(&self, host: &str, port: u16) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match self.inner.resolver.resolve(bare, port).await {
                Ok(addrs) => addrs,
                Err(_) => return false,
            },
        };
        for mut addr in addrs {
            if addr.port() == 0 {
                addr.set_port(port);
            }
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
                Err(_) => {}
            }
        }
        false
    }

    fn start_probe(&self) {
        if self.inner.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        self.inner.handle.spawn(async move {
            this.probe().await;
            this.inner.probing.store(false, Ordering::SeqCst);
            // A change to offline between the end of the loop and the flag reset would have
            // found the probe running: check again.
            if !this.is_online() {
                this.start_probe();
            }
        });
    }

    async fn probe(&self) {
        let since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.inner.config.probe_interval).await;
            if self.is_online() {
                return;
            }
            if !self.inner.manual.load(Ordering::SeqCst)
                && let Some(after) = self.inner.config.recheck_after
                && since.elapsed() >= after
            {
                tracing::info!(
                    ?after,
                    "offline for long without a successful probe: trying real requests again"
                );
                self.set(true);
                return;
            }
            if self.any_reachable(&self.targets()).await {
                self.set(true);
                return;
            }
        }
    }
}
