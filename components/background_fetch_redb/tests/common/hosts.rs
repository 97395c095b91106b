//! Real hosts for running the engine in a process: a blocking HTTP/1.1 client network host (a
//! thread per fetch attempt), a real-time clock, and a thread-pool spawner.

use background_fetch::{
    BoxFuture, BoxStream, Clock, HeaderList, NetworkError, NetworkEvent, NetworkHost,
    NetworkRequest, ResponseHead, ResponseType, Spawn,
};
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, SinkExt, StreamExt};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Time from `Instant`; `sleep` completes from a timer thread.
pub struct RealClock {
    start: Instant,
}

impl RealClock {
    pub fn new() -> RealClock {
        RealClock {
            start: Instant::now(),
        }
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let (tx, rx) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            let _ = tx.send(());
        });
        async move {
            let _ = rx.await;
        }
        .boxed()
    }
}

/// Spawns on a `futures` thread pool.
pub struct Pool(pub futures::executor::ThreadPool);

impl Spawn for Pool {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        self.0.spawn_ok(future);
    }
}

/// A blocking HTTP/1.1 client: `GET` only, `Range` and `If-Range` when resuming.
pub struct BlockingHttp;

impl NetworkHost for BlockingHttp {
    fn fetch(&self, request: NetworkRequest) -> BoxStream<'static, NetworkEvent> {
        let (tx, rx) = mpsc::channel(4);
        std::thread::spawn(move || {
            let mut tx = tx;
            run(request, &mut tx);
        });
        rx.boxed()
    }
}

fn send(tx: &mut mpsc::Sender<NetworkEvent>, ev: NetworkEvent) -> bool {
    futures::executor::block_on(tx.send(ev)).is_ok()
}

fn run(request: NetworkRequest, tx: &mut mpsc::Sender<NetworkEvent>) {
    let url = request.request.url.clone();
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let conn = match TcpStream::connect((host.as_str(), port)) {
        Ok(c) => c,
        Err(e) => {
            send(
                tx,
                NetworkEvent::Error(NetworkError::temporary(e.to_string())),
            );
            return;
        }
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n",
        &url[url::Position::BeforePath..]
    );
    if let Some(start) = request.range_start {
        head.push_str(&format!(
            "Range: bytes={start}-\r\nAccept-Encoding: identity\r\n"
        ));
        if let Some(etag) = &request.validators.etag
            && !etag.starts_with("W/")
        {
            head.push_str(&format!("If-Range: {etag}\r\n"));
        }
    }
    head.push_str("\r\n");
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(e) => {
            send(
                tx,
                NetworkEvent::Error(NetworkError::temporary(e.to_string())),
            );
            return;
        }
    };
    if let Err(e) = writer.write_all(head.as_bytes()) {
        send(
            tx,
            NetworkEvent::Error(NetworkError::temporary(e.to_string())),
        );
        return;
    }
    let mut reader = BufReader::new(conn);
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).is_err() || status_line.is_empty() {
        send(
            tx,
            NetworkEvent::Error(NetworkError::temporary("no response")),
        );
        return;
    }
    let mut parts = status_line.trim_end().splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let status_text = parts.next().unwrap_or("").to_owned();
    let mut headers = HeaderList::new();
    let mut content_length: Option<u64> = None;
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => {
                send(
                    tx,
                    NetworkEvent::Error(NetworkError::temporary("truncated head")),
                );
                return;
            }
            Ok(_) => {}
        }
        if h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().ok();
            }
            headers.append(name.trim(), value);
        }
    }
    let head = ResponseHead {
        status,
        status_text,
        headers,
        url_list: vec![url],
        response_type: ResponseType::Basic,
        resume_headers: Default::default(),
    };
    if !send(tx, NetworkEvent::Response(head)) {
        return;
    }
    let mut remaining = content_length.unwrap_or(u64::MAX);
    let mut buf = vec![0u8; 64 * 1024];
    while remaining > 0 {
        let want = buf.len().min(remaining as usize);
        match reader.read(&mut buf[..want]) {
            Ok(0) => {
                if content_length.is_some() {
                    send(
                        tx,
                        NetworkEvent::Error(NetworkError::temporary("body ended early")),
                    );
                }
                return;
            }
            Ok(n) => {
                remaining -= n as u64;
                if !send(tx, NetworkEvent::Data(Bytes::copy_from_slice(&buf[..n]))) {
                    return; // the engine dropped the stream: cancel
                }
            }
            Err(e) => {
                send(
                    tx,
                    NetworkEvent::Error(NetworkError::temporary(e.to_string())),
                );
                return;
            }
        }
    }
}
