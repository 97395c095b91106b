//! Interop with real servers: Debian's nginx (HTTPS with a local CA trusted through --cacert
//! and SSL_CERT_FILE, HTTP/2, Range resume after kill -9, gzip) and Debian's tinyproxy (plain
//! forwarding and CONNECT tunnels, with credentials), each started by the test on 127.0.0.1.
//!
//! A missing program is a loud skip that says how to install it (`.ci/run` installs them; in
//! CI, with `CI` set, a missing program fails the test instead).

mod common;

use common::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get update && apt-get install -y nginx-light tinyproxy";

/// The program `name`, looked up in PATH and the sbin directories; `None` (after saying so
/// loudly) if it is missing outside CI.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} is not installed (CI must run the interop suite): {INSTALL}");
    }
    eprintln!(
        "SKIPPED: {name} is not installed, so this interop test does not run. Install it with: {INSTALL}"
    );
    None
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `port` accepts connections (a hang guard, not a timing assertion).
fn wait_listening(port: u16, child: &mut Child, what: &str, log: &Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} never listened on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A local CA and a certificate it signed for 127.0.0.1 and localhost, as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("bgfetch interop CA {name}"),
        );
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let pki = Pki {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-cert.pem")),
            key: dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        std::fs::write(&pki.cert, leaf.pem()).unwrap();
        std::fs::write(&pki.key, leaf_key.serialize_pem()).unwrap();
        pki
    }
}

/// nginx serving `www` over HTTPS (HTTP/2 and HTTP/1.1) and plain HTTP, gzip on for text,
/// `/slow/` rate-limited; its access log records protocol, Range, coding and Via.
struct Nginx {
    child: Child,
    dir: PathBuf,
    https: u16,
    http: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn start(dir: &Path, pki: &Pki) -> Option<Nginx> {
        let bin = program("nginx")?;
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let (https, http) = (free_port(), free_port());
        let d = dir.display();
        let conf = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  types {{ application/octet-stream bin; text/plain txt; }}
  default_type application/octet-stream;
  log_format t '$request_method $request_uri $status $server_protocol range=[$http_range] enc=[$sent_http_content_encoding] via=[$http_via] sent=$body_bytes_sent';
  access_log {d}/access.log t;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  gzip on;
  gzip_types text/plain;
  gzip_min_length 0;
  server {{
    listen 127.0.0.1:{https} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {d}/www;
    location /slow/ {{ limit_rate 400k; }}
  }}
  server {{
    listen 127.0.0.1:{http};
    root {d}/www;
  }}
}}
",
            cert = pki.cert.display(),
            key = pki.key.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        std::fs::create_dir_all(dir.join("www/slow")).unwrap();
        let log = dir.join("error.log");
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(https, &mut child, "nginx", &log);
        wait_listening(http, &mut child, "nginx", &log);
        Some(Nginx {
            child,
            dir,
            https,
            http,
        })
    }

    /// Puts `body` at `path` (under the document root).
    fn put(&self, path: &str, body: &[u8]) {
        let p = self.dir.join("www").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https)
    }

    fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// Access log lines for `path`.
    fn log_for(&self, path: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some(path))
            .map(str::to_owned)
            .collect()
    }
}

/// tinyproxy on 127.0.0.1 requiring `user:pass` (Basic).
struct Tinyproxy {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tinyproxy {
    fn start(dir: &Path) -> Option<Tinyproxy> {
        let bin = program("tinyproxy")?;
        let dir = dir.join("tinyproxy");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "Port {port}
Listen 127.0.0.1
Timeout 60
LogFile \"{d}/tinyproxy.log\"
LogLevel Connect
PidFile \"{d}/tinyproxy.pid\"
MaxClients 16
Allow 127.0.0.1
BasicAuth user pass
"
        );
        std::fs::write(dir.join("tinyproxy.conf"), conf).unwrap();
        let log = dir.join("tinyproxy.log");
        let mut child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(dir.join("tinyproxy.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, &mut child, "tinyproxy", &log);
        Some(Tinyproxy { child, dir, port })
    }

    fn url(&self, credentials: &str) -> String {
        format!("http://{credentials}127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tinyproxy.log")).unwrap_or_default()
    }
}

/// Text that compresses well.
fn text_body() -> Vec<u8> {
    (0..4000)
        .map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n"))
        .collect::<String>()
        .into_bytes()
}

fn events_of(o: &std::process::Output, event: &str) -> Vec<serde_json::Value> {
    json_events(o)
        .into_iter()
        .filter(|e| e["event"] == event)
        .collect()
}

#[test]
fn nginx_https_trusted_by_cacert_over_http2_with_gzip() {
    let bed = Bed::new(vec![]);
    let pki = Pki::new(bed.dir.path(), "local");
    let Some(nginx) = Nginx::start(bed.dir.path(), &pki) else {
        return;
    };
    let bin = generated(300_000, 7);
    let txt = text_body();
    nginx.put("/a.bin", &bin);
    nginx.put("/t.txt", &txt);
    let out = bed.out();
    let o = bed.run(&[
        "--json",
        "fetch",
        "tls",
        &nginx.https_url("/a.bin"),
        &nginx.https_url("/t.txt"),
        "--cacert",
        pki.ca.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(std::fs::read(out.join("a.bin")).unwrap() == bin);
    assert!(std::fs::read(out.join("t.txt")).unwrap() == txt, "decoded");
    let a = nginx.log_for("/a.bin");
    let t = nginx.log_for("/t.txt");
    assert!(a.iter().all(|l| l.contains(" HTTP/2.0 ")), "{a:?}");
    assert!(t.iter().any(|l| l.contains("enc=[gzip]")), "{t:?}");
    // Each record said how it settled.
    let records = events_of(&o, "record");
    assert_eq!(records.len(), 2, "{}", text(&o));
    for r in &records {
        assert_eq!(r["result"], "success", "{r}");
        assert_eq!(r["status"], 200, "{r}");
    }
}

#[test]
fn nginx_https_trusted_through_ssl_cert_file() {
    let bed = Bed::new(vec![]);
    let pki = Pki::new(bed.dir.path(), "local");
    let Some(nginx) = Nginx::start(bed.dir.path(), &pki) else {
        return;
    };
    nginx.put("/a.bin", b"trusted through SSL_CERT_FILE");
    let out = bed.out();
    let o = bed
        .cmd(&[
            "fetch",
            "env",
            &nginx.https_url("/a.bin"),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("SSL_CERT_FILE", &pki.ca)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        std::fs::read(out.join("a.bin")).unwrap(),
        b"trusted through SSL_CERT_FILE"
    );
}

#[test]
fn an_untrusted_server_fails_naming_the_host_and_the_reason() {
    let bed = Bed::new(vec![]);
    let pki = Pki::new(bed.dir.path(), "local");
    let other = Pki::new(bed.dir.path(), "other");
    let Some(nginx) = Nginx::start(bed.dir.path(), &pki) else {
        return;
    };
    nginx.put("/a.bin", b"x");
    let url = nginx.https_url("/a.bin");
    let o = bed
        .cmd(&["--json", "fetch", "untrusted", &url])
        .env("SSL_CERT_FILE", &other.ca)
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{}", nginx.https)) && err.contains("not trusted"),
        "{err}"
    );
    let records = events_of(&o, "record");
    assert_eq!(records.len(), 1, "{}", text(&o));
    assert_eq!(records[0]["url"], url.as_str());
    assert_eq!(records[0]["result"], "fetch-error");
    assert_eq!(records[0]["cause"], "tls");
    assert!(records[0]["status"].is_null());
    // A --cacert that is not a certificate is bad input: exit 3, nothing registered.
    let junk = bed.dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let o = bed.run(&["fetch", "junk", &url, "--cacert", junk.to_str().unwrap()]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("junk.pem"),
        "{}",
        text(&o)
    );
    let o = bed.run(&["ids"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("junk"));
}

#[test]
fn nginx_range_resume_after_kill_9() {
    let bed = Bed::new(vec![]);
    let pki = Pki::new(bed.dir.path(), "local");
    let Some(nginx) = Nginx::start(bed.dir.path(), &pki) else {
        return;
    };
    let body = generated(3_000_000, 11);
    nginx.put("/slow/big.bin", &body);
    let out = bed.out();
    let cacert = pki.ca.to_str().unwrap();
    let mut child = bed.spawn(&[
        "fetch",
        "big",
        &nginx.https_url("/slow/big.bin"),
        "--cacert",
        cacert,
        "--out",
        out.to_str().unwrap(),
    ]);
    bed.wait_downloaded("big", 600_000);
    // Past the store's group commit interval (500 ms), so some bytes are durable.
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let o = bed.run(&["run", "--cacert", cacert]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        std::fs::read(out.join("big.bin")).unwrap() == body,
        "byte for byte"
    );
    let log = nginx.log_for("/slow/big.bin");
    let resumed = log
        .iter()
        .find(|l| l.contains(" 206 "))
        .unwrap_or_else(|| panic!("no 206 in {log:?}"));
    assert!(resumed.contains("range=[bytes="), "{resumed}");
    assert!(!resumed.contains("range=[bytes=0-"), "{resumed}");
}

#[test]
fn tinyproxy_forwards_plain_http_with_the_credentials_of_http_proxy() {
    let bed = Bed::new(vec![]);
    let pki = Pki::new(bed.dir.path(), "local");
    let Some(nginx) = Nginx::start(bed.dir.path(), &pki) else {
        return;
    };
    let Some(proxy) = Tinyproxy::start(bed.dir.path()) else {
        return;
    };
    nginx.put("/p.bin", b"through tinyproxy");
    let out = bed.out();
    let o = bed
        .cmd(&[
            "fetch",
            "plain",
            &nginx.http_url("/p.bin"),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("http_proxy", proxy.url("user:pass@"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        std::fs::read(out.join("p.bin")).unwrap(),
        b"through tinyproxy"
    );
    let log = nginx.log_for("/p.bin");
    assert!(log.iter().all(|l| l.contains("tinyproxy")), "{log:?}");
    // NO_PROXY sends it directly: the proxy (now asked without credentials) is not used.
    let o = bed
        .cmd(&["fetch", "direct", &nginx.http_url("/p.bin")])
        .env("HTTP_PROXY", proxy.url(""))
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    let log = nginx.log_for("/p.bin");
    assert!(log.last().unwrap().contains("via=[-]"), "{log:?}");
}

#[test]
fn tinyproxy_tunnels_https_with_connect_from_the_proxy_option() {
    let bed = Bed::new(vec![]);
    let pki = Pki::new(bed.dir.path(), "local");
    let Some(nginx) = Nginx::start(bed.dir.path(), &pki) else {
        return;
    };
    let Some(proxy) = Tinyproxy::start(bed.dir.path()) else {
        return;
    };
    nginx.put("/s.bin", b"through a tunnel");
    let out = bed.out();
    let cacert = pki.ca.to_str().unwrap();
    let o = bed.run(&[
        "fetch",
        "tunnel",
        &nginx.https_url("/s.bin"),
        "--proxy",
        &proxy.url("user:pass@"),
        "--cacert",
        cacert,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        std::fs::read(out.join("s.bin")).unwrap(),
        b"through a tunnel"
    );
    assert!(
        proxy
            .log()
            .contains(&format!("CONNECT 127.0.0.1:{}", nginx.https)),
        "{}",
        proxy.log()
    );
    // Without the credentials the proxy answers 407, and the failure says so.
    let o = bed.run(&[
        "--json",
        "fetch",
        "nocreds",
        &nginx.https_url("/s.bin"),
        "--proxy",
        &proxy.url(""),
        "--cacert",
        cacert,
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("requires credentials (407)"),
        "{}",
        text(&o)
    );
    let records = events_of(&o, "record");
    assert_eq!(records[0]["cause"], "proxy", "{}", text(&o));
    // A proxy URL that is not one is bad input.
    let o = bed.run(&[
        "fetch",
        "bad",
        &nginx.https_url("/s.bin"),
        "--proxy",
        "ftp://x",
    ]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ftp://x"),
        "{}",
        text(&o)
    );
}
