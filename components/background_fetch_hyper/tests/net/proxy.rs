//! Proxies: plain `http` in absolute form through an HTTP proxy, `https` through a CONNECT
//! tunnel, credentials from the proxy URL, `NO_PROXY`, and a proxy's refusal reported as such.

use crate::support::*;
use background_fetch::{NetworkErrorCause, NetworkErrorKind};
use background_fetch_hyper::ProxyConfig;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CONNECT proxy on 127.0.0.1 that sends every tunnel to `target` (whatever name the client
/// asked for: the proxy resolves, not the client), answering `status`; it records each
/// request head.
struct ConnectProxy {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectProxy {
    async fn start(target: SocketAddr, status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let heads2 = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let heads = heads2.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    heads
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    if status != 200 {
                        let _ = client
                            .write_all(
                                format!("HTTP/1.1 {status} Refused\r\ncontent-length: 0\r\n\r\n")
                                    .as_bytes(),
                            )
                            .await;
                        return;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        ConnectProxy { addr, heads, task }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn plain_http_goes_through_the_proxy_in_absolute_form_with_its_credentials() {
    // The "proxy" answers itself: it sees what a proxy would be asked.
    let proxy = TestServer::http(|_| Reply::ok("from the proxy")).await;
    let mut c = config(None);
    c.proxy = Some(
        ProxyConfig::builder()
            .http(&format!("http://user:p%40ss@127.0.0.1:{}", proxy.port()))
            .build()
            .unwrap(),
    );
    let host = host(c);
    // Nothing listens on port 8080 here: the proxy connects, not the client.
    let url = url::Url::parse("http://origin.localhost:8080/file?x=1").unwrap();
    let o = run(&host, get(&url, "http://origin.localhost:8080")).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, b"from the proxy");
    let reqs = proxy.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].target, "http://origin.localhost:8080/file?x=1");
    assert_eq!(reqs[0].header("host"), Some("origin.localhost:8080"));
    // base64("user:p@ss")
    assert_eq!(
        reqs[0].header("proxy-authorization"),
        Some("Basic dXNlcjpwQHNz")
    );
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel_with_the_proxy_s_credentials() {
    let ca = TestCa::new();
    let server = TestServer::https(&ca, |_| Reply::ok("tunnelled")).await;
    let proxy = ConnectProxy::start(server.addr, 200).await;
    let mut c = config(Some(&ca));
    c.proxy = Some(
        ProxyConfig::builder()
            .all(&format!("http://me:secret@127.0.0.1:{}", proxy.addr.port()))
            .build()
            .unwrap(),
    );
    let host = host(c);
    // The certificate names a.test: TLS runs end to end, inside the tunnel.
    let url = server.url_as("a.test", "/f");
    let o = run(
        &host,
        get(&url, &format!("https://a.test:{}", server.port())),
    )
    .await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, b"tunnelled");
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with(&format!("CONNECT a.test:{} HTTP/1.1\r\n", server.port())),
        "{heads:?}"
    );
    // base64("me:secret")
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic bwu6c2vjcmv0"),
        "{heads:?}"
    );
    assert_eq!(
        server.requests()[0].target,
        "/f",
        "origin form inside the tunnel"
    );
}

#[tokio::test]
async fn no_proxy_hosts_are_fetched_directly() {
    let server = TestServer::http(|_| Reply::ok("direct")).await;
    let proxy = TestServer::http(|_| Reply::ok("proxied")).await;
    let mut c = config(None);
    c.proxy = Some(
        ProxyConfig::builder()
            .all(&format!("http://127.0.0.1:{}", proxy.port()))
            .no("example.invalid, 127.0.0.1")
            .build()
            .unwrap(),
    );
    let host = host(c);
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, b"direct");
    assert!(proxy.requests().is_empty());
}

#[tokio::test]
async fn a_refused_tunnel_is_a_proxy_error_naming_the_proxy() {
    let proxy = ConnectProxy::start("127.0.0.1:9".parse().unwrap(), 403).await;
    let mut c = config(None);
    c.proxy = Some(
        ProxyConfig::builder()
            .https(&format!("http://127.0.0.1:{}", proxy.addr.port()))
            .build()
            .unwrap(),
    );
    let host = host(c);
    let url = url::Url::parse("https://a.test/f").unwrap();
    let o = run(&host, get(&url, "https://a.test")).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal, "{:?}", o.error);
    assert_eq!(o.error().cause, Some(NetworkErrorCause::Proxy));
    let m = &o.error().message;
    assert!(
        m.contains(&format!("127.0.0.1:{}", proxy.addr.port())),
        "{m}"
    );
    assert!(m.contains("a.test:443"), "{m}");
}

#[test]
fn a_bad_proxy_url_is_an_error_that_says_so() {
    for bad in ["ftp://proxy.test", "http://", "socks5://127.0.0.1:1080"] {
        let e = ProxyConfig::builder().all(bad).build().unwrap_err();
        assert!(e.to_string().contains(bad), "{e}");
    }
    // No scheme means http, as curl reads it.
    assert!(ProxyConfig::builder().all("127.0.0.1:3128").build().is_ok());
}
