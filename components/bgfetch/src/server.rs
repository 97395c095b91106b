//! A small HTTP/1.1 origin server on 127.0.0.1, for `bgfetch demo`, the end-to-end tests and
//! the benchmarks: static or generated bodies (gigabytes without holding them in memory),
//! Range requests with `ETag`, rate limiting, and faults (a connection dropped after N bytes).
//!
//! One response per connection (`Connection: close`); requests are logged so tests can check
//! what was asked (for example that a resumed download sent `Range`).

use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response body.
#[derive(Clone, Debug)]
pub enum Body {
    /// These bytes.
    Bytes(Bytes),
    /// `len` bytes computed from their offset (see [`generated_byte`]), so any size can be
    /// served and checked without being held in memory.
    Generated {
        /// The length.
        len: u64,
        /// Varies the content.
        seed: u64,
    },
    /// The request body, echoed (like WPT's `upload.py`).
    Echo,
}

/// Byte `offset` of a [`Body::Generated`] body with `seed`.
pub fn generated_byte(seed: u64, offset: u64) -> u8 {
    PATTERN[((offset + seed) % PATTERN_LEN as u64) as usize]
}

/// A prime length, so the pattern never lines up with power-of-two chunk sizes.
const PATTERN_LEN: usize = 65_521;
static PATTERN: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..PATTERN_LEN + 65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
});

/// Fills `out` with a generated body's bytes from `offset`.
pub fn fill_generated(seed: u64, offset: u64, out: &mut Vec<u8>, len: usize) {
    out.clear();
    let mut at = offset;
    while out.len() < len {
        let start = ((at + seed) % PATTERN_LEN as u64) as usize;
        let take = (len - out.len()).min(PATTERN_LEN - start);
        out.extend_from_slice(&PATTERN[start..start + take]);
        at += take as u64;
    }
}

/// What the server answers at a path.
#[derive(Clone, Debug)]
pub struct Route {
    /// The status of a full response.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
    /// Whether `Range` requests get a 206.
    pub ranges: bool,
    /// Bytes per second (`None`: as fast as possible).
    pub rate: Option<u64>,
    /// For the first requests to this path, one entry each: drop the connection after this
    /// many body bytes.
    pub drop_after: Vec<u64>,
    /// Hold every response at this many body bytes until [`Server::release`] opens the path's
    /// gate (a test's way to stop a download at a known point without timing).
    pub hold_after: Option<u64>,
}

impl Route {
    /// A 200 with `body`, Range support and an `ETag`.
    pub fn ok(body: Body) -> Route {
        Route {
            status: 200,
            headers: vec![("ETag".into(), "\"v1\"".into())],
            body,
            ranges: true,
            rate: None,
            drop_after: Vec::new(),
            hold_after: None,
        }
    }

    /// A 200 with these bytes.
    pub fn bytes(b: impl Into<Bytes>) -> Route {
        Route::ok(Body::Bytes(b.into()))
    }

    /// A response with `status` and these bytes.
    pub fn status(status: u16, b: impl Into<Bytes>) -> Route {
        Route {
            status,
            ..Route::bytes(b)
        }
    }

    /// Limits the rate to `bytes_per_second`.
    pub fn rate(mut self, bytes_per_second: u64) -> Route {
        self.rate = Some(bytes_per_second.max(1));
        self
    }

    /// Holds each response after `bytes` body bytes until the path is released.
    pub fn hold_after(mut self, bytes: u64) -> Route {
        self.hold_after = Some(bytes);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Route {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The benchmark routes: `/gen1` (1 GiB), `/gen4` (4 GiB) and `/small/0` … `/small/999`
/// (16 KiB each), all generated.
pub fn benchmark_routes() -> Vec<(String, Route)> {
    let mut routes: Vec<(String, Route)> = vec![
        (
            "/gen1".into(),
            Route::ok(Body::Generated {
                len: 1 << 30,
                seed: 1,
            }),
        ),
        (
            "/gen4".into(),
            Route::ok(Body::Generated {
                len: 4 << 30,
                seed: 4,
            }),
        ),
        (
            "/gen8".into(),
            Route::ok(Body::Generated {
                len: 8 << 30,
                seed: 8,
            }),
        ),
    ];
    for i in 0..1000 {
        routes.push((
            format!("/small/{i}"),
            Route::ok(Body::Generated {
                len: 16 * 1024,
                seed: i,
            }),
        ));
    }
    routes
}

/// A request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// The method.
    pub method: String,
    /// The path (with query).
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Every header (names in lower case), sorted by name.
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    log: Vec<Logged>,
    served: HashMap<String, usize>,
    /// Per path: whether held responses may go on.
    gates: HashMap<String, tokio::sync::watch::Sender<bool>>,
    /// Per path: how many responses reached their hold point so far.
    held: HashMap<String, tokio::sync::watch::Sender<usize>>,
}

impl State {
    fn gate(&mut self, path: &str) -> tokio::sync::watch::Receiver<bool> {
        self.gates
            .entry(path.to_owned())
            .or_insert_with(|| tokio::sync::watch::channel(false).0)
            .subscribe()
    }

    fn held(&mut self, path: &str) -> &tokio::sync::watch::Sender<usize> {
        self.held
            .entry(path.to_owned())
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
    }
}

/// A running server. It stops when dropped.
pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts a server on 127.0.0.1 (a free port) on the current tokio runtime.
    pub async fn start(routes: impl IntoIterator<Item = (String, Route)>) -> io::Result<Server> {
        Self::start_on("127.0.0.1:0", routes).await
    }

    /// Starts a server on `addr`.
    pub async fn start_on(
        addr: &str,
        routes: impl IntoIterator<Item = (String, Route)>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            routes: routes.into_iter().collect(),
            ..State::default()
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, st).await;
                });
            }
        });
        Ok(Server { addr, state, task })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Adds or replaces a route.
    pub fn route(&self, path: &str, route: Route) {
        self.state.lock().unwrap().routes.insert(path.into(), route);
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Lets the responses held at `path` (see [`Route::hold_after`]) go on, and every later one.
    pub fn release(&self, path: &str) {
        let mut st = self.state.lock().unwrap();
        let _ = st.gate(path);
        st.gates[path].send_replace(true);
    }

    /// Completes once `n` responses for `path` have reached their hold point.
    pub async fn wait_held(&self, path: &str, n: usize) {
        let mut rx = self.state.lock().unwrap().held(path).subscribe();
        let _ = rx.wait_for(|h| *h >= n).await;
    }

    /// Requests for `path`.
    pub fn requests_for(&self, path: &str) -> Vec<Logged> {
        self.log().into_iter().filter(|l| l.path == path).collect()
    }
}

fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse::<u64>().ok()?.min(len.checked_sub(1)?)
    };
    (start <= end).then_some((start, end))
}

async fn serve(mut conn: TcpStream, state: Arc<Mutex<State>>) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let body_start = loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    // The request body (uploads).
    let content_length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut request_body = head[body_start..].to_vec();
    while request_body.len() < content_length {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request_body.extend_from_slice(&buf[..n]);
    }
    let range = headers.get("range").cloned();
    let (route, attempt) = {
        let mut st = state.lock().unwrap();
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        all.sort();
        st.log.push(Logged {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
            headers: all,
        });
        let attempt = {
            let n = st.served.entry(path.clone()).or_default();
            *n += 1;
            *n - 1
        };
        (st.routes.get(&path).cloned(), attempt)
    };
    let Some(route) = route else {
        conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    };
    let body = match &route.body {
        Body::Echo => Body::Bytes(Bytes::from(request_body)),
        b => b.clone(),
    };
    let len = match &body {
        Body::Bytes(b) => b.len() as u64,
        Body::Generated { len, .. } => *len,
        Body::Echo => 0,
    };
    let mut status = route.status;
    let (mut start, mut end) = (0u64, len.saturating_sub(1));
    let mut extra = String::new();
    if route.ranges
        && route.status == 200
        && method != "POST"
        && method != "PUT"
        && let Some(r) = &range
    {
        match parse_range(r, len) {
            Some((s, e)) => {
                status = 206;
                start = s;
                end = e;
                extra.push_str(&format!("Content-Range: bytes {s}-{e}/{len}\r\n"));
            }
            None => {
                let msg = format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                conn.write_all(msg.as_bytes()).await?;
                return Ok(());
            }
        }
    }
    let count = if len == 0 { 0 } else { end - start + 1 };
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {count}\r\nConnection: close\r\n",
        reason(status)
    );
    if route.ranges {
        response.push_str("Accept-Ranges: bytes\r\n");
    }
    if matches!(route.body, Body::Echo)
        && let Some(ct) = headers.get("content-type")
    {
        response.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (n, v) in &route.headers {
        response.push_str(&format!("{n}: {v}\r\n"));
    }
    response.push_str(&extra);
    response.push_str("\r\n");
    conn.write_all(response.as_bytes()).await?;
    if method == "HEAD" {
        return Ok(());
    }
    let drop_after = route.drop_after.get(attempt).copied();
    let mut hold = route.hold_after.map(|at| {
        let gate = state.lock().unwrap().gate(&path);
        (at, gate)
    });
    let began = Instant::now();
    let mut sent: u64 = 0;
    let mut chunk = Vec::with_capacity(256 * 1024);
    let step = route
        .rate
        .map(|r| (r / 20).clamp(1, 256 * 1024))
        .unwrap_or(256 * 1024);
    while sent < count {
        if let Some((at, gate)) = &mut hold
            && sent >= *at
        {
            state.lock().unwrap().held(&path).send_modify(|h| *h += 1);
            let _ = gate.wait_for(|open| *open).await;
            hold = None;
        }
        let mut n = step.min(count - sent);
        if let Some((at, _)) = &hold
            && sent < *at
        {
            n = n.min(*at - sent);
        }
        if let Some(limit) = drop_after {
            if sent >= limit {
                return Ok(()); // drop the connection mid-body
            }
            n = n.min(limit - sent);
        }
        match &body {
            Body::Bytes(b) => {
                let s = (start + sent) as usize;
                conn.write_all(&b[s..s + n as usize]).await?;
            }
            Body::Generated { seed, .. } => {
                fill_generated(*seed, start + sent, &mut chunk, n as usize);
                conn.write_all(&chunk).await?;
            }
            Body::Echo => {}
        }
        sent += n;
        if let Some(rate) = route.rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let elapsed = began.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
    if drop_after.is_some_and(|l| l <= sent) {
        return Ok(());
    }
    conn.shutdown().await?;
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_bodies_are_addressable() {
        let mut a = Vec::new();
        fill_generated(7, 0, &mut a, 200_000);
        let mut b = Vec::new();
        fill_generated(7, 123_456, &mut b, 1000);
        assert_eq!(&a[123_456..124_456], &b[..]);
        assert_eq!(a[99_999], generated_byte(7, 99_999));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=10-", 100), Some((10, 99)));
        assert_eq!(parse_range("bytes=10-20", 100), Some((10, 20)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("items=1-", 100), None);
    }
}
