//! The `ipc-channel` transport (feature `ipc`): the protocol between processes, over the crate
//! Servo uses (postcard-serialised messages on OS channels).
//!
//! The engine's process makes a one-shot server ([`listen`]) and hands its name to the
//! script's process (an argument, an environment variable), which connects with [`connect`],
//! sending a channel pair per connection. Each side then reads its receiver on a thread of its
//! own and hands the messages to the service or the connection.

use super::client::{Connection, ServiceSink};
use super::protocol::{EnvironmentData, ToScript, ToService};
use super::server::{ConnectionId, ScriptSink, Service};
use crate::hosts::Spawn;
use crate::sync::lock;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::{Arc, Mutex};

/// The channels of one connection, sent by the script's process to the engine's.
#[derive(Serialize, Deserialize)]
pub struct ConnectionChannels {
    /// What the script sends.
    pub to_service: IpcReceiver<ToService>,
    /// Where the service's messages go.
    pub to_script: IpcSender<ToScript>,
}

/// The script's process's first message: its connections.
#[derive(Serialize, Deserialize)]
pub struct Bootstrap {
    /// One per environment (a page, a service worker global, ...).
    pub connections: Vec<ConnectionChannels>,
}

/// A one-shot server for a script process to connect to, and its name.
pub fn listen() -> io::Result<(IpcOneShotServer<Bootstrap>, String)> {
    IpcOneShotServer::new()
}

struct IpcScriptSink(Mutex<IpcSender<ToScript>>);

impl ScriptSink for IpcScriptSink {
    fn send(&self, message: ToScript) {
        if let Err(e) = lock(&self.0).send(message) {
            tracing::debug!(error = %e, "the script's process is gone");
        }
    }
}

/// Accepts the script process's connections on `server` (blocking until it connects) and
/// serves each on a thread of its own until its process closes it. Returns the connections.
pub fn accept(
    service: &Service,
    server: IpcOneShotServer<Bootstrap>,
) -> Result<Vec<ConnectionId>, ipc_channel::IpcError> {
    let (_, bootstrap) = server.accept()?;
    let mut ids = Vec::new();
    for channels in bootstrap.connections {
        let id = service.connect(Arc::new(IpcScriptSink(Mutex::new(channels.to_script))));
        let service = service.clone();
        let receiver = channels.to_service;
        std::thread::Builder::new()
            .name(format!("bgfetch-ipc-{}", id.0))
            .spawn(move || {
                while let Ok(message) = receiver.recv() {
                    service.receive(id, message);
                }
                service.disconnect(id);
            })
            .map_err(ipc_channel::IpcError::Io)?;
        ids.push(id);
    }
    Ok(ids)
}

struct IpcServiceSink(Mutex<IpcSender<ToService>>);

impl ServiceSink for IpcServiceSink {
    fn send(&self, message: ToService) {
        if let Err(e) = lock(&self.0).send(message) {
            tracing::debug!(error = %e, "the engine's process is gone");
        }
    }
}

/// Connects to the engine's process through the one-shot server `name`, one connection per
/// environment; functional event handlers run on `spawner`. Each connection has said hello.
pub fn connect(
    name: String,
    environments: Vec<EnvironmentData>,
    spawner: Arc<dyn Spawn>,
) -> Result<Vec<Connection>, ipc_channel::IpcError> {
    let bootstrap = IpcSender::<Bootstrap>::connect(name).map_err(ipc_channel::IpcError::Io)?;
    let mut channels = Vec::new();
    let mut connections = Vec::new();
    for environment in environments {
        let (to_service_tx, to_service_rx) = ipc::channel().map_err(ipc_channel::IpcError::Io)?;
        let (to_script_tx, to_script_rx) = ipc::channel().map_err(ipc_channel::IpcError::Io)?;
        channels.push(ConnectionChannels {
            to_service: to_service_rx,
            to_script: to_script_tx,
        });
        let conn = Connection::new(
            Arc::new(IpcServiceSink(Mutex::new(to_service_tx))),
            environment,
            spawner.clone(),
        );
        let weak = conn.downgrade();
        std::thread::Builder::new()
            .name("bgfetch-ipc-script".into())
            .spawn(move || {
                while let Ok(message) = to_script_rx.recv() {
                    match Connection::upgrade(&weak) {
                        Some(conn) => conn.receive(message),
                        None => break,
                    }
                }
            })
            .map_err(ipc_channel::IpcError::Io)?;
        connections.push(conn);
    }
    bootstrap
        .send(Bootstrap {
            connections: channels,
        })
        .map_err(|e| ipc_channel::IpcError::Io(io::Error::other(e.to_string())))?;
    for conn in &connections {
        conn.hello();
    }
    Ok(connections)
}
