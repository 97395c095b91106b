//! The embedder's operations (the user's pause, resume, abort, click and permission answer)
//! say why they did nothing, and a change the store refuses reaches the caller and the UI,
//! never only a log line (issue 13: "engine operations return `Result`s with reasons, not bare
//! `bool`s; store failures that change what script sees reach script or the UI").

use background_fetch::testing::{Fault, Resource, TestBed, UiCall};
use background_fetch::{
    BackgroundFetchUiOptions, DispatchOutcome, FetchUid, OperationError, StoreErrorKind,
    StoredChange,
};
use futures::FutureExt;

const A: &str = "https://example.com/a.bin";

fn storage_failures(bed: &TestBed, uid: FetchUid) -> Vec<StoredChange> {
    bed.ui
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            UiCall::StorageFailed(f) if f.uid == uid => Some(f.change),
            _ => None,
        })
        .collect()
}

/// A fetch whose only record is held before its response, so it stays running.
fn running(bed: &TestBed) -> FetchUid {
    bed.network.serve(A, Resource::ok(vec![7u8; 1000]));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("f", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    reg.uid()
}

#[test]
fn operations_say_why_they_did_nothing() {
    let bed = TestBed::new();
    let engine = bed.engine();
    let unknown = FetchUid(987_654);
    let e = engine.clone();
    assert_eq!(
        bed.run(async move { e.pause(unknown).await }),
        Err(OperationError::UnknownFetch)
    );
    let e = engine.clone();
    assert_eq!(
        bed.run(async move { e.user_abort(unknown).await }),
        Err(OperationError::UnknownFetch)
    );
    let e = engine.clone();
    assert_eq!(
        bed.run(async move { e.click(unknown).await }),
        Err(OperationError::UnknownFetch)
    );

    let uid = running(&bed);
    let e = engine.clone();
    assert_eq!(
        bed.run(async move { e.resume(uid).await }),
        Err(OperationError::NotPaused)
    );
    let e = engine.clone();
    assert_eq!(
        bed.run(async move { e.permission_decision(uid, true).await }),
        Err(OperationError::NotAwaitingPermission)
    );
    let e = engine.clone();
    assert_eq!(bed.run(async move { e.pause(uid).await }), Ok(()));
    let e = engine.clone();
    assert_eq!(
        bed.run(async move { e.pause(uid).await }),
        Err(OperationError::AlreadyPaused)
    );
    let e = engine.clone();
    assert_eq!(bed.run(async move { e.user_abort(uid).await }), Ok(()));
    bed.run_until_idle();
    let e = engine.clone();
    assert_eq!(
        bed.run(async move { e.resume(uid).await }),
        Err(OperationError::Settled)
    );
    let e = engine.clone();
    assert_eq!(
        bed.run(async move { e.user_abort(uid).await }),
        Err(OperationError::Settled)
    );
}

#[test]
fn pause_is_not_offered_for_an_upload() {
    let bed = TestBed::new();
    bed.network
        .serve("https://example.com/up", Resource::echo());
    bed.network
        .fault_next("https://example.com/up", vec![Fault::Hold]);
    let r = bed.request_with_body("/up", "POST", "data");
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("up", r, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    let uid = reg.uid();
    let e = bed.engine();
    assert_eq!(
        bed.run(async move { e.pause(uid).await }),
        Err(OperationError::NotOffered)
    );
}

/// A pause the store refuses holds in this process (the fetch is paused now) but a restart
/// would forget it: the caller is told, and so is the UI.
#[test]
fn a_pause_the_store_refuses_is_reported_not_durable() {
    let bed = TestBed::new();
    let uid = running(&bed);
    bed.store.inject_failures(StoreErrorKind::Io, 0, 1);
    let e = bed.engine();
    let r = bed.run(async move { e.pause(uid).await });
    match r {
        Err(OperationError::NotDurable(e)) => assert_eq!(e.kind, StoreErrorKind::Io),
        other => panic!("{other:?}"),
    }
    assert!(bed.ui.last(uid).unwrap().paused, "paused in this process");
    assert_eq!(storage_failures(&bed, uid), vec![StoredChange::Flags]);
}

/// `abort()` resolves true when it removed the fetch (the spec has no failure there), but a
/// store that refuses the abort flag is reported to the UI: a restart would bring the fetch
/// back.
#[test]
fn an_abort_from_script_the_store_refuses_reaches_the_ui() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(vec![7u8; 1000]));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("f", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    let uid = reg.uid();
    bed.store.inject_failures(StoreErrorKind::Io, 0, 1);
    let r = reg.clone();
    assert_eq!(bed.run(async move { r.abort().await }), Ok(true));
    assert_eq!(storage_failures(&bed, uid), vec![StoredChange::Flags]);
}

/// `updateUI()` changed the title in this process; the store refused it: the UI hears so.
#[test]
fn an_update_ui_the_store_refuses_reaches_the_ui() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::ok(&b"x"[..]));
    let store = bed.store.clone();
    bed.worker.set_handler(move |e| {
        let store = store.clone();
        async move {
            store.inject_failures(StoreErrorKind::Io, 0, 1);
            let r = e
                .update_ui(BackgroundFetchUiOptions {
                    title: Some("New title".into()),
                    icons: None,
                })
                .await;
            assert!(r.is_ok(), "{r:?}");
            DispatchOutcome::Completed
        }
        .boxed()
    });
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("ui", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    let uid = reg.uid();
    assert_eq!(bed.ui.last(uid).unwrap().title, "New title");
    assert!(
        storage_failures(&bed, uid).contains(&StoredChange::Ui),
        "{:?}",
        bed.ui.calls()
    );
}

/// The result could not be stored: the fetch settled in this process (its event fires) but
/// a restart would run it again; the UI hears so.
#[test]
fn a_result_the_store_refuses_reaches_the_ui() {
    let bed = TestBed::new();
    bed.network.serve(A, Resource::status(404, &b"gone"[..]));
    bed.network.fault_next(A, vec![Fault::Hold]);
    let m = bed.manager();
    let reg = bed
        .run(async move { m.fetch("f", A, Default::default()).await })
        .unwrap();
    bed.run_until_idle();
    let uid = reg.uid();
    bed.store.inject_failures(StoreErrorKind::Io, 0, 1000);
    bed.network.release(A);
    bed.run_until_idle();
    assert_eq!(
        bed.ui.last(uid).unwrap().result,
        background_fetch::BackgroundFetchResult::Failure,
        "settled in this process"
    );
    assert!(
        storage_failures(&bed, uid).contains(&StoredChange::Result),
        "{:?}",
        bed.ui.calls()
    );
}
