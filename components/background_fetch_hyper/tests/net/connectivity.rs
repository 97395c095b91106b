//! The online/offline signal.

use crate::errors::ScriptedResolver;
use crate::support::*;
use background_fetch::NetworkErrorKind;
use background_fetch_hyper::ResolveErrorKind;
use futures::StreamExt;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn when_destinations_known_to_work_fail_too_the_host_goes_offline_until_a_probe_succeeds() {
    let server = TestServer::http(|_| Reply::ok("x").acao("*")).await;
    let resolver = HostResolver::new();
    resolver.set("good.localhost", Ok(vec![server.addr]));
    let mut c = config(None);
    c.resolver = Some(resolver.clone());
    c.connectivity.probe_interval = Duration::from_secs(10);
    let host = host(c);
    let mut changes = host.connectivity().changes();
    assert_eq!(changes.next().await, Some(true));
    let o = run(
        &host,
        get(&server.url_as("good.localhost", "/x"), "https://app.test"),
    )
    .await;
    assert!(o.error.is_none(), "{:?}", o.error);
    // The network goes: no name resolves any more.
    resolver.set("good.localhost", Err(ResolveErrorKind::Unavailable));
    resolver.set("other.localhost", Err(ResolveErrorKind::Unavailable));
    let url = url::Url::parse("http://other.localhost/x").unwrap();
    let o = run(&host, get(&url, "https://app.test")).await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary);
    assert_eq!(
        changes.next().await,
        Some(false),
        "good.localhost, known to work, failed too"
    );
    resolver.set("good.localhost", Ok(vec![server.addr]));
    let start = tokio::time::Instant::now();
    assert_eq!(
        changes.next().await,
        Some(true),
        "the probe found the network"
    );
    assert!(start.elapsed() >= Duration::from_secs(10));
    assert_eq!(server.count(), 1, "the probe only opens a TCP connection");
}

#[tokio::test]
async fn a_successful_connection_brings_the_signal_back_online() {
    let server = TestServer::http(|_| Reply::ok("x")).await;
    let mut c = config(None);
    c.connectivity.probe_interval = Duration::from_secs(3600);
    let host = host(c);
    host.connectivity().set_online(false);
    assert!(!host.connectivity().is_online());
    let o = run(&host, get(&server.url("/x"), &server.origin())).await;
    assert!(o.error.is_none());
    assert!(host.connectivity().is_online());
}

#[tokio::test]
async fn detection_can_be_turned_off() {
    let resolver = ScriptedResolver::new(vec![Err(ResolveErrorKind::Unavailable)]);
    let mut c = config(None);
    c.resolver = Some(resolver);
    c.connectivity.detect = false;
    let host = host(c);
    let o = run(
        &host,
        get(
            &url::Url::parse("http://a.localhost:8080/x").unwrap(),
            "https://app.test",
        ),
    )
    .await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary);
    assert!(host.connectivity().is_online());
}

#[tokio::test(start_paused = true)]
async fn a_false_offline_is_rechecked_with_real_requests() {
    // The probes never succeed (the destinations known to work are down too), but the signal
    // does not stay offline for ever.
    let server = TestServer::http(|_| Reply::ok("x").acao("*")).await;
    let resolver = HostResolver::new();
    resolver.set("good.localhost", Ok(vec![server.addr]));
    let mut c = config(None);
    c.resolver = Some(resolver.clone());
    c.connectivity.probe_interval = Duration::from_secs(5);
    c.connectivity.recheck_after = Some(Duration::from_secs(60));
    let host = host(c);
    let mut changes = host.connectivity().changes();
    assert_eq!(changes.next().await, Some(true));
    let o = run(
        &host,
        get(&server.url_as("good.localhost", "/x"), "https://app.test"),
    )
    .await;
    assert!(o.error.is_none(), "{:?}", o.error);
    resolver.set("good.localhost", Err(ResolveErrorKind::Unavailable));
    resolver.set("other.localhost", Err(ResolveErrorKind::Unavailable));
    let o = run(
        &host,
        get(
            &url::Url::parse("http://other.localhost/x").unwrap(),
            "https://app.test",
        ),
    )
    .await;
    assert_eq!(o.kind(), NetworkErrorKind::Temporary);
    assert_eq!(changes.next().await, Some(false));
    let start = tokio::time::Instant::now();
    assert_eq!(changes.next().await, Some(true));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(60) && waited <= Duration::from_secs(66),
        "{waited:?}"
    );
}
/// A host that knows `good.localhost` (a loopback server that works) and `bad`, which
/// resolves to `answer`: a request to `bad` fails temporarily (its message containing `why`),
/// and once the check against the destinations known to work had time to finish (it runs in a
/// task of its own), the host is still online and `good.localhost` still answers.
async fn one_bad_destination_leaves_the_host_online(
    bad: &str,
    answer: Result<Vec<std::net::SocketAddr>, ResolveErrorKind>,
    why: &str,
) {
    let good = TestServer::http(|_| Reply::ok("fine").acao("*")).await;
    let resolver = HostResolver::new();
    resolver.set("good.localhost", Ok(vec![good.addr]));
    resolver.set(bad, answer);
    let mut c = config(None);
    c.resolver = Some(resolver.clone());
    let host = host(c);
    let good_url = good.url_as("good.localhost", "/x");
    let ok = run(&host, get(&good_url, "https://app.test")).await;
    assert!(ok.error.is_none(), "{:?}", ok.error);
    let bad_url = url::Url::parse(&format!("http://{bad}/x")).unwrap();
    let failed = run(&host, get(&bad_url, "https://app.test")).await;
    assert_eq!(
        failed.kind(),
        NetworkErrorKind::Temporary,
        "{:?}",
        failed.error
    );
    assert!(
        failed.error().message.contains(why),
        "{}",
        failed.error().message
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        host.connectivity().is_online(),
        "a failure of one destination is that destination's: {:?}",
        failed.error
    );
    let again = run(&host, get(&good_url, "https://app.test")).await;
    assert!(again.error.is_none(), "{:?}", again.error);
}

#[tokio::test]
async fn one_unreachable_destination_does_not_take_the_host_offline() {
    // An IPv4-only client and a dual-stack server that is down: the last address tried answers
    // ENETUNREACH. Here the kernel gives it at once for 255.255.255.255 (TCP to a broadcast
    // address is refused at the route lookup: no packet leaves the machine).
    one_bad_destination_leaves_the_host_online(
        "down.localhost",
        Ok(vec![std::net::SocketAddr::from(([255, 255, 255, 255], 80))]),
        "unreachable",
    )
    .await;
}

#[tokio::test]
async fn one_destination_whose_name_server_fails_does_not_take_the_host_offline() {
    // One domain's name server answers SERVFAIL ("temporary failure in name resolution", the
    // same words a machine without network gets): only its records fail; every other
    // destination works, so the host stays online and other downloads go on.
    one_bad_destination_leaves_the_host_online(
        "servfail.localhost",
        Err(ResolveErrorKind::Unavailable),
        "servfail.localhost",
    )
    .await;
}
