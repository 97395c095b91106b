//! Connection establishment and the pool against networks that misbehave: addresses that
//! swallow SYNs (Happy Eyeballs, RFC 8305), and pooled connections that go silent.

use crate::support::*;
use background_fetch::NetworkErrorKind;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn an_ipv6_address_that_swallows_syns_falls_back_to_ipv4() {
    // A dual-stack name whose IPv6 address blackholes SYNs: RFC 8305 races IPv4 after a short
    // delay instead of spending the whole connect budget on IPv6.
    let hole = Blackhole::new(true);
    let res = Resource::new(pattern(5000));
    let server = TestServer::http(move |r| res.reply(r)).await;
    let resolver = HostResolver::new();
    // The URL has no port: the addresses carry theirs.
    resolver.set("dual.localhost", Ok(vec![hole.addr, server.addr]));
    let mut c = config(None);
    c.resolver = Some(resolver);
    c.connect_timeout = Duration::from_secs(30);
    let host = host(c);
    let url = url::Url::parse("http://dual.localhost/f").unwrap();
    let o = run(&host, get(&url, "http://dual.localhost")).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, pattern(5000));
}

#[tokio::test(start_paused = true)]
async fn an_address_that_swallows_syns_does_not_take_the_whole_connect_budget() {
    // Two IPv4 addresses, the first blackholed: each address gets its share of the budget.
    let hole = Blackhole::new(false);
    let res = Resource::new(pattern(5000));
    let server = TestServer::http(move |r| res.reply(r)).await;
    let resolver = HostResolver::new();
    resolver.set("two.localhost", Ok(vec![hole.addr, server.addr]));
    let mut c = config(None);
    c.resolver = Some(resolver);
    c.connect_timeout = Duration::from_secs(30);
    let host = host(c);
    let url = url::Url::parse("http://two.localhost/f").unwrap();
    let o = run(&host, get(&url, "http://two.localhost")).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.body, pattern(5000));
}

/// An HTTP/2 server behind a relay whose connections can be silenced.
async fn h2_behind_a_relay(ca: &TestCa) -> (FnServer, SilentRelay) {
    let server = FnServer::start(ca, |_| response(200, &[], "fine")).await;
    let relay = SilentRelay::start(server.addr).await;
    (server, relay)
}

#[tokio::test(start_paused = true)]
async fn a_pooled_connection_that_timed_out_is_not_used_again() {
    let ca = TestCa::new();
    let (_server, relay) = h2_behind_a_relay(&ca).await;
    let mut c = config(Some(&ca));
    c.response_head_timeout = Duration::from_secs(10);
    let host = host(c);
    let url = url::Url::parse(&format!("https://localhost:{}/x", relay.addr.port())).unwrap();
    let origin = &url.origin().ascii_serialization();
    let first = run(&host, get(&url, origin)).await;
    assert!(first.error.is_none(), "{:?}", first.error);
    relay.silence_existing();
    // The pooled connection is dead: this attempt times out (it could not know) ...
    let second = run(&host, get(&url, origin)).await;
    if second.error.is_some() {
        assert_eq!(second.kind(), NetworkErrorKind::Temporary);
    }
    // ... and the connection that timed out is never used again.
    let third = run(&host, get(&url, origin)).await;
    assert!(third.error.is_none(), "{:?}", third.error);
    assert_eq!(third.body, b"fine");
    assert!(relay.conns.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[tokio::test(start_paused = true)]
async fn an_idle_http2_connection_that_went_silent_is_found_dead_by_ping() {
    let ca = TestCa::new();
    let (_server, relay) = h2_behind_a_relay(&ca).await;
    let host = host(config(Some(&ca)));
    let url = url::Url::parse(&format!("https://localhost:{}/x", relay.addr.port())).unwrap();
    let origin = &url.origin().ascii_serialization();
    let first = run(&host, get(&url, origin)).await;
    assert!(first.error.is_none(), "{:?}", first.error);
    relay.silence_existing();
    // A NAT mapping timed out while the connection was idle in the pool: PINGs find it dead
    // before the next request, which gets a new connection.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let second = run(&host, get(&url, origin)).await;
    assert!(second.error.is_none(), "{:?}", second.error);
    assert_eq!(relay.conns.load(std::sync::atomic::Ordering::SeqCst), 2);
}
