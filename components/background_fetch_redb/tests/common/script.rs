//! Script reaches the engine as it does in a browser: through the engine's service and its
//! protocol (here the in-process transport), a page's connection and the service worker
//! global's, which answers the functional events.

use background_fetch::service::protocol::{EnvironmentData, EnvironmentKindData};
use background_fetch::service::{
    Connection, Service, ServiceWorkerHost, WorkerBridge, client, in_process,
};
use background_fetch::{
    DispatchOutcome, Engine, EngineConfig, Hosts, ServiceWorkerRegistrationId, Spawn, StoreError,
};
use futures::future::BoxFuture;
use std::sync::Arc;
use url::Url;

/// The engine's worker host, before the engine starts: functional events go through the
/// service to the service worker global's connection.
pub struct Workers {
    bridge: WorkerBridge,
    host: ServiceWorkerHost,
}

impl Workers {
    /// A worker host in which `registration` has an active worker.
    pub fn new(registration: &ServiceWorkerRegistrationId) -> Workers {
        let bridge = WorkerBridge::new();
        bridge.set_active_worker(registration, true);
        let host = ServiceWorkerHost::new(bridge.clone());
        Workers { bridge, host }
    }

    /// The host to give the engine.
    pub fn host(&self) -> Arc<ServiceWorkerHost> {
        Arc::new(self.host.clone())
    }
}

/// The engine behind its service, a page of `scope`'s origin and the service worker global of
/// `scope`'s registration, each a connection.
pub struct Script {
    pub service: Service,
    pub registration: ServiceWorkerRegistrationId,
    pub page: Connection,
    pub worker: Connection,
}

impl Script {
    /// The manager of the page (`registration.backgroundFetch`).
    pub fn manager(&self) -> client::BackgroundFetchManager {
        self.page.background_fetch(&self.registration)
    }
}

fn environment(kind: EnvironmentKindData, url: Url) -> EnvironmentData {
    EnvironmentData::secure(kind, url)
}

/// Starts the engine on `hosts` (whose worker host is `workers`'s) behind a service, connects
/// the service worker global of `scope`, whose listener of functional events is `on_event`,
/// and a page at `page`; then resumes what the engine restored (held back until the worker's
/// connection is there to receive the events a previous process did not finish).
pub fn start(
    hosts: Hosts,
    config: EngineConfig,
    workers: Workers,
    scope: &Url,
    page: Url,
    on_event: impl Fn(client::FunctionalEvent) -> BoxFuture<'static, DispatchOutcome>
    + Send
    + Sync
    + 'static,
) -> Result<Script, StoreError> {
    let spawner: Arc<dyn Spawn> = hosts.spawner.clone();
    let config = EngineConfig {
        resume_on_start: false,
        ..config
    };
    let engine = super::block_on(Engine::start(hosts, config))?;
    let service = Service::new(engine.clone(), workers.bridge);
    workers.host.serve(&service);
    let registration = ServiceWorkerRegistrationId::for_scope(scope);
    let worker = in_process::connect(
        &service,
        environment(
            EnvironmentKindData::ServiceWorker(registration.clone()),
            scope.join("sw.js").expect("the worker's URL"),
        ),
        spawner.clone(),
    );
    worker.on_functional_event(on_event);
    let page = in_process::connect(
        &service,
        environment(EnvironmentKindData::Window, page),
        spawner,
    );
    engine.resume_restored(None);
    Ok(Script {
        service,
        registration,
        page,
        worker,
    })
}
