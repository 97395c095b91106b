//! Every protocol message round-trips through postcard, the non-self-describing format
//! `ipc-channel` uses (and through JSON, which the redb store writes its rows in).

use background_fetch::service::protocol::*;
use background_fetch::store::{ExportMode, Exported};
use background_fetch::{
    BackgroundFetchFailureReason, BackgroundFetchOptions, BackgroundFetchResult,
    BackgroundFetchUiOptions, CacheQueryOptions, DispatchOutcome, DomError, FetchUid,
    FunctionalEventKind, HeaderList, ImageResource, PolicyContainer, RecordResult, Request,
    ResponseHead, ResponseType, ServiceWorkerRegistrationId,
};
use bytes::Bytes;
use proptest::prelude::*;
use url::Url;

fn url() -> impl Strategy<Value = Url> {
    (
        "[a-z]{1,8}",
        "[a-z0-9/]{0,12}",
        prop::option::of("[a-z=]{1,6}"),
    )
        .prop_map(|(h, p, q)| {
            let mut u = Url::parse(&format!("https://{h}.example/{p}")).unwrap();
            u.set_query(q.as_deref());
            u
        })
}

fn headers() -> impl Strategy<Value = HeaderList> {
    prop::collection::vec(
        ("[a-z-]{1,10}", prop::collection::vec(any::<u8>(), 0..12)),
        0..4,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn request() -> impl Strategy<Value = Request> {
    (
        url(),
        "[A-Z]{3,6}",
        headers(),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(u, method, headers, body_length)| {
            let mut r = Request::get(u);
            r.method = method;
            r.headers = headers;
            r.body_length = body_length;
            r
        })
}

fn head() -> impl Strategy<Value = ResponseHead> {
    (
        any::<u16>(),
        ".{0,8}",
        headers(),
        prop::collection::vec(url(), 0..3),
        headers(),
    )
        .prop_map(
            |(status, status_text, headers, url_list, resume_headers)| ResponseHead {
                status,
                status_text,
                headers,
                url_list,
                response_type: ResponseType::Cors,
                resume_headers,
            },
        )
}

fn registration() -> impl Strategy<Value = ServiceWorkerRegistrationId> {
    url().prop_map(|u| ServiceWorkerRegistrationId::for_scope(&u))
}

fn error() -> impl Strategy<Value = DomError> {
    prop_oneof![
        ".{0,20}".prop_map(DomError::type_error),
        ".{0,20}".prop_map(DomError::abort),
        ".{0,20}".prop_map(DomError::invalid_state),
        ".{0,20}".prop_map(DomError::quota_exceeded),
    ]
}

fn data() -> impl Strategy<Value = RegistrationData> {
    (
        registration(),
        ".{0,10}",
        any::<[u64; 4]>(),
        any::<bool>(),
        0..3u8,
    )
        .prop_map(
            |(registration, id, n, records_available, r)| RegistrationData {
                uid: FetchUid(n[0] % 1000),
                registration,
                id,
                upload_total: n[1],
                uploaded: n[1] / 2,
                download_total: n[2],
                downloaded: n[3],
                result: [
                    BackgroundFetchResult::Empty,
                    BackgroundFetchResult::Success,
                    BackgroundFetchResult::Failure,
                ][r as usize],
                failure_reason: [
                    BackgroundFetchFailureReason::Empty,
                    BackgroundFetchFailureReason::Aborted,
                    BackgroundFetchFailureReason::DownloadTotalExceeded,
                ][r as usize],
                records_available,
                revision: n[0] / 1000,
            },
        )
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (
            registration(),
            ".{0,10}",
            prop::collection::vec(
                (
                    request(),
                    prop_oneof![
                        Just(None),
                        Just(Some(BodyData::Streamed)),
                        prop::collection::vec(any::<u8>(), 0..16)
                            .prop_map(|b| Some(BodyData::Bytes(Bytes::from(b)))),
                    ]
                ),
                0..3
            ),
            prop::option::of(".{0,10}"),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(
                |(registration, id, requests, title, download_total, active_worker)| {
                    Call::Fetch {
                        registration,
                        id,
                        requests: requests
                            .into_iter()
                            .map(|(request, body)| FetchRequestData { request, body })
                            .collect(),
                        options: BackgroundFetchOptions {
                            title,
                            download_total,
                            icons: Some(vec![ImageResource {
                                src: "https://a.example/i.png".into(),
                                ..Default::default()
                            }]),
                            embedder_data: None,
                        },
                        active_worker,
                    }
                }
            ),
        (registration(), ".{0,10}").prop_map(|(registration, id)| Call::Get { registration, id }),
        registration().prop_map(|registration| Call::GetIds { registration }),
        any::<u64>().prop_map(|n| Call::Abort { fetch: FetchUid(n) }),
        (
            any::<u64>(),
            prop::option::of(request()),
            any::<[bool; 3]>()
        )
            .prop_map(|(n, request, o)| Call::MatchAll {
                fetch: FetchUid(n),
                request,
                options: CacheQueryOptions {
                    ignore_search: o[0],
                    ignore_method: o[1],
                    ignore_vary: o[2],
                },
            }),
        any::<u64>().prop_map(|n| Call::ResponseReady {
            record: RecordId(n)
        }),
        any::<u64>().prop_map(|n| Call::ReadRequestBody {
            record: RecordId(n)
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(b, offset)| Call::ReadBody {
            body: BodyId(b),
            offset
        }),
        any::<u64>().prop_map(|n| Call::RecordState {
            record: RecordId(n)
        }),
        (any::<u64>(), "[a-z/]{0,12}", any::<bool>()).prop_map(|(n, path, copy)| {
            Call::ExportBody {
                record: RecordId(n),
                destination: path.into(),
                mode: if copy {
                    ExportMode::Copy
                } else {
                    ExportMode::Move
                },
            }
        }),
        (any::<u64>(), prop::option::of(".{0,10}")).prop_map(|(e, title)| Call::UpdateUi {
            event: EventToken(e),
            options: BackgroundFetchUiOptions { title, icons: None },
        }),
    ]
}

fn to_service() -> impl Strategy<Value = ToService> {
    prop_oneof![
        (
            any::<u32>(),
            url(),
            prop::option::of(registration()),
            any::<bool>()
        )
            .prop_map(|(version, base_url, sw, secure_context)| ToService::Hello {
                version,
                environment: EnvironmentData {
                    kind: match sw {
                        Some(r) => EnvironmentKindData::ServiceWorker(r),
                        None => EnvironmentKindData::Window,
                    },
                    base_url,
                    secure_context,
                    policy: PolicyContainer {
                        csp: vec!["connect-src 'self'".into()],
                        referrer_policy: String::new(),
                        csp_report_only: vec!["default-src 'none'".into()],
                    },
                    embedder: Some(vec![1, 2, 3]),
                },
            }),
        (any::<u64>(), call()).prop_map(|(c, call_data)| ToService::Call {
            call: CallId(c),
            call_data
        }),
        (
            any::<u64>(),
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| Ok(Some(Bytes::from(b)))),
                Just(Ok(None)),
                error().prop_map(Err),
            ]
        )
            .prop_map(|(c, record, chunk)| ToService::UploadChunk {
                call: CallId(c),
                record,
                chunk
            }),
        (
            prop::collection::vec(any::<u64>(), 0..3),
            prop::collection::vec(any::<u64>(), 0..3)
        )
            .prop_map(|(r, b)| ToService::Release {
                records: r.into_iter().map(RecordId).collect(),
                bodies: b.into_iter().map(BodyId).collect(),
            }),
        (any::<u64>(), 0..3u8).prop_map(|(e, o)| ToService::EventDone {
            event: EventToken(e),
            outcome: match o {
                0 => DispatchOutcome::Completed,
                1 => DispatchOutcome::Skipped,
                _ => DispatchOutcome::Failed("boom".into()),
            },
        }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        data().prop_map(Reply::Registration),
        prop::option::of(data()).prop_map(Reply::MaybeRegistration),
        prop::collection::vec(".{0,6}", 0..3).prop_map(Reply::Ids),
        any::<bool>().prop_map(Reply::Aborted),
        prop::collection::vec((any::<u64>(), any::<usize>(), request()), 0..3).prop_map(|v| {
            Reply::Records(
                v.into_iter()
                    .map(|(r, index, request)| RecordData {
                        record: RecordId(r),
                        index,
                        request,
                    })
                    .collect(),
            )
        }),
        (head(), any::<u64>()).prop_map(|(head, b)| Reply::Response {
            head,
            body: BodyId(b)
        }),
        prop::option::of(any::<u64>()).prop_map(|b| Reply::Body(b.map(BodyId))),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|b| Reply::Chunk(b.map(Bytes::from))),
        Just(Reply::Done),
        (0..8u8, prop::option::of(head()), any::<u64>()).prop_map(|(r, response_head, n)| {
            Reply::RecordState(RecordStateData {
                result: [
                    RecordResult::Empty,
                    RecordResult::Success,
                    RecordResult::Redundant,
                    RecordResult::Aborted,
                    RecordResult::BadStatus,
                    RecordResult::FetchError,
                    RecordResult::QuotaExceeded,
                    RecordResult::DownloadTotalExceeded,
                ][r as usize],
                response_head,
                stored_bytes: n,
            })
        }),
        (0..4u8).prop_map(|e| Reply::Exported(
            [
                Exported::Linked,
                Exported::Reflinked,
                Exported::Copied,
                Exported::Streamed
            ][e as usize]
        )),
    ]
}

fn to_script() -> impl Strategy<Value = ToScript> {
    prop_oneof![
        prop_oneof![any::<u32>().prop_map(Ok), error().prop_map(Err)].prop_map(ToScript::Welcome),
        (
            any::<u64>(),
            prop_oneof![reply().prop_map(Ok), error().prop_map(Err)]
        )
            .prop_map(|(c, result)| ToScript::Reply {
                call: CallId(c),
                result
            }),
        (data(), any::<bool>()).prop_map(|(data, progress)| ToScript::Update { data, progress }),
        (any::<u64>(), 0..4u8, data()).prop_map(|(e, k, registration)| ToScript::Event {
            event: EventToken(e),
            kind: [
                FunctionalEventKind::Success,
                FunctionalEventKind::Fail,
                FunctionalEventKind::Abort,
                FunctionalEventKind::Click,
            ][k as usize],
            registration,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn messages_to_the_service_round_trip(m in to_service()) {
        let bytes = postcard::to_stdvec(&m).unwrap();
        prop_assert_eq!(postcard::from_bytes::<ToService>(&bytes).unwrap(), m.clone());
        let json = serde_json::to_vec(&m).unwrap();
        prop_assert_eq!(serde_json::from_slice::<ToService>(&json).unwrap(), m);
    }

    #[test]
    fn messages_to_script_round_trip(m in to_script()) {
        let bytes = postcard::to_stdvec(&m).unwrap();
        prop_assert_eq!(postcard::from_bytes::<ToScript>(&bytes).unwrap(), m.clone());
        let json = serde_json::to_vec(&m).unwrap();
        prop_assert_eq!(serde_json::from_slice::<ToScript>(&json).unwrap(), m);
    }
}

/// The redb store wrote response heads without `resume_headers` when they were empty; such a
/// row still reads (the field defaults to empty).
#[test]
fn a_response_head_written_without_resume_headers_still_reads() {
    let json = r#"{"status":200,"status_text":"","headers":{"entries":[]},"url_list":[],"response_type":"Basic"}"#;
    let head: ResponseHead = serde_json::from_str(json).unwrap();
    assert!(head.resume_headers.is_empty());
}

/// A response head whose `resume_headers` are empty (every same-origin response) crosses the
/// protocol: the field was skipped when empty, which a non-self-describing format cannot read
/// back (the reader cannot tell it is missing).
#[test]
fn a_response_head_without_resume_headers_crosses_the_protocol() {
    let m = ToScript::Reply {
        call: CallId(7),
        result: Ok(Reply::Response {
            head: ResponseHead {
                status: 200,
                status_text: "OK".into(),
                headers: [("content-type", "text/plain")].into_iter().collect(),
                url_list: vec![Url::parse("https://a.example/x").unwrap()],
                response_type: ResponseType::Basic,
                resume_headers: HeaderList::new(),
            },
            body: BodyId(300),
        }),
    };
    let bytes = postcard::to_stdvec(&m).unwrap();
    assert_eq!(postcard::from_bytes::<ToScript>(&bytes).unwrap(), m);
}
