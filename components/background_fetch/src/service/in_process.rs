//! The in-process transport: messages are handed over directly, without serialising (the
//! protocol's values are plain data, so nothing is shared either way).

use super::client::{Connection, ServiceSink, WeakConnection};
use super::protocol::{EnvironmentData, ToScript, ToService};
use super::server::{ConnectionId, ScriptSink, Service, WeakService};
use crate::hosts::Spawn;
use crate::sync::lock;
use std::sync::{Arc, Mutex};

/// The service's end of an in-process connection (set once the connection exists).
struct ToConnection(Mutex<Option<WeakConnection>>);

impl ScriptSink for ToConnection {
    fn send(&self, message: ToScript) {
        let weak = lock(&self.0).clone();
        if let Some(conn) = weak.as_ref().and_then(Connection::upgrade) {
            conn.receive(message);
        }
    }
}

/// The script's end of an in-process connection.
struct ToService_ {
    service: ServiceHandle,
    id: ConnectionId,
}

/// How the script's end holds the service.
enum ServiceHandle {
    Owned(Service),
    Unowned(WeakService),
}

impl ServiceHandle {
    fn get(&self) -> Option<Service> {
        match self {
            ServiceHandle::Owned(s) => Some(s.clone()),
            ServiceHandle::Unowned(w) => w.upgrade(),
        }
    }
}

impl ServiceSink for ToService_ {
    fn send(&self, message: ToService) {
        if let Some(service) = self.service.get() {
            service.receive(self.id, message);
        }
    }
    fn close(&self) {
        if let Some(service) = self.service.get() {
            service.disconnect(self.id);
        }
    }
}

/// Connects script of `environment`, in this process, to `service`; functional event handlers
/// run on `spawner`. The connection has said hello. Dropping every handle of the connection
/// closes it (the service releases its objects). The connection keeps the service alive.
pub fn connect(
    service: &Service,
    environment: EnvironmentData,
    spawner: Arc<dyn Spawn>,
) -> Connection {
    connect_with(
        service,
        ServiceHandle::Owned(service.clone()),
        environment,
        spawner,
    )
}

/// [`connect`], but the connection does not keep the service alive, as script in another
/// process cannot: once every other handle of the service is dropped (its process went away),
/// what the connection sends goes nowhere, and its calls never settle. A test bed's crash is
/// that.
pub fn connect_unowned(
    service: &Service,
    environment: EnvironmentData,
    spawner: Arc<dyn Spawn>,
) -> Connection {
    connect_with(
        service,
        ServiceHandle::Unowned(service.downgrade()),
        environment,
        spawner,
    )
}

fn connect_with(
    service: &Service,
    handle: ServiceHandle,
    environment: EnvironmentData,
    spawner: Arc<dyn Spawn>,
) -> Connection {
    let to_connection = Arc::new(ToConnection(Mutex::new(None)));
    let id = service.connect(to_connection.clone());
    let conn = Connection::new(
        Arc::new(ToService_ {
            service: handle,
            id,
        }),
        environment,
        spawner,
    );
    *lock(&to_connection.0) = Some(conn.downgrade());
    conn.hello();
    conn
}
