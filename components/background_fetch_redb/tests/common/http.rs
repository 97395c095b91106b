//! A small HTTP/1.1 server on 127.0.0.1 (one thread per connection) serving fixed files with
//! `ETag` and `Range: bytes=N-` support, throttled so downloads take a while, logging every
//! request's path and range start.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request the server saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub path: String,
    /// `Some(n)` for `Range: bytes=n-`.
    pub range_start: Option<u64>,
    pub if_range: Option<String>,
}

pub struct Server {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Logged>>>,
}

/// The server's content: path → bytes.
pub type Files = Arc<dyn Fn(&str) -> Option<Arc<Vec<u8>>> + Send + Sync>;

/// Holds responses after their first `after` bytes until opened.
#[derive(Clone, Debug)]
pub struct Gate {
    pub after: usize,
    state: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Gate {
    /// A closed gate.
    pub fn closed(after: usize) -> Gate {
        Gate {
            after,
            state: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
        }
    }

    pub fn open(&self) {
        *self.state.0.lock().unwrap() = true;
        self.state.1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.state.0.lock().unwrap();
        while !*open {
            open = self.state.1.wait(open).unwrap();
        }
    }
}

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// It sends `piece` bytes, then pauses for `pause`.
    pub piece: usize,
    pub pause: Duration,
    /// Hold every response body at this gate.
    pub gate: Option<Gate>,
}

impl Server {
    /// Serves what `files` gives for a path (`None`: 404).
    pub fn start(files: Files, options: Options) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let files = files.clone();
                let log = l.clone();
                let options = options.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &files, &log, &options);
                });
            }
        });
        Server { addr, log }
    }

    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
}

pub fn etag_of(path: &str) -> String {
    format!("\"v1-{}\"", path.trim_start_matches('/'))
}

fn serve(
    conn: TcpStream,
    files: &Files,
    log: &Mutex<Vec<Logged>>,
    options: &Options,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let _method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/").to_owned();
    let mut range_start = None;
    let mut if_range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => {
                    range_start = value
                        .strip_prefix("bytes=")
                        .and_then(|v| v.strip_suffix('-'))
                        .and_then(|v| v.parse::<u64>().ok());
                }
                "if-range" => if_range = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    log.lock().unwrap().push(Logged {
        path: path.clone(),
        range_start,
        if_range: if_range.clone(),
    });
    let mut out = conn;
    let Some(body) = files(&path) else {
        out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    };
    let etag = etag_of(&path);
    let honour = range_start.is_some() && if_range.as_deref().is_none_or(|v| v == etag);
    let len = body.len() as u64;
    // A Range starting at the length is unsatisfiable: 416 with `Content-Range: bytes */len`
    // (after a crash between the last byte and `complete_record`, the engine asks for it).
    let (start, head) = match range_start {
        Some(s) if honour && s >= len => {
            out.write_all(
                format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                     Content-Length: 0\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )?;
            return Ok(());
        }
        Some(s) if honour && s < len => (
            s,
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\n\
                 Content-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - s
            ),
        ),
        _ => (
            0,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: {etag}\r\n\
                 Connection: close\r\n\r\n"
            ),
        ),
    };
    out.write_all(head.as_bytes())?;
    let mut sent = 0;
    for piece in body[start as usize..].chunks(options.piece.max(1)) {
        if let Some(gate) = &options.gate
            && sent >= gate.after
        {
            gate.wait();
        }
        out.write_all(piece)?;
        sent += piece.len();
        if !options.pause.is_zero() {
            std::thread::sleep(options.pause);
        }
    }
    out.flush()
}
