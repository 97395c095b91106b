//! Whom `https` trusts: the roots the embedder chose (webpki, the platform's store, its own),
//! and a refused certificate reported with the host and the reason.

use crate::support::*;
use background_fetch::{NetworkErrorCause, NetworkErrorKind};
use background_fetch_hyper::TlsConfig;

#[tokio::test]
async fn an_untrusted_certificate_fails_naming_the_host_and_the_reason() {
    let ca = TestCa::new();
    let server = TestServer::https(&ca, |_| Reply::ok("secret")).await;
    // The test CA is not among the roots.
    let host = host(config(None));
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert_eq!(o.kind(), NetworkErrorKind::Fatal, "{:?}", o.error);
    assert_eq!(o.error().cause, Some(NetworkErrorCause::Tls));
    let m = &o.error().message;
    assert!(
        m.contains(&format!("127.0.0.1:{}", server.port())),
        "the host is named: {m}"
    );
    assert!(
        m.contains("certificate is not trusted") && m.contains("unknown issuer"),
        "the reason is said: {m}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_says_so() {
    let ca = TestCa::new();
    let server = TestServer::https(&ca, |_| Reply::ok("x")).await;
    let mut c = config(Some(&ca));
    c.resolver = Some(crate::errors::ScriptedResolver::new(vec![Ok(vec![
        server.addr,
    ])]));
    let host = host(c);
    // The certificate names localhost, 127.0.0.1, a.test and b.test.
    let url = server.url_as("elsewhere.localhost", "/f");
    let o = run(&host, get(&url, "https://app.test")).await;
    assert_eq!(o.error().cause, Some(NetworkErrorCause::Tls));
    let m = &o.error().message;
    assert!(m.contains("elsewhere.localhost"), "{m}");
    assert!(m.contains("not valid for this name"), "{m}");
}

#[tokio::test]
async fn roots_from_certificate_files_are_trusted() {
    // What SSL_CERT_FILE and SSL_CERT_DIR do for the platform's store, given explicitly.
    let ca = TestCa::new();
    let server = TestServer::https(&ca, |_| Reply::ok("trusted")).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let file = dir.join("ca.pem");
    std::fs::write(&file, ca.ca_pem.as_bytes()).unwrap();
    let mut c = config(None);
    let n = c.tls.add_roots_from_paths(Some(&file), None).unwrap();
    assert_eq!(n, 1);
    let host = host(c);
    let o = run(&host, get(&server.url("/f"), &server.origin())).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, b"trusted");
    // A file with no certificate is an error that names it.
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, b"nothing here").unwrap();
    let mut t = TlsConfig::default();
    let e = t.add_roots_from_paths(Some(&empty), None).unwrap_err();
    assert!(e.to_string().contains("empty.pem"), "{e}");
}

#[test]
fn the_platform_store_is_an_explicit_choice() {
    // The library's default stays the compiled-in webpki roots; the platform's store is the
    // embedder's choice (bgfetch makes it).
    let t = TlsConfig::default();
    assert!(t.webpki_roots);
    assert!(!t.native_roots);
}
