//! Properties that must hold whatever the chunking and the interruptions.

use background_fetch::testing::{Fault, Resource, TestBed};
use background_fetch::{BackgroundFetchResult, NetworkErrorKind, RequestInfo};
use proptest::prelude::*;

const URL: &str = "https://example.com/big.bin";

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| ((i * 7919) as u8) ^ seed).collect()
}

#[derive(Clone, Debug)]
enum Interruption {
    /// The connection resets after this many bytes of the attempt.
    Reset(u64),
    /// The server ignores Range (answers 200 from byte 0), then resets after this many bytes.
    Restart(u64),
    /// The response is a temporary network error.
    Unavailable,
    /// The network goes offline after this many bytes, then comes back.
    Offline(u64),
}

fn interruption() -> impl Strategy<Value = Interruption> {
    prop_oneof![
        (0u64..30_000).prop_map(Interruption::Reset),
        (0u64..30_000).prop_map(Interruption::Restart),
        Just(Interruption::Unavailable),
        (0u64..30_000).prop_map(Interruption::Offline),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any split of a body into chunks, interrupted and resumed at any offset (with Range, a
    /// restart from scratch, an unavailable resource or the network going offline), stores the
    /// same bytes.
    #[test]
    fn any_chunking_and_interruptions_store_the_same_bytes(
        len in 0usize..30_000,
        chunk in 1usize..7000,
        seed in any::<u8>(),
        range_support in any::<bool>(),
        interruptions in proptest::collection::vec(interruption(), 0..6),
    ) {
        let bed = TestBed::new();
        let data = body(len, seed);
        let mut resource = Resource::ok(data.clone()).chunk_size(chunk).header("etag", "\"fixed\"");
        if !range_support {
            resource = resource.no_range();
        }
        bed.network.serve(URL, resource);
        let mut offline_after = Vec::new();
        for i in &interruptions {
            match i {
                Interruption::Reset(n) => bed.network.fault_next(URL, vec![Fault::ResetAfter(*n)]),
                Interruption::Restart(n) => bed.network.fault_next(URL, vec![Fault::IgnoreRange, Fault::ResetAfter(*n)]),
                Interruption::Unavailable => bed.network.fault_next(URL, vec![Fault::ErrorBeforeHead(NetworkErrorKind::Temporary)]),
                Interruption::Offline(n) => {
                    bed.network.fault_next(URL, vec![Fault::Hold]);
                    offline_after.push(*n);
                }
            }
        }
        // Read the record inside the event, as a service worker would.
        let got: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>> = Default::default();
        let g = got.clone();
        bed.worker.set_handler(move |e| {
            let g = g.clone();
            Box::pin(async move {
                let rec = e.registration().match_all(None, Default::default()).await.unwrap().remove(0);
                *g.lock().unwrap() = Some(rec.response_ready().await.unwrap().bytes().await.unwrap());
                background_fetch::DispatchOutcome::Completed
            })
        });
        let m = bed.manager();
        let reg = bed.run(async move { m.fetch("p", RequestInfo::from(URL), Default::default()).await }).unwrap();
        // Offline interruptions: the attempt is held; the network goes away and comes back.
        for _ in offline_after {
            bed.run_until_idle();
            bed.set_online(false);
            bed.run_until_idle();
            bed.network.release(URL);
            bed.set_online(true);
        }
        bed.run_until_idle();
        prop_assert_eq!(reg.result(), BackgroundFetchResult::Success);
        let got = got.lock().unwrap().take().expect("the success event read the record");
        prop_assert!(got == data, "stored {} bytes, expected {}", got.len(), data.len());
        prop_assert_eq!(reg.downloaded(), len as u64);
    }
}
