//! Native TLS (`tls.cert_file`, `tls.key_file`): HTTPS with a chain the client verifies
//! against a CA made in the test, plain HTTP and untrusting clients refused, configuration
//! mistakes refused at start-up naming the key and the file, and the certificate reloaded
//! (in-process, and by SIGHUP to the real binary) without dropping a kept-alive connection.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use khoa_server::config::Config;
use khoa_server::startup::App;
use khoa_server::tls::TlsCerts;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::{free_port, khoa_on};
use crate::helpers::{FORM_CONTENT_TYPE, basic_auth, form_body, jwt_claims, spawn_app_with};

// ---- certificates made in the test ----

/// A certificate authority of the test's own.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("the CA certificate");
        Ca {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 signed by this CA: its PEM, its
    /// key's PEM, and its DER (to recognise it on the wire).
    fn server_cert(&self) -> ServerCert {
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server parameters");
        params.distinguished_name.push(DnType::CommonName, "khoa");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("a server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("the server certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

struct ServerCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl ServerCert {
    /// Writes `cert.pem` and `key.pem` into `dir` (replacing them), as an operator's renewal
    /// does; returns their paths.
    fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem).expect("cert.pem written");
        std::fs::write(&key, &self.key_pem).expect("key.pem written");
        (cert, key)
    }
}

// ---- a client that verifies the chain ----

/// One HTTPS connection, kept alive, whose server chain was verified against `roots` for the
/// name `localhost`.
struct Https {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The certificate the server presented.
    peer: CertificateDer<'static>,
}

fn trusting(cas: &[&Ca]) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.cert.clone()).expect("the CA is a valid root");
    }
    #[allow(deprecated, reason = "ring is the one crypto backend (Cargo.toml)")]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

impl Https {
    async fn connect(addr: SocketAddr, cas: &[&Ca]) -> std::io::Result<Https> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("a DNS name");
        let tls = tokio::time::timeout(Duration::from_secs(10), trusting(cas).connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
        let peer = tls.get_ref().1.peer_certificates().expect("a server chain")[0].clone();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Https { sender, peer })
    }

    /// One request on this connection: status and body.
    async fn send(&mut self, request: hyper::Request<Full<Bytes>>) -> (u16, String) {
        let res = tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(request))
            .await
            .expect("an answer within 10 s")
            .expect("the kept-alive connection answers");
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        let req = hyper::Request::get(path)
            .header("host", "localhost")
            .body(Full::default())
            .expect("a request");
        self.send(req).await
    }
}

// ---- servers ----

fn tls_config(dir: &Path, cert: &ServerCert) -> Config {
    let (cert_file, key_file) = cert.write(dir);
    let mut config = crate::helpers::test_config(dir);
    config.tls.cert_file = Some(cert_file);
    config.tls.key_file = Some(key_file);
    config
}

/// An in-process server with TLS, and the handle that reloads its certificate.
struct TlsApp {
    addr: SocketAddr,
    certs: Arc<TlsCerts>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn spawn_tls_app(dir: tempfile::TempDir, cert: &ServerCert) -> TlsApp {
    spawn_tls_app_with(dir, cert, |_| {}).await
}

async fn spawn_tls_app_with(
    dir: tempfile::TempDir,
    cert: &ServerCert,
    tweak: impl FnOnce(&mut Config),
) -> TlsApp {
    let mut config = tls_config(dir.path(), cert);
    tweak(&mut config);
    let app = App::build(config).await.expect("the TLS app builds");
    let addr = app.local_addr();
    let certs = app.tls().expect("TLS is on");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    TlsApp {
        addr,
        certs,
        _stop: stop,
        _dir: dir,
    }
}

// ---- tests ----

#[tokio::test]
async fn https_serves_a_verified_chain_and_issues_tokens_with_an_https_issuer() {
    let ca = Ca::new("khoa test CA");
    let cert = ca.server_cert();
    let app = spawn_app_with(|c| {
        let (cert_file, key_file) =
            cert.write(c.master_key_file.as_ref().unwrap().parent().unwrap());
        c.tls.cert_file = Some(cert_file);
        c.tls.key_file = Some(key_file);
    })
    .await;
    let addr: SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let secret = app.add_confidential_client("tls-svc", "read", |_| {}).await;

    let mut https = Https::connect(addr, &[&ca])
        .await
        .expect("the chain verifies");
    assert_eq!(https.peer, cert.der, "the configured certificate is served");
    assert_eq!(https.get("/healthz").await.0, 200);

    let token = hyper::Request::post("/connect/token")
        .header("host", "localhost")
        .header("content-type", FORM_CONTENT_TYPE)
        .header("authorization", basic_auth("tls-svc", &secret))
        .body(Full::from(form_body(&[(
            "grant_type",
            "client_credentials",
        )])))
        .expect("a request");
    let (status, body) = https.send(token).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let claims = jwt_claims(body["access_token"].as_str().expect("an access token"));
    // The default issuer follows the scheme the server is reached by.
    assert_eq!(claims["iss"], format!("https://{addr}"));
    let (status, metadata) = https.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(status, 200);
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["issuer"], format!("https://{addr}"));
    assert_eq!(
        metadata["token_endpoint"],
        format!("https://{addr}/connect/token")
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let ca = Ca::new("khoa test CA");
    let app = spawn_tls_app(tempfile::tempdir().unwrap(), &ca.server_cert()).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: khoa\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server closes (after a TLS alert, at most); it never speaks HTTP here.
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("HTTP/1."),
        "plain HTTP was answered: {answer}"
    );
    // And HTTPS still works beside it.
    let mut https = Https::connect(app.addr, &[&ca]).await.unwrap();
    assert_eq!(https.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_nobody_and_is_closed_after_the_header_read_timeout() {
    let ca = Ca::new("khoa test CA");
    let app = spawn_tls_app_with(tempfile::tempdir().unwrap(), &ca.server_cert(), |c| {
        c.http.header_read_timeout_secs = 2;
    })
    .await;
    // The first bytes of a TLS record (RFC 8446 §5.1: a handshake record), then nothing.
    let mut stalled = TcpStream::connect(app.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = Instant::now();
    let mut https = Https::connect(app.addr, &[&ca])
        .await
        .expect("served beside the stalled handshake");
    assert_eq!(https.get("/healthz").await.0, 200);
    // Well before the stalled handshake's timeout: the accept loop never waited for it.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut rest))
        .await
        .expect("the stalled handshake is closed")
        .ok();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let ca = Ca::new("khoa test CA");
    let stranger = Ca::new("someone else's CA");
    let app = spawn_tls_app(tempfile::tempdir().unwrap(), &ca.server_cert()).await;
    let err = match Https::connect(app.addr, &[&stranger]).await {
        Ok(_) => panic!("a chain from an untrusted CA was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn tls_configuration_mistakes_are_refused_naming_the_key_and_the_file() {
    // One file without the other: refused by validation, naming the missing key.
    let mut c = Config::default();
    c.tls.cert_file = Some("cert.pem".into());
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("`tls.key_file`") && e.contains("tls.cert_file"),
        "{e}"
    );
    let mut c = Config::default();
    c.tls.key_file = Some("key.pem".into());
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("`tls.cert_file`"), "{e}");

    let ca = Ca::new("khoa test CA");
    let good = ca.server_cert();
    let other = ca.server_cert();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let refusal = |cert: &'static str, key: &'static str| {
        let mut config = crate::helpers::test_config(d);
        config.tls.cert_file = Some(d.join(cert));
        config.tls.key_file = Some(d.join(key));
        config.validate().expect("both keys are set");
        async move {
            match App::build(config).await {
                Ok(_) => panic!("TLS files {cert} / {key} were accepted"),
                Err(e) => e.to_string(),
            }
        }
    };
    std::fs::write(d.join("cert.pem"), &good.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), &good.key_pem).unwrap();
    std::fs::write(d.join("other-key.pem"), &other.key_pem).unwrap();
    std::fs::write(d.join("garbage.pem"), "not a certificate\n").unwrap();
    std::fs::write(
        d.join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let path = |f: &str| d.join(f).display().to_string();

    let e = refusal("missing.pem", "key.pem").await;
    assert!(
        e.contains("tls.cert_file") && e.contains(&path("missing.pem")),
        "{e}"
    );
    assert!(e.contains("cannot read"), "{e}");
    let e = refusal("garbage.pem", "key.pem").await;
    assert!(
        e.contains("tls.cert_file") && e.contains(&path("garbage.pem")),
        "{e}"
    );
    assert!(e.contains("no PEM certificate"), "{e}");
    let e = refusal("broken.pem", "key.pem").await;
    assert!(
        e.contains("tls.cert_file") && e.contains(&path("broken.pem")),
        "{e}"
    );
    // A key file with no key in it (the certificate given twice).
    let e = refusal("cert.pem", "cert.pem").await;
    assert!(
        e.contains("tls.key_file") && e.contains("no PEM private key"),
        "{e}"
    );
    let e = refusal("cert.pem", "garbage.pem").await;
    assert!(
        e.contains("tls.key_file") && e.contains(&path("garbage.pem")),
        "{e}"
    );
    // A key of another certificate.
    let e = refusal("cert.pem", "other-key.pem").await;
    assert!(
        e.contains("tls.key_file")
            && e.contains(&path("other-key.pem"))
            && e.contains(&path("cert.pem")),
        "{e}"
    );
    assert!(e.contains("is not the key of the certificate"), "{e}");
    assert!(
        !e.contains("PRIVATE KEY") && !e.contains(other.key_pem.lines().nth(1).unwrap()),
        "key material in a message: {e}"
    );
    // Nothing was started for a refused configuration: no database was created.
    assert!(!d.join("khoa.db").exists());
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_connections_and_keeps_existing_ones() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let (old, new) = (old_ca.server_cert(), new_ca.server_cert());
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().to_path_buf();
    let app = spawn_tls_app(dir, &old).await;
    let mut kept = Https::connect(app.addr, &[&old_ca]).await.unwrap();
    assert_eq!(kept.get("/healthz").await.0, 200);
    assert!(Https::connect(app.addr, &[&new_ca]).await.is_err());

    // A failed reload (a half-written key) keeps what is served.
    new.write(&files);
    std::fs::write(files.join("key.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let e = app.certs.reload().unwrap_err().to_string();
    assert!(e.contains("tls.key_file"), "{e}");
    assert_eq!(app.certs.end_entity(), old.der);
    let mut fresh = Https::connect(app.addr, &[&old_ca]).await.unwrap();
    assert_eq!(fresh.get("/healthz").await.0, 200);

    new.write(&files);
    app.certs.reload().expect("the new pair loads");
    let mut fresh = Https::connect(app.addr, &[&new_ca])
        .await
        .expect("a new connection verifies against the new CA");
    assert_eq!(fresh.peer, new.der);
    assert_eq!(fresh.get("/healthz").await.0, 200);
    assert!(
        Https::connect(app.addr, &[&old_ca]).await.is_err(),
        "the old certificate is still served to new connections"
    );
    // The connection opened before the reload is still the same one, and still served.
    assert_eq!(kept.peer, old.der);
    assert_eq!(kept.get("/healthz").await.0, 200);
}

/// A `khoa serve` child's standard error, read line by line as it comes.
fn stream_log(child: &mut tokio::process::Child) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

/// Polls `probe` until it is true, for at most `within`.
async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut probe: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn sighup(child: &tokio::process::Child) {
    let pid = child.id().expect("the server runs") as libc::pid_t;
    // SAFETY: kill(2) with a valid signal number on our own child's pid touches no memory.
    let sent = unsafe { libc::kill(pid, libc::SIGHUP) };
    assert_eq!(sent, 0, "SIGHUP delivered");
}

#[tokio::test]
async fn sighup_makes_the_real_binary_reload_its_certificate_without_dropping_connections() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let (old, new) = (old_ca.server_cert(), new_ca.server_cert());
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = old.write(dir.path());
    let mut started = None;
    for _ in 0..3 {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = khoa_on(dir.path())
            .env("KHOA_LISTEN", addr.to_string())
            .env("KHOA_TLS__CERT_FILE", &cert_file)
            .env("KHOA_TLS__KEY_FILE", &key_file)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("khoa serve starts");
        let log = stream_log(&mut child);
        let up = eventually(Duration::from_secs(60), || async {
            child_exited(&log) || Https::connect(addr, &[&old_ca]).await.is_ok()
        })
        .await;
        if up && !child_exited(&log) {
            started = Some((addr, child, log));
            break;
        }
        // Another process took the port between the probe and the bind: another port.
        let text = log.lock().unwrap().clone();
        assert!(
            text.contains("cannot listen"),
            "khoa serve did not come up: {text}"
        );
    }
    let (addr, mut child, log) = started.expect("khoa serve found a free port");

    let mut kept = Https::connect(addr, &[&old_ca]).await.unwrap();
    assert_eq!(kept.get("/healthz").await.0, 200);

    new.write(dir.path());
    sighup(&child);
    assert!(
        eventually(Duration::from_secs(10), || async {
            matches!(Https::connect(addr, &[&new_ca]).await, Ok(c) if c.peer == new.der)
        })
        .await,
        "the new certificate is served after SIGHUP: {}",
        log.lock().unwrap()
    );
    assert!(
        Https::connect(addr, &[&old_ca]).await.is_err(),
        "new connections get the new certificate only"
    );
    assert_eq!(kept.peer, old.der);
    assert_eq!(
        kept.get("/healthz").await.0,
        200,
        "the kept-alive connection survives"
    );

    // A broken renewal: logged, and the current certificate stays.
    std::fs::write(&key_file, "garbage\n").unwrap();
    sighup(&child);
    assert!(
        eventually(Duration::from_secs(10), || async {
            log.lock().unwrap().contains("reload failed")
        })
        .await,
        "the failed reload is logged: {}",
        log.lock().unwrap()
    );
    let mut after = Https::connect(addr, &[&new_ca])
        .await
        .expect("still served");
    assert_eq!(after.get("/healthz").await.0, 200);
    assert_eq!(kept.get("/healthz").await.0, 200);

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let log = log.lock().unwrap().clone();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    assert!(
        log.contains("tls.key_file"),
        "the failure names the key: {log}"
    );
    for pem in [&old.key_pem, &new.key_pem] {
        let body = pem.lines().nth(1).unwrap();
        assert!(!log.contains(body), "key material in the log");
    }
}

/// `khoa serve` writes `khoa: …` as its last line when it exits with an error.
fn child_exited(log: &Mutex<String>) -> bool {
    log.lock().unwrap().lines().any(|l| l.starts_with("khoa: "))
}

#[tokio::test]
async fn the_real_binary_refuses_a_garbage_certificate_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "garbage\n").unwrap();
    let mut cmd = khoa_on(dir.path());
    cmd.env("KHOA_TLS__CERT_FILE", &cert)
        .env("KHOA_TLS__KEY_FILE", dir.path().join("key.pem"))
        .env("KHOA_LISTEN", "127.0.0.1:0");
    let out = crate::cli::run(cmd, &["serve"], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("tls.cert_file") && out.stderr.contains(&cert.display().to_string()),
        "{}",
        out.stderr
    );
}
