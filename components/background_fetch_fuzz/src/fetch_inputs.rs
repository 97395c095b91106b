//! `fetch_inputs`: `BackgroundFetchManager::fetch()` with arbitrary ids, request lists (URL
//! strings and `Request` objects with any method, mode, headers and body, bodies in hand or
//! streamed, streams that fail), options (title, icons, `downloadTotal`) and surroundings
//! (permission state, an active worker or none, a window or the service worker as the caller,
//! the storage quota, an existing fetch whose id may be taken again).
//!
//! A reference written from the `fetch()` algorithm predicts the outcome: the first failing step
//! in the spec's order (step 5: no requests; step 6: the Request constructor, then no-cors, in
//! request order; step 8.2: permission; 8.4: no active worker; 8.5: the id is taken; 8.8–8.11:
//! a body stream errors, or storing it exceeds the quota (chunk by chunk, in order);
//! `downloadTotal` not fitting in what is left of the quota (spec issue 110)). What the
//! `Request` constructor accepts is taken from `construct_request` itself: this target checks
//! `fetch()`, not the constructor. Checks:
//!
//! * never a panic; a rejection is exactly the predicted DOM error, with a message;
//! * a success gives a registration with the id, `uploadTotal` = the bytes of the bodies,
//!   `downloadTotal`, one record per request with the constructed request's URL, method and
//!   headers; `get(id)` finds it and the store holds one more fetch;
//! * a rejection leaves nothing behind: the store holds no more fetches, and no quota is held
//!   (a probe fetch reserving exactly what is left of the quota succeeds, and one byte more is a
//!   `QuotaExceededError`). After a success the same probe shows that exactly `uploadTotal` +
//!   `downloadTotal` bytes were taken.
//!
//! The network is offline throughout, so that nothing downloads and the quota stays put. The
//! caller (the page, or the service worker global) reaches the engine through the test bed's
//! service and protocol.

use arbitrary::{Arbitrary, Unstructured};
use background_fetch::service::client::BackgroundFetchManager;
use background_fetch::testing::TestBed;
use background_fetch::{
    BackgroundFetchOptions, CacheMode, CredentialsMode, DomError, DomErrorKind, ImageResource,
    PermissionState, RedirectMode, RequestBody, RequestInfo, RequestInit, RequestMode, Requests,
    construct_request,
};
use bytes::Bytes;
use futures::StreamExt;

const IDS: [&str; 4] = ["existing", "a", "", "\u{1F4E6} episode 1"];
const URLS: [&str; 14] = [
    "https://example.com/a.bin",
    "/relative/b.bin",
    "c.bin?x=1#frag",
    "https://other.example/cross-origin.bin",
    "http://example.com/mixed-content.bin",
    "https://example.com:25/bad-port",
    "data:text/plain,hello",
    "blob:https://example.com/0000",
    "ftp://example.com/file",
    "https://user:pass@example.com/credentials",
    "https://[::1/bad",
    "",
    "about:blank",
    "https://example.com/\u{e9}t\u{e9} space",
];
const METHODS: [&str; 9] = [
    "GET",
    "POST",
    "put",
    "HEAD",
    "CONNECT",
    "TRACE",
    "PATCH",
    "bad method",
    "DELETE",
];
const HEADER_NAMES: [&str; 9] = [
    "accept",
    "X-Custom",
    "Range",
    "Cookie",
    "Host",
    "content-type",
    "bad name",
    "",
    "Content-Length",
];
const HEADER_VALUES: [&str; 6] = ["a", "", " padded ", "bytes=0-1", "line\nbreak", "\u{e9}"];
const QUOTAS: [Option<u64>; 5] = [Some(1000), None, Some(0), Some(10), Some(1 << 20)];

#[derive(Arbitrary, Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// A stream of these chunks; `Err` items make it error there.
    Stream(Vec<Result<Vec<u8>, ()>>),
}

#[derive(Arbitrary, Debug, Clone)]
struct RequestDesc {
    url: UrlDesc,
    /// `None`: a URL string; `Some`: a `Request` object made with this init.
    init: Option<InitDesc>,
}

#[derive(Arbitrary, Debug, Clone)]
enum UrlDesc {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
struct InitDesc {
    method: Option<u8>,
    headers: Vec<(u8, u8)>,
    body: Option<Body>,
    mode: Option<u8>,
    credentials: Option<u8>,
    cache: Option<u8>,
    redirect: Option<u8>,
    integrity: Option<String>,
}

/// One input. The surroundings come first, so that they are decoded from the first bytes (an
/// input that runs out of bytes gets zeros: a quota of 1000 bytes, permission granted).
#[derive(Arbitrary, Debug)]
struct Input {
    quota: u8,
    permission: u8,
    existing: bool,
    existing_download_total: u16,
    no_active_worker: bool,
    from_service_worker: bool,
    /// `true`: a single `RequestInfo` (the first request) rather than a sequence.
    single: bool,
    small_download_total: Option<u16>,
    download_total: u64,
    id: UrlDesc,
    title: Option<String>,
    icons: Vec<(String, Option<String>)>,
    requests: Vec<RequestDesc>,
}

fn pick<T: Copy>(table: &[T], i: u8) -> T {
    table[usize::from(i) % table.len()]
}

fn text(d: &UrlDesc, table: &[&str]) -> String {
    match d {
        UrlDesc::Known(i) => pick(table, *i).to_owned(),
        UrlDesc::Raw(s) => s.clone(),
    }
}

fn make_body(b: &Body) -> RequestBody {
    match b {
        Body::Bytes(v) => RequestBody::Bytes(Bytes::from(v.clone())),
        Body::Stream(chunks) => {
            let items: Vec<Result<Bytes, DomError>> = chunks
                .iter()
                .map(|c| match c {
                    Ok(v) => Ok(Bytes::from(v.clone())),
                    Err(()) => Err(DomError::type_error("the stream errored")),
                })
                .collect();
            RequestBody::Stream(futures::stream::iter(items).boxed())
        }
    }
}

fn make_init(d: &InitDesc) -> RequestInit {
    RequestInit {
        method: d.method.map(|m| pick(&METHODS, m).to_owned()),
        headers: (!d.headers.is_empty()).then(|| {
            d.headers
                .iter()
                .map(|&(n, v)| {
                    (
                        pick(&HEADER_NAMES, n).to_owned(),
                        pick(&HEADER_VALUES, v).to_owned(),
                    )
                })
                .collect()
        }),
        body: d.body.as_ref().map(make_body),
        content_type: None,
        mode: d.mode.map(|m| {
            pick(
                &[
                    RequestMode::Cors,
                    RequestMode::NoCors,
                    RequestMode::SameOrigin,
                    RequestMode::Navigate,
                ],
                m,
            )
        }),
        credentials: d.credentials.map(|c| {
            pick(
                &[
                    CredentialsMode::Omit,
                    CredentialsMode::SameOrigin,
                    CredentialsMode::Include,
                ],
                c,
            )
        }),
        cache: d.cache.map(|c| {
            pick(
                &[
                    CacheMode::Default,
                    CacheMode::NoStore,
                    CacheMode::Reload,
                    CacheMode::NoCache,
                    CacheMode::ForceCache,
                    CacheMode::OnlyIfCached,
                ],
                c,
            )
        }),
        redirect: d.redirect.map(|r| {
            pick(
                &[
                    RedirectMode::Follow,
                    RedirectMode::Error,
                    RedirectMode::Manual,
                ],
                r,
            )
        }),
        integrity: d.integrity.clone(),
    }
}

/// What the script passes for one request: a URL string, or a `Request` object (when the
/// constructor accepts the init; a script whose `new Request()` throws never calls `fetch()`
/// with it, so the URL string stands in).
fn make_info(d: &RequestDesc, base: &url::Url) -> RequestInfo {
    let url = text(&d.url, &URLS);
    match &d.init {
        None => RequestInfo::from(url),
        Some(init) => match construct_request(url.as_str().into(), make_init(init), base) {
            Ok(r) => RequestInfo::from(r),
            Err(_) => RequestInfo::from(url),
        },
    }
}

/// The body as chunks (for the reference), `None` when it has none.
fn body_chunks(d: &RequestDesc, base: &url::Url) -> Option<Vec<Result<u64, ()>>> {
    let init = d.init.as_ref()?;
    let body = init.body.as_ref()?;
    // The body is used only if the constructor accepted the init.
    construct_request(text(&d.url, &URLS).as_str().into(), make_init(init), base).ok()?;
    Some(match body {
        Body::Bytes(v) => vec![Ok(v.len() as u64)],
        Body::Stream(chunks) => chunks
            .iter()
            .map(|c| c.as_ref().map(|v| v.len() as u64).map_err(|_| ()))
            .collect(),
    })
}

struct Surroundings {
    permission: PermissionState,
    active_worker: bool,
    taken_ids: Vec<String>,
    quota: Option<u64>,
    /// Bytes of the quota already used or reserved.
    used: u64,
}

/// The `fetch()` algorithm's verdict: `Ok(uploadTotal)` or the error kind.
fn reference(
    id: &str,
    requests: &[RequestDesc],
    download_total: u64,
    icon_srcs: &[&str],
    s: &Surroundings,
    base: &url::Url,
) -> Result<u64, DomErrorKind> {
    // 5. If requests is empty, reject with a TypeError.
    if requests.is_empty() {
        return Err(DomErrorKind::TypeError);
    }
    // 6. For each request: the Request constructor, then no-cors.
    for d in requests {
        match construct_request(make_info(d, base), RequestInit::default(), base) {
            Err(e) => return Err(e.kind),
            Ok(r) if r.request.mode == RequestMode::NoCors => {
                return Err(DomErrorKind::TypeError);
            }
            Ok(_) => {}
        }
    }
    // The icons: processing an ImageResource throws a TypeError for a src that does not
    // parse against the caller's base URL (spec-map.md: icons are processed in fetch()).
    if icon_srcs.iter().any(|src| base.join(src).is_err()) {
        return Err(DomErrorKind::TypeError);
    }
    // 8.2. Permission denied: NotAllowedError. 8.4. No active worker: TypeError. 8.5. The id is
    // taken: TypeError. (Checked before the bodies are read, and again after.)
    if s.permission == PermissionState::Denied {
        return Err(DomErrorKind::NotAllowedError);
    }
    if !s.active_worker || s.taken_ids.iter().any(|t| t == id) {
        return Err(DomErrorKind::TypeError);
    }
    // 8.8–8.11. The bodies, one after the other, chunk by chunk.
    let mut upload_total: u64 = 0;
    for d in requests {
        for chunk in body_chunks(d, base).unwrap_or_default() {
            match chunk {
                Err(()) => return Err(DomErrorKind::TypeError),
                Ok(0) => {}
                Ok(n) => {
                    if s.quota.is_some_and(|q| s.used + upload_total + n > q) {
                        return Err(DomErrorKind::QuotaExceededError);
                    }
                    upload_total += n;
                }
            }
        }
    }
    // Spec issue 110: downloadTotal must fit in what is left of the quota.
    if s.quota.is_some_and(|q| {
        s.used
            .saturating_add(upload_total)
            .saturating_add(download_total)
            > q
    }) {
        return Err(DomErrorKind::QuotaExceededError);
    }
    Ok(upload_total)
}

/// Runs the target on `data`.
pub fn run(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        check(input);
    }
}

fn check(input: Input) {
    if input.requests.len() > 6 {
        return;
    }
    let bed = TestBed::new();
    bed.set_online(false);
    let quota = pick(&QUOTAS, input.quota);
    bed.quota.set(quota);
    let caller = if input.from_service_worker {
        bed.service_worker()
    } else {
        bed.page()
    };
    // Relative URLs resolve against the caller's base URL (the page's, or the worker's).
    let base = caller.environment().base_url.clone();

    // An existing fetch, made before the surroundings change.
    let mut used = 0;
    let mut taken_ids = Vec::new();
    if input.existing {
        let total = u64::from(input.existing_download_total).min(quota.unwrap_or(u64::MAX));
        let m = bed.manager();
        let existing = bed.run(async move {
            m.fetch(
                "existing",
                "https://example.com/existing.bin",
                BackgroundFetchOptions {
                    download_total: total,
                    ..Default::default()
                },
            )
            .await
        });
        existing.expect("a plain fetch within the quota succeeds");
        used = total;
        taken_ids.push("existing".to_owned());
    }

    let permission = pick(
        &[
            PermissionState::Granted,
            PermissionState::Prompt,
            PermissionState::Denied,
        ],
        input.permission,
    );
    bed.permission.set(permission);
    // Whether the registration has an active worker: as the worker host tells the engine, and
    // as script sees it (`registration.active`).
    bed.worker
        .set_active(&bed.registration, !input.no_active_worker);
    let manager: BackgroundFetchManager =
        caller.background_fetch_with(&bed.registration, !input.no_active_worker);
    let surroundings = Surroundings {
        permission,
        active_worker: !input.no_active_worker,
        taken_ids,
        quota,
        used,
    };

    let id = text(&input.id, &IDS);
    let download_total = input
        .small_download_total
        .map_or(input.download_total, u64::from);
    let descs: Vec<RequestDesc> = if input.single {
        input.requests.iter().take(1).cloned().collect()
    } else {
        input.requests.clone()
    };
    let expected = if input.single && descs.is_empty() {
        None // nothing to pass as a single RequestInfo
    } else {
        let icon_srcs: Vec<&str> = input
            .icons
            .iter()
            .take(3)
            .map(|(s, _)| s.as_str())
            .collect();
        Some(reference(
            &id,
            &descs,
            download_total,
            &icon_srcs,
            &surroundings,
            &base,
        ))
    };
    let Some(expected) = expected else {
        return;
    };
    let requests: Requests = if input.single {
        Requests::One(make_info(&descs[0], &base))
    } else {
        Requests::Many(descs.iter().map(|d| make_info(d, &base)).collect())
    };
    let title = input.title.clone();
    let icons: Vec<ImageResource> = input
        .icons
        .iter()
        .take(3)
        .map(|(src, sizes)| ImageResource {
            src: src.clone(),
            sizes: sizes.clone(),
            r#type: None,
            label: None,
        })
        .collect();
    let before = bed.store.fetch_count();
    let id2 = id.clone();
    let got = bed.run(async move {
        manager
            .fetch(
                &id2,
                requests,
                BackgroundFetchOptions {
                    title,
                    icons: (!icons.is_empty()).then_some(icons),
                    download_total,
                    embedder_data: None,
                },
            )
            .await
    });
    bed.run_until_idle();

    let taken_now = match (&got, &expected) {
        (Ok(reg), Ok(upload_total)) => {
            assert_eq!(reg.id(), id, "the registration's id");
            assert_eq!(reg.upload_total(), *upload_total, "uploadTotal");
            assert_eq!(reg.download_total(), download_total, "downloadTotal");
            assert_eq!(reg.uploaded(), 0, "nothing uploaded while offline");
            assert_eq!(bed.store.fetch_count(), before + 1, "the fetch is stored");
            let reg2 = reg.clone();
            let records = bed
                .run(async move { reg2.match_all(None, Default::default()).await })
                .expect("matchAll() on a new fetch");
            assert_eq!(records.len(), descs.len(), "one record per request");
            for (record, d) in records.iter().zip(&descs) {
                let want = construct_request(make_info(d, &base), RequestInit::default(), &base)
                    .expect("the reference constructed it")
                    .request;
                let got = record.request();
                assert_eq!(
                    (&got.url, &got.method, &got.headers),
                    (&want.url, &want.method, &want.headers),
                    "record {}'s request",
                    record.index()
                );
            }
            let m = bed.manager();
            let id3 = id.clone();
            let (found, ids) = bed.run(async move { (m.get(&id3).await, m.get_ids().await) });
            if id.is_empty() {
                // get('') is a TypeError (WPT get.https.window.js; spec-map.md deviation 28).
                assert_eq!(
                    found.map(|_| ()).map_err(|e| e.kind),
                    Err(DomErrorKind::TypeError)
                );
            } else {
                assert_eq!(
                    found.ok().flatten().map(|r| r.uid()),
                    Some(reg.uid()),
                    "get(id) finds the new fetch"
                );
            }
            assert!(
                ids.expect("getIds()").contains(&id),
                "getIds() lists the new fetch's id"
            );
            upload_total.saturating_add(download_total)
        }
        (Err(e), Err(kind)) => {
            assert_eq!(
                e.kind, *kind,
                "fetch() rejected with {e} where the reference expects {kind:?}; input {input:?}"
            );
            assert!(!e.message.is_empty(), "an exception has a message");
            assert_eq!(
                bed.store.fetch_count(),
                before,
                "a rejected fetch() stores nothing"
            );
            0
        }
        (got, expected) => panic!(
            "fetch() gave {:?} where the reference expects {:?}; input {input:?}",
            got.as_ref().map(|r| r.id()).map_err(|e| e.to_string()),
            expected
        ),
    };

    // What is left of the quota can be reserved, to the byte.
    if let Some(q) = quota
        && permission != PermissionState::Denied
        && !input.no_active_worker
    {
        let left = q - (surroundings.used + taken_now).min(q);
        // Ids that neither the input's fetch nor the existing one has.
        let probes = [
            (format!("{id}#probe-over"), left + 1, false),
            (format!("{id}#probe"), left, true),
        ];
        for (probe_id, total, fits) in probes {
            let m = bed.manager();
            let r = bed.run(async move {
                m.fetch(
                    &probe_id,
                    "https://example.com/probe.bin",
                    BackgroundFetchOptions {
                        download_total: total,
                        ..Default::default()
                    },
                )
                .await
            });
            match r {
                Ok(_) => assert!(
                    fits,
                    "{total} bytes could be reserved with {left} left of the quota ({input:?})"
                ),
                Err(e) => assert!(
                    !fits && e.kind == DomErrorKind::QuotaExceededError,
                    "reserving the {left} bytes left of the quota failed: {e} ({input:?})"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(requests: Vec<RequestDesc>) -> Input {
        Input {
            quota: 0,
            permission: 0,
            existing: true,
            existing_download_total: 100,
            no_active_worker: false,
            from_service_worker: false,
            single: false,
            small_download_total: Some(10),
            download_total: 0,
            id: UrlDesc::Known(1),
            title: None,
            icons: Vec::new(),
            requests,
        }
    }

    fn post(body: Body) -> RequestDesc {
        RequestDesc {
            url: UrlDesc::Known(0),
            init: Some(InitDesc {
                method: Some(1),
                headers: Vec::new(),
                body: Some(body),
                mode: None,
                credentials: None,
                cache: None,
                redirect: None,
                integrity: None,
            }),
        }
    }

    /// The oracle's quota probe: a body stream that errors after storing bytes must give them
    /// back (checked by reserving exactly what is left).
    #[test]
    fn a_stream_that_errors_after_some_bytes_holds_no_quota() {
        check(input(vec![post(Body::Stream(vec![
            Ok(vec![1; 300]),
            Ok(vec![2; 200]),
            Err(()),
        ]))]));
    }

    #[test]
    fn bodies_past_the_quota_are_a_quota_exceeded_error() {
        check(input(vec![
            post(Body::Bytes(vec![1; 500])),
            post(Body::Stream(vec![Ok(vec![2; 300]), Ok(vec![3; 300])])),
        ]));
    }

    #[test]
    fn a_success_takes_exactly_its_bodies_and_download_total() {
        check(input(vec![
            post(Body::Bytes(vec![1; 50])),
            RequestDesc {
                url: UrlDesc::Known(1),
                init: None,
            },
        ]));
    }
}
