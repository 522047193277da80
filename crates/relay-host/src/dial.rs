//! The TCP connect under a dial: "Happy Eyeballs" (RFC 8305).
//!
//! A host name often resolves to several addresses, IPv6 and IPv4. Trying them one
//! after another lets a single blackholed address (an IPv6 route that drops SYNs,
//! say) cost the whole dial timeout. Instead the attempts are staggered: one starts,
//! and if it has neither connected nor failed within [`ATTEMPT_DELAY`] the next
//! starts beside it, while the earlier ones keep trying. A failure starts the next
//! attempt at once. The first stream to connect wins; the others are dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::net::TcpStream;

/// How long an attempt runs alone before the next address is tried beside it.
///
/// RFC 8305 §5 recommends 250 ms ("Connection Attempt Delay"), and the newest
/// reference gateway uses 250 ms: long enough that a healthy first address almost
/// always wins alone, short enough that a blackholed one is barely noticed.
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Resolves `host` and connects to one of its addresses, Happy Eyeballs style.
/// `host` is a name or an IP literal (IPv6 without brackets). No overall
/// timeout here: the caller bounds the whole dial.
pub(crate) async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?
        .collect();
    race(interleave(resolved), ATTEMPT_DELAY, TcpStream::connect).await
}

/// Orders addresses as RFC 8305 §4 asks: the family of the first result first,
/// then alternating IPv6 and IPv4, each family keeping the resolver's order.
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_is_v6 = addrs.first().is_some_and(SocketAddr::is_ipv6);
    let (primary, secondary): (Vec<_>, Vec<_>) = addrs
        .into_iter()
        .partition(|addr| addr.is_ipv6() == first_is_v6);
    let mut ordered = Vec::with_capacity(primary.len() + secondary.len());
    let (mut primary, mut secondary) = (primary.into_iter(), secondary.into_iter());
    loop {
        match (primary.next(), secondary.next()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// Connects to `addrs` in order with `connect_one`, starting the next attempt after
/// `stagger` or as soon as one fails; returns the first success. If every attempt
/// fails the error names the last failure and its address.
async fn race<T, F, Fut>(
    addrs: Vec<SocketAddr>,
    stagger: Duration,
    mut connect_one: F,
) -> io::Result<T>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let tried = addrs.len();
    let mut waiting = addrs.into_iter();
    let mut running = FuturesUnordered::new();
    let mut last_failure = None;
    let mut start_next = |running: &mut FuturesUnordered<_>| {
        if let Some(addr) = waiting.next() {
            let attempt = connect_one(addr);
            running.push(async move { (addr, attempt.await) });
        }
    };
    start_next(&mut running);
    while !running.is_empty() {
        // A fresh timer per round is right: every round ends either by starting
        // an attempt (the stagger restarts) or with nothing left to start.
        tokio::select! {
            biased;
            Some((addr, outcome)) = running.next() => match outcome {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "connect attempt failed");
                    last_failure = Some((addr, e));
                    start_next(&mut running);
                }
            },
            () = tokio::time::sleep(stagger) => {
                start_next(&mut running);
            }
        }
    }
    Err(match last_failure {
        Some((addr, e)) => io::Error::new(
            e.kind(),
            format!("connect to {addr} failed: {e} ({tried} address(es) tried)"),
        ),
        None => io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address"),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use tokio::net::TcpListener;

    use super::*;

    /// Far beyond any stagger: a test that waits this long has failed.
    const LONG: Duration = Duration::from_secs(10);

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// A loopback port that refuses connections (a listener bound, then closed).
    async fn refusing_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    #[test]
    fn families_alternate_starting_with_the_first_result() {
        let v6a = addr("[2001:db8::1]:443");
        let v6b = addr("[2001:db8::2]:443");
        let v6c = addr("[2001:db8::3]:443");
        let v4a = addr("192.0.2.1:443");
        let v4b = addr("192.0.2.2:443");
        assert_eq!(
            interleave(vec![v6a, v6b, v6c, v4a, v4b]),
            [v6a, v4a, v6b, v4b, v6c]
        );
        assert_eq!(interleave(vec![v4a, v4b, v6a]), [v4a, v6a, v4b]);
        assert_eq!(interleave(vec![v4a, v4b]), [v4a, v4b]);
        assert_eq!(interleave(vec![]), Vec::<SocketAddr>::new());
    }

    /// The first address never answers (a blackhole: the attempt neither connects
    /// nor fails); the second is a real listener. Tried one after another this
    /// would take the whole timeout; staggered it takes about the stagger.
    #[tokio::test]
    async fn a_blackholed_first_address_costs_only_the_stagger() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap();
        let blackhole = addr("[2001:db8::1]:443");
        let started = Instant::now();
        let stream = tokio::time::timeout(
            LONG,
            race(vec![blackhole, live], ATTEMPT_DELAY, |a| async move {
                if a == blackhole {
                    std::future::pending().await
                } else {
                    TcpStream::connect(a).await
                }
            }),
        )
        .await
        .expect("the dial waited on the blackholed address")
        .expect("the live address connected");
        let took = started.elapsed();
        eprintln!("connected past a blackholed first address in {took:?}");
        assert_eq!(stream.peer_addr().unwrap(), live);
        assert!(
            took >= ATTEMPT_DELAY,
            "second attempt started early: {took:?}"
        );
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }

    /// A real loopback connect refused at once starts the next attempt at once,
    /// without waiting out the stagger (here a long one, so the test can tell).
    #[tokio::test]
    async fn a_refused_first_address_starts_the_next_at_once() {
        let refused = refusing_port().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap();
        let started = Instant::now();
        let stream = race(vec![refused, live], LONG, TcpStream::connect)
            .await
            .expect("the live address connected");
        let took = started.elapsed();
        assert_eq!(stream.peer_addr().unwrap(), live);
        assert!(
            took < Duration::from_secs(2),
            "waited for the stagger: {took:?}"
        );
    }

    #[tokio::test]
    async fn when_every_address_fails_the_error_names_the_last() {
        let first = refusing_port().await;
        let last = refusing_port().await;
        let err = race(vec![first, last], ATTEMPT_DELAY, TcpStream::connect)
            .await
            .expect_err("nothing listens");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let text = err.to_string();
        assert!(text.contains(&last.to_string()), "{text}");
        assert!(text.contains("2 address(es) tried"), "{text}");

        let err = race(vec![], ATTEMPT_DELAY, TcpStream::connect)
            .await
            .expect_err("no address");
        assert!(err.to_string().contains("no address"), "{err}");
    }

    /// A first address that connects (even after a while, within the stagger)
    /// wins alone: the second address is never tried.
    #[tokio::test]
    async fn a_first_success_starts_no_second_attempt() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap();
        let spare = addr("[2001:db8::1]:443");
        let attempts = AtomicUsize::new(0);
        let stream = race(vec![live, spare], Duration::from_secs(2), |a| {
            attempts.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                TcpStream::connect(a).await
            }
        })
        .await
        .expect("the first address connected");
        assert_eq!(stream.peer_addr().unwrap(), live);
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    /// The real entry point: a name resolved by the system, then connected.
    #[tokio::test]
    async fn connect_resolves_and_connects() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = tokio::time::timeout(LONG, connect("127.0.0.1", port))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
    }
}
