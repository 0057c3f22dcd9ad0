//! No secret in the logs: everything written at `trace` while a source works. A test binary
//! of its own, with the subscriber as the global default: tracing caches per call site whether
//! anyone listens, and a test running beside it in the same process could have the call
//! sites registered before this subscriber existed.

use khoa_client::{Credentials, ManualClock, TokenSource};
use khoa_standin::{CLIENT_ID, CLIENT_SECRET, PASSWORD, StandIn, USERNAME};

/// Everything written at `trace` by the source, reqwest and hyper while a source logs in,
/// refreshes, is refused and retries: no password, secret, refresh or access token in it.
#[test]
fn no_secret_reaches_a_log_line_at_trace() {
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let tokens = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let clock = ManualClock::new(1_800_000_000_000);
            let standin = StandIn::start(clock.reader()).await;
            let source = TokenSource::built_in("oauth2")
                .unwrap()
                .token_url(standin.url("/token"))
                .credentials(
                    Credentials::client(CLIENT_ID, CLIENT_SECRET).with_user(USERNAME, PASSWORD),
                )
                .clock(clock)
                .build()
                .unwrap();
            let http = http_client();
            let resource = || http.get(standin.url("/resource/x")).build().unwrap();
            let first = source.token().await.unwrap();
            standin.revoke_all();
            let res = source.send(&http, resource()).await.unwrap();
            assert_eq!(res.status(), 200);
            standin.refuse_refresh(true);
            let second = source.refresh().await.unwrap();
            let refresh = standin.last_token_request().unwrap().body_text();
            vec![
                first.secret().to_owned(),
                second.secret().to_owned(),
                refresh,
            ]
        })
    };
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("token call"), "the source did log: {text}");
    for secret in [CLIENT_SECRET, PASSWORD, &tokens[0], &tokens[1]] {
        assert!(!text.contains(secret), "{secret} in the log");
    }
    // The last token request carried a refresh token (or the password): none of its values.
    for pair in tokens[2].split('&') {
        let value = pair.split_once('=').map_or("", |(_, v)| v);
        if value.len() > 8 {
            assert!(!text.contains(value), "{value} in the log");
        }
    }
}

/// A reqwest client, made once ring is rustls' crypto provider (reqwest's rustls has none of
/// its own with the `agent` feature, and would panic).
fn http_client() -> reqwest::Client {
    khoa_client::install_crypto_provider();
    reqwest::Client::new()
}
