//! `request_matching`: `match()` and `matchAll()` with arbitrary queries and
//! `CacheQueryOptions`, against a naive reference of Service Workers' "request matches cached
//! item" that works on serialised URL strings and raw header lists.
//!
//! Each input makes one background fetch on a [`TestBed`] (1 to 5 records: URLs with and
//! without queries and fragments, `GET` or a method with a body, request headers, responses
//! with `Vary` headers of every shape), lets it run with some records still waiting for their
//! response (so that the reference also meets records whose response is null), and then asks
//! up to 8 queries. Each query must give exactly the records the reference gives, in request
//! order (`match()`: the first of them, or `None`), or the same exception. Script (the page)
//! reaches the engine through the test bed's service and protocol.

use crate::reference::combined;
use arbitrary::{Arbitrary, Unstructured};
use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{
    BackgroundFetchOptions, CacheQueryOptions, Request, RequestInfo, RequestInit, ResponseHead,
    construct_request,
};

const PATHS: [&str; 10] = [
    "/a", "/a?x=1", "/a?x=2", "/a#f", "/a?x=1#g", "/b", "/A", "/a/", "/a?", "/a?x=1&y",
];
const HEADER_NAMES: [&str; 4] = ["accept", "x-custom", "Accept-Language", "X-Custom"];
const HEADER_VALUES: [&str; 5] = ["", "a", "b", "a, b", " a "];
const VARY: [&str; 11] = [
    "accept",
    "Accept",
    "x-custom",
    "accept, x-custom",
    "*",
    "",
    " , accept",
    "accept,*",
    "x-none",
    "X-CUSTOM ,\taccept-language",
    "accept\u{a0}",
];
const METHODS: [&str; 3] = ["POST", "PUT", "DELETE"];
const QUERY_METHODS: [&str; 5] = ["GET", "POST", "HEAD", "PUT", "get"];

#[derive(Arbitrary, Debug)]
struct RecordSpec {
    path: u8,
    /// `None`: GET; otherwise a method with a body.
    method: Option<u8>,
    headers: Vec<(u8, u8)>,
    vary: Vec<u8>,
    held: bool,
}

#[derive(Arbitrary, Debug)]
enum QueryUrl {
    Path(u8),
    Relative(u8),
    OtherOrigin(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Query {
    /// `None`: `matchAll()` with no request.
    url: Option<QueryUrl>,
    /// `Some`: a `Request` object with this method and headers; `None`: a URL string.
    request: Option<(u8, Vec<(u8, u8)>)>,
    ignore_search: bool,
    ignore_method: bool,
    ignore_vary: bool,
    first_only: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    records: Vec<RecordSpec>,
    queries: Vec<Query>,
}

fn pick<T: Copy>(table: &[T], i: u8) -> T {
    table[usize::from(i) % table.len()]
}

fn url_of(path: u8) -> String {
    format!("https://example.com{}", pick(&PATHS, path))
}

fn headers_init(headers: &[(u8, u8)]) -> Vec<(String, String)> {
    headers
        .iter()
        .take(4)
        .map(|&(n, v)| {
            (
                pick(&HEADER_NAMES, n).to_owned(),
                pick(&HEADER_VALUES, v).to_owned(),
            )
        })
        .collect()
}

/// Runs the target on `data`.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    if input.records.is_empty() || input.records.len() > 5 || input.queries.len() > 8 {
        return;
    }
    let bed = TestBed::new();
    let any_held = input.records.iter().any(|r| r.held);
    let last = input.records.len() - 1;
    let mut requests = Vec::new();
    for (i, spec) in input.records.iter().enumerate() {
        let url = url_of(spec.path);
        let mut resource = Resource::ok(format!("body of {url}"));
        for &v in spec.vary.iter().take(2) {
            resource = resource.header("vary", pick(&VARY, v));
        }
        bed.network.serve(&url, resource);
        // Keep the fetch active (its records available) while the queries run.
        if spec.held || (!any_held && i == last) {
            bed.network.fault_next(&url, vec![Fault::Hold]);
        }
        let init = RequestInit {
            method: spec.method.map(|m| pick(&METHODS, m).to_owned()),
            body: spec.method.map(|_| "payload".into()),
            headers: Some(headers_init(&spec.headers)),
            ..Default::default()
        };
        match construct_request(
            url.as_str().into(),
            init,
            &bed.page().environment().base_url,
        ) {
            Ok(r) => requests.push(RequestInfo::from(r)),
            Err(_) => return,
        }
    }
    let manager = bed.manager();
    let registration = bed.run(async move {
        manager
            .fetch("matching", requests, BackgroundFetchOptions::default())
            .await
    });
    let Ok(registration) = registration else {
        return;
    };
    bed.run_until_idle();

    // The records as they stand: the reference's input.
    let reg = registration.clone();
    let records = bed
        .run(async move { reg.match_all(None, CacheQueryOptions::default()).await })
        .expect("matchAll() with no request while the fetch is active");
    assert_eq!(
        records.len(),
        input.records.len(),
        "matchAll() with no request returns every record"
    );
    let snapshot: Vec<(Request, Option<ResponseHead>)> = bed.run({
        let records = records.clone();
        async move {
            let mut snapshot = Vec::new();
            for r in records {
                let state = r
                    .state()
                    .await
                    .expect("the state of a record matchAll() gave");
                snapshot.push((r.request().clone(), state.response_head));
            }
            snapshot
        }
    });
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.index(), i, "records come in request order");
    }

    let base = bed.page().environment().base_url.clone();
    for (qi, query) in input.queries.iter().enumerate() {
        let options = CacheQueryOptions {
            ignore_search: query.ignore_search,
            ignore_method: query.ignore_method,
            ignore_vary: query.ignore_vary,
        };
        let Some(url) = &query.url else {
            let reg = registration.clone();
            let all = bed.run(async move { reg.match_all(None, options).await });
            assert_eq!(
                all.map(|v| v.len()).ok(),
                Some(snapshot.len()),
                "query {qi}: matchAll() with no request returns every record, whatever the options"
            );
            continue;
        };
        let url = match url {
            QueryUrl::Path(p) => url_of(*p),
            QueryUrl::Relative(p) => pick(&PATHS, *p).trim_start_matches('/').to_owned(),
            QueryUrl::OtherOrigin(p) => format!("https://other.example{}", pick(&PATHS, *p)),
            QueryUrl::Raw(s) => s.clone(),
        };
        let make = || -> RequestInfo {
            match &query.request {
                None => RequestInfo::from(url.as_str()),
                Some((method, headers)) => {
                    let init = RequestInit {
                        method: Some(pick(&QUERY_METHODS, *method).to_owned()),
                        headers: Some(headers_init(headers)),
                        ..Default::default()
                    };
                    match construct_request(url.as_str().into(), init, &base) {
                        Ok(r) => RequestInfo::from(r),
                        // The constructor throws: match() gets the URL string and throws too.
                        Err(_) => RequestInfo::from(url.as_str()),
                    }
                }
            }
        };
        // The query as "request matches cached item" sees it (or the exception).
        let expected = construct_request(make(), RequestInit::default(), &base).map(|q| {
            reference_match_all(&q.request, &snapshot, options)
                .into_iter()
                .collect::<Vec<_>>()
        });
        let reg = registration.clone();
        let info = make();
        let first_only = query.first_only;
        let got = bed.run(async move {
            if first_only {
                reg.r#match(info, options)
                    .await
                    .map(|r| r.into_iter().map(|r| r.index()).collect::<Vec<_>>())
            } else {
                reg.match_all(Some(info), options)
                    .await
                    .map(|v| v.iter().map(|r| r.index()).collect())
            }
        });
        match (got, expected) {
            (Ok(got), Ok(mut want)) => {
                if first_only {
                    want.truncate(1);
                }
                assert_eq!(
                    got,
                    want,
                    "query {qi} ({query:?}, url {url:?}, options {options:?}) over {:?}",
                    describe(&snapshot)
                );
            }
            (Err(got), Err(want)) => assert_eq!(got.name(), want.name(), "query {qi}"),
            (got, want) => panic!(
                "query {qi} ({query:?}, url {url:?}): got {:?}, the reference {:?}",
                got.map_err(|e| e.to_string()),
                want.map_err(|e| e.to_string())
            ),
        }
    }
}

fn describe(snapshot: &[(Request, Option<ResponseHead>)]) -> Vec<String> {
    snapshot
        .iter()
        .map(|(req, resp)| {
            format!(
                "{} {} {:?} vary={:?}",
                req.method,
                req.url,
                req.headers,
                resp.as_ref()
                    .map(|r| r.headers.get_str("vary"))
                    .unwrap_or(Some("(no response)".into()))
            )
        })
        .collect()
}

/// matchAll's loop: the records whose request matches, in order. A non-`GET` query matches
/// nothing unless `ignoreMethod` is set (as `Cache.matchAll()`, see spec-map.md).
fn reference_match_all(
    query: &Request,
    records: &[(Request, Option<ResponseHead>)],
    options: CacheQueryOptions,
) -> Vec<usize> {
    if !options.ignore_method && query.method != "GET" {
        return Vec::new();
    }
    records
        .iter()
        .enumerate()
        .filter(|(_, (request, response))| {
            reference_matches(query, request, response.as_ref(), options)
        })
        .map(|(i, _)| i)
        .collect()
}

/// The URL string with its fragment, and with `drop_query` its query, cut off.
fn url_string(url: &url::Url, drop_query: bool) -> String {
    let s = url.as_str();
    let s = s.split('#').next().unwrap_or(s);
    if drop_query {
        s.split('?').next().unwrap_or(s).to_owned()
    } else {
        s.to_owned()
    }
}

/// Service Workers' "request matches cached item", naively.
fn reference_matches(
    query: &Request,
    request: &Request,
    response: Option<&ResponseHead>,
    options: CacheQueryOptions,
) -> bool {
    // 1. A non-GET cached request matches only with ignoreMethod.
    if !options.ignore_method && request.method != "GET" {
        return false;
    }
    // 2.–5. The URLs, without fragments (and without queries with ignoreSearch), are equal.
    if url_string(&query.url, options.ignore_search)
        != url_string(&request.url, options.ignore_search)
    {
        return false;
    }
    // 6. No response, ignoreVary, or no Vary header: a match.
    let Some(response) = response else {
        return true;
    };
    if options.ignore_vary {
        return true;
    }
    let Some(vary) = combined(&response.headers, "vary") else {
        return true;
    };
    // 7.–8. Every field name of Vary must have the same combined value in both requests; `*`
    //       never matches.
    for field in vary.split(|&b| b == b',') {
        let start = field.iter().position(|&b| b != b' ' && b != b'\t');
        let Some(start) = start else {
            continue; // an empty member
        };
        let end = field
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .unwrap()
            + 1;
        let field = &field[start..end];
        if field == b"*" {
            return false;
        }
        let name = String::from_utf8_lossy(field);
        if combined(&request.headers, &name) != combined(&query.headers, &name) {
            return false;
        }
    }
    // 9. A match.
    true
}
