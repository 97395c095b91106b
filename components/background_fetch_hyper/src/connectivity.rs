//! The online/offline signal.

use crate::config::ConnectivityConfig;
use crate::connect::{Resolve, tcp_connect};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::watch;

/// How many recent failing destinations the probe remembers.
const MAX_PROBE_TARGETS: usize = 4;

/// Whether the network looks online, as seen from this host's connections.
///
/// * It goes **offline** when a connection attempt fails in a way that says the network itself
///   is down rather than the server: the network or host is unreachable, the network is down,
///   no local address is available, or name resolution is *unavailable* (as opposed to a name
///   that does not exist, see [`crate::ResolveError`]). Connection refused, resets, timeouts and
///   unknown names do not count: they are about one server.
/// * It goes back **online** when any later connection succeeds, or when the probe succeeds:
///   while offline, every [`ConnectivityConfig::probe_interval`] the host opens a TCP
///   connection to [`ConnectivityConfig::probe_targets`] (or, when none are configured, to the
///   last few destinations whose failures took it offline) and closes it at once. After
///   [`ConnectivityConfig::recheck_after`] offline with no successful probe, it goes back
///   online anyway so that real requests are tried again (a false "offline" cannot stall every
///   download for ever).
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
    targets: Mutex<VecDeque<(String, u16)>>,
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
                targets: Mutex::new(VecDeque::new()),
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

    /// A connection to `host:port` was established: the network works.
    pub(crate) fn report_success(&self) {
        if !self.is_online() {
            self.set(true);
        }
    }

    /// A connection attempt to `host:port` failed because the network itself looks down.
    pub(crate) fn report_network_down(&self, host: &str, port: u16) {
        if !self.inner.config.detect {
            return;
        }
        if self.is_online() {
            self.inner.manual.store(false, Ordering::SeqCst);
        }
        {
            let mut t = self.inner.targets.lock().unwrap_or_else(|e| e.into_inner());
            t.retain(|(h, p)| !(h == host && *p == port));
            t.push_front((host.to_owned(), port));
            t.truncate(MAX_PROBE_TARGETS);
        }
        self.set(false);
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
            let targets: Vec<(String, u16)> = if self.inner.config.probe_targets.is_empty() {
                let t = self.inner.targets.lock().unwrap_or_else(|e| e.into_inner());
                t.iter().cloned().collect()
            } else {
                self.inner.config.probe_targets.clone()
            };
            for (host, port) in targets {
                let attempt = tokio::time::timeout(
                    self.inner.connect_timeout,
                    tcp_connect(&*self.inner.resolver, &host, port),
                )
                .await;
                if let Ok(Ok(_stream)) = attempt {
                    tracing::debug!(%host, port, "connectivity probe succeeded");
                    self.set(true);
                    return;
                }
            }
        }
    }
}
