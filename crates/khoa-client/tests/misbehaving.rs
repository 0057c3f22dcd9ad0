//! A [`TokenSource`] against the misbehaving stand-in partner (`khoa-standin`): single flight,
//! short tokens under steady traffic, one new token and one retry after a revocation,
//! `Retry-After`, an endpoint that is down or drops connections, a refused refresh, the
//! background mode, and two sources sharing one file store. The source and the stand-in read
//! one [`ManualClock`]: tests move time, nothing waits for it.

use std::time::Duration;

use khoa_client::{Clock, Credentials, Error, FileStore, ManualClock, TokenSource};
use khoa_standin::{CLIENT_ID, CLIENT_SECRET, PASSWORD, StandIn, USERNAME};

struct Rig {
    clock: ManualClock,
    standin: StandIn,
}

async fn rig() -> Rig {
    let clock = ManualClock::new(1_800_000_000_000);
    let standin = StandIn::start(clock.reader()).await;
    Rig { clock, standin }
}

impl Rig {
    fn builder(&self, creds: Credentials) -> khoa_client::Builder {
        TokenSource::built_in("oauth2")
            .unwrap()
            .token_url(self.standin.url("/token"))
            .credentials(creds)
            .clock(self.clock.clone())
    }

    /// Client credentials: no refresh token, every new token is a login.
    fn client_source(&self) -> TokenSource {
        self.builder(Credentials::client(CLIENT_ID, CLIENT_SECRET))
            .build()
            .unwrap()
    }

    /// The password grant: refresh tokens, rotated on every refresh.
    fn user_source(&self) -> TokenSource {
        self.builder(Credentials::client(CLIENT_ID, CLIENT_SECRET).with_user(USERNAME, PASSWORD))
            .build()
            .unwrap()
    }

    async fn resource(&self, source: &TokenSource) -> u16 {
        let http = http_client();
        let req = http.get(self.standin.url("/resource/x")).build().unwrap();
        source.send(&http, req).await.unwrap().status().as_u16()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_callers_cause_one_token_call() {
    let r = rig().await;
    let source = r.client_source();
    r.standin.hold_tokens();
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let s = source.clone();
            tokio::spawn(async move { s.token().await.map(|t| t.generation()) })
        })
        .collect();
    r.standin.wait_until_held(1).await;
    // A caller that gives up does not cancel the call the others wait for.
    let quitter = {
        let s = source.clone();
        tokio::spawn(async move { s.token().await })
    };
    quitter.abort();
    r.standin.release_tokens();
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap(), 1);
    }
    assert_eq!(source.token().await.unwrap().generation(), 1);
    let counts = r.standin.counts();
    assert_eq!(counts.token_calls, 1, "{counts:?}");
    assert_eq!(counts.max_concurrent_token_calls, 1, "{counts:?}");
    assert_eq!(source.stats().token_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_built_apart_for_one_key_share_one_token_call() {
    let r = rig().await;
    let creds = || Credentials::client(CLIENT_ID, CLIENT_SECRET).with_scope("read");
    // Two parts of a program, each building its own source for the same client and scope.
    let one = r.builder(creds()).build_shared().unwrap();
    let two = r.builder(creds()).build_shared().unwrap();
    assert!(one.same_as(&two));
    // Another scope (or another secret) is another key.
    let other = r.builder(Credentials::client(CLIENT_ID, CLIENT_SECRET).with_scope("write"));
    assert!(!other.build_shared().unwrap().same_as(&one));
    let wrong = r.builder(Credentials::client(CLIENT_ID, "another-secret").with_scope("read"));
    assert!(!wrong.build_shared().unwrap().same_as(&one));

    r.standin.hold_tokens();
    let callers: Vec<_> = (0..50)
        .flat_map(|_| [one.clone(), two.clone()])
        .map(|s| tokio::spawn(async move { s.token().await.map(|t| t.generation()) }))
        .collect();
    r.standin.wait_until_held(1).await;
    r.standin.release_tokens();
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap(), 1);
    }
    assert_eq!(r.standin.counts().token_calls, 1);
}

#[tokio::test]
async fn three_second_tokens_under_steady_traffic_are_never_presented_expired() {
    let r = rig().await;
    r.standin.set_ttl_ms(3_000);
    let source = r.user_source();
    // 60 s of traffic, a request every 100 ms.
    for _ in 0..600 {
        assert_eq!(r.resource(&source).await, 200);
        r.clock.advance_ms(100);
    }
    let counts = r.standin.counts();
    assert_eq!(counts.expired_presented, 0, "{counts:?}");
    assert_eq!(counts.unknown_presented, 0, "{counts:?}");
    assert_eq!(counts.refresh_reused, 0, "{counts:?}");
    // Refreshed at 72–80 % of 3 s: 25 ± a few times a minute, never on every call.
    let calls = counts.logins + counts.refreshes;
    assert!((20..=30).contains(&calls), "{counts:?}");
    assert_eq!(counts.logins, 1, "the rotation chain held: {counts:?}");
}

#[tokio::test]
async fn a_revocation_costs_exactly_one_new_token_and_one_retry() {
    let r = rig().await;
    let source = r.user_source();
    assert_eq!(r.resource(&source).await, 200);
    r.standin.revoke_all();
    let before = r.standin.counts();

    assert_eq!(r.resource(&source).await, 200);

    let after = r.standin.counts();
    assert_eq!(after.token_calls - before.token_calls, 1, "{after:?}");
    assert_eq!(after.refreshes - before.refreshes, 1, "{after:?}");
    assert_eq!(after.resource_calls - before.resource_calls, 2, "{after:?}");
    assert_eq!(source.stats().invalidations, 1);
}

#[tokio::test]
async fn a_second_401_is_returned_as_it_is_after_one_retry() {
    let r = rig().await;
    let source = r.client_source();
    r.standin.unauthorized_next(2);
    assert_eq!(r.resource(&source).await, 401);
    let counts = r.standin.counts();
    assert_eq!(counts.resource_calls, 2, "one retry, not more: {counts:?}");
    assert_eq!(counts.token_calls, 2, "{counts:?}");
}

#[tokio::test]
async fn retry_after_is_honoured_to_the_millisecond_without_another_call() {
    let r = rig().await;
    let source = r.client_source();
    r.standin.fail_tokens(1, 429, Some(7));
    match source.token().await {
        Err(Error::Unavailable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    r.clock.advance_ms(6_999);
    let waiting = source.token().await.unwrap_err();
    assert!(
        matches!(&waiting, Error::BackingOff { wait, .. } if *wait == Duration::from_millis(1)),
        "{waiting:?}"
    );
    assert_eq!(r.standin.counts().token_calls, 1);
    r.clock.advance_ms(1);
    source.token().await.unwrap();
    assert_eq!(r.standin.counts().token_calls, 2);
}

#[tokio::test]
async fn while_the_endpoint_is_down_failures_back_off_and_the_source_recovers_by_itself() {
    let r = rig().await;
    let source = r.client_source();
    r.standin.set_down(true);
    let mut waits = Vec::new();
    for _ in 0..6 {
        let e = source.token().await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        let Err(Error::BackingOff { wait, .. }) = source.token().await else {
            panic!("no back-off");
        };
        waits.push(wait);
        r.clock.advance_ms(wait.as_millis() as u64);
    }
    // Doubling with equal jitter: the n-th wait is in [base·2ⁿ⁻¹/2, base·2ⁿ⁻¹].
    for (n, wait) in waits.iter().enumerate() {
        let cap = 500u128 << n;
        let ms = wait.as_millis();
        assert!(ms >= cap / 2 && ms <= cap, "wait {n}: {ms} ms");
    }
    assert_eq!(r.standin.counts().token_calls, 6);
    r.standin.set_down(false);
    source.token().await.unwrap();
}

#[tokio::test]
async fn a_dropped_connection_is_a_transient_failure_and_the_next_call_succeeds() {
    let r = rig().await;
    let source = r.client_source();
    r.standin.drop_connections(1);
    let e = source.token().await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    r.clock.advance_ms(1_000);
    source.token().await.unwrap();
    assert_eq!(r.standin.counts().logins, 1);
}

#[tokio::test]
async fn a_refused_refresh_token_falls_back_to_a_fresh_login() {
    let r = rig().await;
    let source = r.user_source();
    let first = source.token().await.unwrap();
    r.standin.refuse_refresh(true);
    r.clock.advance_ms(first.expires_at_ms() - r.clock.now_ms());
    let next = source.token().await.unwrap();
    assert_ne!(next.generation(), first.generation());
    let counts = r.standin.counts();
    assert_eq!((counts.logins, counts.refreshes), (2, 0), "{counts:?}");
    assert_eq!(r.resource(&source).await, 200);
}

#[tokio::test]
async fn in_the_background_the_token_is_refreshed_with_nobody_asking() {
    let r = rig().await;
    r.standin.set_ttl_ms(4_000);
    // Each new token, as the on-change callback reports it.
    let (changed, mut changes) = tokio::sync::watch::channel(0u32);
    let source = r
        .builder(Credentials::client(CLIENT_ID, CLIENT_SECRET).with_user(USERNAME, PASSWORD))
        .on_change(move |_| changed.send_modify(|n| *n += 1))
        .build()
        .unwrap();
    let task = source.spawn_background();
    changes.wait_for(|n| *n == 1).await.unwrap();
    for n in 2..=6 {
        r.clock.advance_ms(4_000);
        changes.wait_for(|c| *c == n).await.unwrap();
    }
    let counts = r.standin.counts();
    assert_eq!((counts.logins, counts.refreshes), (1, 5), "{counts:?}");
    assert_eq!(source.stats().token_calls, 6, "one call per token");
    drop(source);
    r.clock.advance_ms(4_000);
    // The last clone is gone: the task ends instead of refreshing for nobody.
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_sharing_a_file_store_rotate_one_chain_and_never_redeem_twice() {
    let r = rig().await;
    let dir = tempfile::tempdir().unwrap();
    // Two stores on one directory: what two processes of one host have.
    let one = r
        .builder(Credentials::client(CLIENT_ID, CLIENT_SECRET).with_user(USERNAME, PASSWORD))
        .store(FileStore::new(dir.path()).unwrap())
        .build()
        .unwrap();
    let two = r
        .builder(Credentials::client(CLIENT_ID, CLIENT_SECRET).with_user(USERNAME, PASSWORD))
        .store(FileStore::new(dir.path()).unwrap())
        .build()
        .unwrap();
    let first = one.token().await.unwrap();
    // The second adopts the first one's token from the store: no login of its own.
    assert_eq!(two.token().await.unwrap().secret(), first.secret());
    assert_eq!(r.standin.counts().logins, 1);

    let rounds = |s: TokenSource| {
        tokio::spawn(async move {
            for _ in 0..15 {
                s.refresh().await.unwrap();
            }
        })
    };
    let (a, b) = (rounds(one.clone()), rounds(two.clone()));
    a.await.unwrap();
    b.await.unwrap();

    let counts = r.standin.counts();
    assert_eq!(counts.refresh_reused, 0, "{counts:?}");
    assert_eq!((counts.logins, counts.refreshes), (1, 30), "{counts:?}");
    // Both end on a token the partner accepts.
    assert_eq!(r.resource(&one).await, 200);
    assert_eq!(r.resource(&two).await, 200);
}

#[tokio::test]
async fn through_reqwest_middleware_a_revocation_costs_one_new_token_and_one_retry() {
    let r = rig().await;
    let http = reqwest_middleware::ClientBuilder::new(http_client())
        .with(khoa_client::TokenMiddleware::new(r.user_source()))
        .build();
    let get = || http.get(r.standin.url("/resource/m")).send();
    assert_eq!(get().await.unwrap().status(), 200);
    r.standin.revoke_all();
    assert_eq!(get().await.unwrap().status(), 200);
    let counts = r.standin.counts();
    assert_eq!((counts.logins, counts.refreshes), (1, 1), "{counts:?}");
    assert_eq!(counts.resource_calls, 3, "{counts:?}");
}

/// A reqwest client, made once ring is rustls' crypto provider (reqwest's rustls has none of
/// its own with the `agent` feature, and would panic).
fn http_client() -> reqwest::Client {
    khoa_client::install_crypto_provider();
    reqwest::Client::new()
}
