//! CORS: the check, preflight (WPT fetch.https.window.js tests 5, 6, 14 and the Chromium
//! cors.https.window.js cases), filtering, credentials mode, no size leak.

use crate::support::*;
use background_fetch::{
    BlockReason, CredentialsMode, NetworkErrorKind, Request, RequestMode, ResponseType,
};

/// The client page's origin: cross-origin to every test server.
const APP: &str = "https://app.test";

/// `resources/cors-resource.txt` of WPT: `*` origin, GET/OPTIONS/HEAD, any header, a secret.
fn cors_resource(r: &Logged) -> Reply {
    let reply = if r.method == "OPTIONS" {
        Reply::ok("")
    } else {
        Reply::ok("Background Fetch")
    };
    reply
        .acao("*")
        .header("access-control-allow-methods", "GET, OPTIONS, HEAD")
        .header("access-control-allow-headers", "*")
        .header("access-control-max-age", "86400")
        .header("x-secret-header", "SuperSecretValue")
        .header("content-type", "text/plain")
}

#[tokio::test]
async fn cross_origin_response_is_cors_and_non_exposed_headers_are_filtered() {
    let server = TestServer::http(|r| {
        cors_resource(r)
            .header("x-exposed", "1")
            .header("access-control-expose-headers", "X-Exposed")
    })
    .await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/cors-resource.txt"), APP)).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.head().response_type, ResponseType::Cors);
    assert_eq!(o.head().headers.get_str("x-secret-header"), None);
    assert_eq!(o.head().headers.get_str("x-exposed").as_deref(), Some("1"));
    assert_eq!(
        o.head().headers.get_str("content-type").as_deref(),
        Some("text/plain")
    );
    assert_eq!(o.body, b"Background Fetch");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "a safelisted GET needs no preflight");
    assert_eq!(reqs[0].header("origin"), Some(APP));
}

#[tokio::test]
async fn responses_failing_cors_checks_are_not_leaked() {
    // WPT "Responses failing CORS checks are not leaked": no ACAO, a big body.
    let server = TestServer::http(|_| Reply::ok(pattern(1 << 20))).await;
    let host = host(config(None));
    let o = run(&host, get(&server.url("/feature-name.txt"), APP)).await;
    assert_eq!(
        o.kind(),
        NetworkErrorKind::Blocked(BlockReason::Cors),
        "{:?}",
        o.error
    );
    assert!(o.head.is_none(), "the response is not exposed");
    assert!(o.body.is_empty(), "no byte is counted");
}

#[tokio::test]
async fn the_allowed_origin_must_match() {
    let server = TestServer::http(|r| match r.path() {
        "/match" => Reply::ok("ok").acao(APP),
        "/other" => Reply::ok("no").acao("https://other.test"),
        _ => Reply::ok("no").acao("*").acao("*"),
    })
    .await;
    let host = host(config(None));
    assert!(
        run(&host, get(&server.url("/match"), APP))
            .await
            .error
            .is_none()
    );
    for p in ["/other", "/twice"] {
        let o = run(&host, get(&server.url(p), APP)).await;
        assert_eq!(
            o.kind(),
            NetworkErrorKind::Blocked(BlockReason::Cors),
            "{p}"
        );
    }
}

#[tokio::test]
async fn credentials_mode_include_fails_against_a_wildcard_and_omit_succeeds() {
    let server = TestServer::http(|r| match r.path() {
        "/exact" => Reply::ok("ok")
            .acao(APP)
            .header("access-control-allow-credentials", "true"),
        "/exact-no-acac" => Reply::ok("no").acao(APP),
        _ => cors_resource(r),
    })
    .await;
    let host = host(config(None));
    let with = |path: &str, c: CredentialsMode| {
        let mut r = Request::get(server.url(path));
        r.credentials = c;
        request(r, APP)
    };
    let o = run(&host, with("/cors-resource.txt", CredentialsMode::Include)).await;
    assert_eq!(o.kind(), NetworkErrorKind::Blocked(BlockReason::Cors));
    let o = run(&host, with("/cors-resource.txt", CredentialsMode::Omit)).await;
    assert!(o.error.is_none());
    let o = run(&host, with("/exact", CredentialsMode::Include)).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    let o = run(&host, with("/exact-no-acac", CredentialsMode::Include)).await;
    assert_eq!(o.kind(), NetworkErrorKind::Blocked(BlockReason::Cors));
}

#[tokio::test]
async fn put_requires_a_preflight_and_succeeds_when_it_is_allowed() {
    // WPT "Requests with PUT method require CORS Preflight and succeed."
    let server = TestServer::http(|_| {
        Reply::ok("Background Fetch")
            .acao("*")
            .header("access-control-allow-methods", "PUT")
    })
    .await;
    let host = host(config(None));
    let mut req = Request::get(server.url("/feature-name.txt"));
    req.method = "PUT".into();
    let o = run(&host, request(req, APP)).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.status(), 200);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "OPTIONS");
    assert_eq!(reqs[0].header("access-control-request-method"), Some("PUT"));
    assert_eq!(reqs[0].header("access-control-request-headers"), None);
    assert_eq!(reqs[0].header("origin"), Some(APP));
    assert_eq!(reqs[1].method, "PUT");
}

#[tokio::test]
async fn post_with_text_json_requires_a_preflight_and_succeeds() {
    // WPT "Requests with text/json content type require CORS Preflight and succeed."
    let server = TestServer::http(|_| {
        Reply::ok("ok")
            .acao("*")
            .header("access-control-allow-headers", "content-type")
    })
    .await;
    let host = host(config(None));
    let mut req = Request::get(server.url("/x"));
    req.method = "POST".into();
    req.headers.append("content-type", "text/json");
    req.body_length = Some(2);
    let mut nr = request(req, APP);
    nr.body = Some(body_source(vec![bytes::Bytes::from_static(b"{}")]));
    let o = run(&host, nr).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    let reqs = server.requests();
    assert_eq!(reqs[0].method, "OPTIONS");
    assert_eq!(
        reqs[0].header("access-control-request-headers"),
        Some("content-type")
    );
    assert_eq!(reqs[1].method, "POST");
    assert_eq!(reqs[1].body, b"{}");
}

#[tokio::test]
async fn a_denied_preflight_blocks_the_request_which_is_never_sent() {
    // Chromium cors.https.window.js "custom headers fails without preflight approval", and a
    // PUT against a server that allows only GET.
    let server = TestServer::http(|r| match r.path() {
        "/static" => Reply::ok("x").acao("*"),
        "/500" => Reply::new(500, "")
            .acao("*")
            .header("access-control-allow-methods", "PUT"),
        _ => cors_resource(r),
    })
    .await;
    let host = host(config(None));
    let mut custom = Request::get(server.url("/static"));
    custom.headers.append("x-custom-header", "SecretValue");
    let mut put = Request::get(server.url("/cors-resource.txt"));
    put.method = "PUT".into();
    let mut put500 = Request::get(server.url("/500"));
    put500.method = "PUT".into();
    for req in [custom, put, put500] {
        let o = run(&host, request(req, APP)).await;
        assert_eq!(
            o.kind(),
            NetworkErrorKind::Blocked(BlockReason::Cors),
            "{:?}",
            o.error
        );
    }
    let methods: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["OPTIONS"; 3]);
    assert_eq!(
        server.requests()[0].header("access-control-request-headers"),
        Some("x-custom-header")
    );
}

#[tokio::test]
async fn a_wildcard_allow_headers_approves_custom_headers() {
    let server = TestServer::http(cors_resource).await;
    let host = host(config(None));
    let mut req = Request::get(server.url("/cors-resource.txt"));
    req.headers.append("x-custom-header", "SecretValue");
    let o = run(&host, request(req, APP)).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(
        server.requests()[1].header("x-custom-header"),
        Some("SecretValue")
    );
}

#[tokio::test]
async fn preflight_results_are_cached_for_max_age() {
    let server = TestServer::http(|_| {
        Reply::ok("ok")
            .acao("*")
            .header("access-control-allow-methods", "PUT")
            .header("access-control-max-age", "600")
    })
    .await;
    let host = host(config(None));
    for _ in 0..3 {
        let mut req = Request::get(server.url("/x"));
        req.method = "PUT".into();
        assert!(run(&host, request(req, APP)).await.error.is_none());
    }
    let methods: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["OPTIONS", "PUT", "PUT", "PUT"]);
}

#[tokio::test]
async fn same_origin_mode_refuses_a_cross_origin_url_and_no_cors_is_refused() {
    let server = TestServer::http(|_| Reply::ok("x").acao("*")).await;
    let host = host(config(None));
    let mut req = Request::get(server.url("/x"));
    req.mode = RequestMode::SameOrigin;
    let o = run(&host, request(req.clone(), APP)).await;
    assert_eq!(o.kind(), NetworkErrorKind::Blocked(BlockReason::Cors));
    // Same-origin it is fine.
    let o = run(&host, request(req, &server.origin())).await;
    assert!(o.error.is_none());
    let mut req = Request::get(server.url("/x"));
    req.mode = RequestMode::NoCors;
    let o = run(&host, request(req, APP)).await;
    assert_eq!(o.kind(), NetworkErrorKind::Blocked(BlockReason::Other));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn cors_resume_keeps_what_the_engine_needs_to_validate() {
    // A cross-origin 206 that exposes nothing: Content-Range and ETag travel unexposed in
    // `resume_headers` for "validate a partial response" (Last-Modified is safelisted, so it
    // stays exposed); the rest is filtered.
    let res = Resource::new(pattern(5000))
        .header("access-control-allow-origin", "*")
        .header("x-private", "1");
    let server = TestServer::http(move |r| res.reply(r)).await;
    let host = host(config(None));
    let mut nr = get(&server.url("/f"), APP);
    nr.range_start = Some(100);
    nr.validators.etag = Some("\"v1\"".into());
    let o = run(&host, nr).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.status(), 206);
    let h = &o.head().headers;
    assert!(h.contains("last-modified"));
    assert!(
        !h.contains("content-range") && !h.contains("etag"),
        "not exposed to script"
    );
    assert!(!h.contains("x-private") && !h.contains("accept-ranges"));
    let v = o.head().validation_headers();
    assert!(v.contains("content-range") && v.contains("etag") && v.contains("last-modified"));
    assert_eq!(o.body, pattern(5000)[100..]);
    // Range: bytes=N- is safelisted and If-Range is the user agent's: no preflight.
    assert_eq!(server.count(), 1);
}

/// A cookie jar with one cookie, recording the `Set-Cookie` values it is shown.
#[derive(Default)]
struct Jar(std::sync::Mutex<Vec<String>>);

impl background_fetch_hyper::Credentials for Jar {
    fn request_headers(&self, _url: &url::Url) -> Vec<(String, String)> {
        vec![("cookie".into(), "session=1".into())]
    }
    fn response_headers(&self, _url: &url::Url, headers: &http::HeaderMap) {
        for v in headers.get_all("set-cookie") {
            self.0.lock().unwrap().push(v.to_str().unwrap().to_owned());
        }
    }
}

#[tokio::test]
async fn the_credentials_hook_is_used_only_when_the_credentials_flag_is_set() {
    let server = TestServer::http(|_| {
        Reply::ok("x")
            .acao(APP)
            .header("access-control-allow-credentials", "true")
            .header("set-cookie", "seen=1")
    })
    .await;
    let jar = std::sync::Arc::new(Jar::default());
    let mut c = config(None);
    c.credentials = Some(jar.clone());
    let host = host(c);
    let with = |origin: &str, mode: CredentialsMode| {
        let mut r = Request::get(server.url("/x"));
        r.credentials = mode;
        request(r, origin)
    };
    // Same-origin with the default mode: credentials flag set.
    assert!(
        run(&host, with(&server.origin(), CredentialsMode::SameOrigin))
            .await
            .error
            .is_none()
    );
    // Cross-origin with the default mode, and with omit: not set.
    assert!(
        run(&host, with(APP, CredentialsMode::SameOrigin))
            .await
            .error
            .is_none()
    );
    assert!(
        run(&host, with(&server.origin(), CredentialsMode::Omit))
            .await
            .error
            .is_none()
    );
    // Cross-origin with include: set (and the server allows credentials).
    assert!(
        run(&host, with(APP, CredentialsMode::Include))
            .await
            .error
            .is_none()
    );
    let cookies: Vec<Option<String>> = server
        .requests()
        .iter()
        .map(|r| r.header("cookie").map(Into::into))
        .collect();
    assert_eq!(
        cookies,
        [
            Some("session=1".into()),
            None,
            None,
            Some("session=1".into())
        ]
    );
    assert_eq!(*jar.0.lock().unwrap(), ["seen=1", "seen=1"]);
}

#[tokio::test]
async fn a_later_preflight_does_not_make_the_cache_forget_earlier_approvals() {
    // Fetch keeps one cache entry per method and per header name: approving DELETE later does
    // not take back the PUT approved before.
    let server = TestServer::http(|r| {
        let allow = match r.header("access-control-request-method") {
            Some(m) => m.to_owned(),
            None => r.method.clone(),
        };
        Reply::ok("ok")
            .acao("*")
            .header("access-control-allow-methods", &allow)
            .header("access-control-max-age", "600")
    })
    .await;
    let host = host(config(None));
    for method in ["PUT", "DELETE", "PUT"] {
        let mut req = Request::get(server.url("/x"));
        req.method = method.into();
        let o = run(&host, request(req, APP)).await;
        assert!(o.error.is_none(), "{method}: {:?}", o.error);
    }
    let methods: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["OPTIONS", "PUT", "OPTIONS", "DELETE", "PUT"]);
}
