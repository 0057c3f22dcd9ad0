//! The scenarios: what each one sends, prepared once per run ([`Plan`]) and carried by every
//! virtual client ([`Session`]) — for the rotation scenarios, the client's own chain of refresh
//! tokens.

use anyhow::{Context, Result, bail};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{self, HeaderName};
use rand::Rng;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use crate::cli::Scenario;
use crate::creds::{BENCH_OPAQUE_CLIENT, BENCH_OPAQUE_SECRET, Credentials};
use crate::http::{
    Answer, Body, Conn, FORM, JSON, Template, TransportError, basic, form, oauth2_basic,
};

/// What every virtual client of a run sends, prepared once.
pub enum Plan {
    /// The same request every time.
    Fixed(Template),
    /// Seed 002's encrypted login, sealed with a fresh IV for every request.
    PartnerLogin(Envelope),
    /// `/connect/token` refresh: each client redeems its own latest refresh token.
    Refresh(Chain),
    /// Seed 002's encrypted refresh: the same, inside the partner envelope.
    PartnerRefresh(Envelope),
}

/// Seed 002: JSON payloads sealed as `{"data": hex(IV || AES-256-CBC(json))}`.
pub struct Envelope {
    key: [u8; 32],
    login: Template,
    refresh: Template,
    login_json: Vec<u8>,
}

impl Envelope {
    fn new(c: &Credentials) -> Result<Self> {
        let p = &c.partner;
        let code = HeaderName::from_static("partner-code");
        let login_json = serde_json::json!({
            "username": p.username,
            "password": p.password,
            "client_id": p.client_id,
            "client_secret": p.client_secret,
        });
        Ok(Envelope {
            key: p.key()?,
            login: Template::post(&p.login_path, Some(JSON), Bytes::new())?
                .header(code.clone(), &p.partner_code)?,
            refresh: Template::post(&p.refresh_path, Some(JSON), Bytes::new())?
                .header(code, &p.partner_code)?,
            login_json: serde_json::to_vec(&login_json)?,
        })
    }

    fn seal(&self, template: &Template, plaintext: &[u8]) -> Request<Body> {
        let mut iv = [0u8; 16];
        rand::thread_rng().fill(&mut iv);
        let data = khoa_core::envelope::seal_hex(&self.key, &iv, plaintext);
        template.with_body(format!(r#"{{"data":"{data}"}}"#))
    }

    fn login(&self) -> Request<Body> {
        self.seal(&self.login, &self.login_json)
    }

    fn refresh(&self, token: &str) -> Request<Body> {
        let json = serde_json::json!({ "refresh_token": token }).to_string();
        self.seal(&self.refresh, json.as_bytes())
    }
}

/// RFC 6749 §6 refresh at `/connect/token` for seed 004's public client.
pub struct Chain {
    login: Template,
    refresh: Template,
    client_id: String,
}

impl Chain {
    fn refresh(&self, token: &str) -> Request<Body> {
        self.refresh.with_body(form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &self.client_id),
            ("refresh_token", token),
        ]))
    }
}

/// Seed 004's own request: the password grant for the public client.
fn password_login(c: &Credentials) -> Result<Template> {
    let o = &c.oauth2;
    let body = form(&[
        ("grant_type", "password"),
        ("client_id", &o.client_id),
        ("password", &o.password),
        ("username", &o.username),
    ]);
    Template::post(&o.path, Some(FORM), body)
}

fn client_credentials(path: &str, client_id: &str, secret: &str) -> Result<Template> {
    Template::post(path, Some(FORM), "grant_type=client_credentials")?
        .header(header::AUTHORIZATION, &oauth2_basic(client_id, secret))
}

/// Prepares `scenario`. The protected-resource scenarios fetch their access token here, once,
/// over `conn`.
pub async fn prepare(scenario: Scenario, c: &Credentials, conn: &mut Conn) -> Result<Plan> {
    let o = &c.oauth2;
    let service = || {
        client_credentials(
            &o.path,
            &o.confidential.client_id,
            &o.confidential.client_secret,
        )
    };
    Ok(match scenario {
        Scenario::Healthz => Plan::Fixed(Template::get("/healthz")?),
        Scenario::ClientCredentialsJwt => Plan::Fixed(service()?),
        Scenario::ClientCredentialsOpaque => Plan::Fixed(client_credentials(
            &o.path,
            BENCH_OPAQUE_CLIENT,
            BENCH_OPAQUE_SECRET,
        )?),
        Scenario::Password => Plan::Fixed(password_login(c)?),
        Scenario::Refresh => Plan::Refresh(Chain {
            login: password_login(c)?,
            refresh: Template::post(&o.path, Some(FORM), Bytes::new())?,
            client_id: o.client_id.clone(),
        }),
        Scenario::ProtectedResourceJwt => protected_resource(c, conn, service()?).await?,
        Scenario::ProtectedResourceOpaque => {
            // Seed 004's public client is issued opaque access tokens.
            protected_resource(c, conn, password_login(c)?).await?
        }
        Scenario::Introspect => {
            let token = fetch_access_token(conn, service()?).await?;
            let secret = &o.confidential;
            Plan::Fixed(
                Template::post(
                    &o.introspection_path,
                    Some(FORM),
                    form(&[("token", &token)]),
                )?
                .header(
                    header::AUTHORIZATION,
                    &oauth2_basic(&secret.client_id, &secret.client_secret),
                )?,
            )
        }
        Scenario::Derivative => {
            let d = &c.derivative;
            let body = serde_json::json!({ "username": d.username, "password": d.password });
            Plan::Fixed(Template::post(&d.path, Some(JSON), body.to_string())?)
        }
        Scenario::Bankhub => {
            let b = &c.bankhub;
            Plan::Fixed(Template::post(&b.path, None, Bytes::new())?.header(
                header::AUTHORIZATION,
                &basic(&b.client_id, &b.client_secret),
            )?)
        }
        Scenario::PartnerLogin => Plan::PartnerLogin(Envelope::new(c)?),
        Scenario::PartnerRefresh => Plan::PartnerRefresh(Envelope::new(c)?),
        Scenario::Vietqr => {
            let v = &c.vietqr;
            Plan::Fixed(
                Template::post(&v.path, None, Bytes::new())?
                    .header(header::AUTHORIZATION, &basic(&v.username, &v.password))?,
            )
        }
        Scenario::Argon2Bound | Scenario::SignBound => {
            bail!("{} is measured in-process, not over HTTP", scenario.name())
        }
    })
}

/// An access token, fetched once by `token_request`.
async fn fetch_access_token(conn: &mut Conn, token_request: Template) -> Result<String> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let answer = expect_success(
        conn.send(token_request.request(), deadline).await,
        "token request",
    )?;
    Tokens::parse(&answer.body)
        .and_then(|t| t.access_token)
        .context("the token answer carries no access_token")
}

/// `GET` of the protected resource with an access token fetched once by `token_request`.
async fn protected_resource(
    c: &Credentials,
    conn: &mut Conn,
    token_request: Template,
) -> Result<Plan> {
    let token = fetch_access_token(conn, token_request).await?;
    Ok(Plan::Fixed(
        Template::get(&c.oauth2.protected_resource)?
            .header(header::AUTHORIZATION, &format!("Bearer {token}"))?,
    ))
}

/// How long a set-up request (a login, fetching a token) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The token fields of a token endpoint's answer (every dialect names them alike).
#[derive(Deserialize)]
struct Tokens {
    access_token: Option<String>,
    refresh_token: Option<String>,
}

impl Tokens {
    fn parse(body: &[u8]) -> Option<Tokens> {
        serde_json::from_slice(body).ok()
    }
}

fn expect_success(result: Result<Answer, TransportError>, what: &str) -> Result<Answer> {
    let answer = result.with_context(|| format!("{what} failed"))?;
    if !answer.status.is_success() {
        let body = String::from_utf8_lossy(&answer.body);
        let body: String = body.chars().take(300).collect();
        bail!("{what} answered {}: {body}", answer.status);
    }
    Ok(answer)
}

/// One virtual client's state: the plan, and its own latest refresh token in a chain.
pub struct Session {
    plan: Arc<Plan>,
    refresh_token: Option<String>,
}

impl Session {
    /// A client ready to send; a chain logs in first.
    pub async fn start(plan: Arc<Plan>, conn: &mut Conn) -> Result<Self> {
        let mut s = Session {
            plan,
            refresh_token: None,
        };
        if s.is_chain() {
            s.log_in(conn, Instant::now() + SETUP_TIMEOUT).await?;
        }
        Ok(s)
    }

    /// Each request depends on the answer to the previous one.
    pub fn is_chain(&self) -> bool {
        matches!(*self.plan, Plan::Refresh(_) | Plan::PartnerRefresh(_))
    }

    /// Starts a new chain (after the old one broke). A login the server sheds (429/503) is
    /// tried again after its `Retry-After`, until `deadline`: every client of a rotation
    /// scenario logs in at once, and the server admits only a few Argon2 hashes at a time.
    pub async fn log_in(&mut self, conn: &mut Conn, deadline: Instant) -> Result<()> {
        let answer = loop {
            let req = match &*self.plan {
                Plan::Refresh(c) => c.login.request(),
                Plan::PartnerRefresh(e) => e.login(),
                Plan::Fixed(_) | Plan::PartnerLogin(_) => return Ok(()),
            };
            let result = conn.send(req, deadline).await;
            if let Ok(a) = &result
                && a.is_shed()
            {
                let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..100));
                let pause = a.retry_after.unwrap_or(Duration::from_millis(100)) + jitter;
                if Instant::now() + pause < deadline {
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            break expect_success(result, "login")?;
        };
        let token = Tokens::parse(&answer.body)
            .and_then(|t| t.refresh_token)
            .context("the login answer carries no refresh_token")?;
        self.refresh_token = Some(token);
        Ok(())
    }

    pub fn request(&self) -> Request<Body> {
        let token = self.refresh_token.as_deref().unwrap_or_default();
        match &*self.plan {
            Plan::Fixed(t) => t.request(),
            Plan::PartnerLogin(e) => e.login(),
            Plan::Refresh(c) => c.refresh(token),
            Plan::PartnerRefresh(e) => e.refresh(token),
        }
    }

    /// Whether `answer` is a success. A chain also needs the successor refresh token, and
    /// keeps it for its next request.
    pub fn accept(&mut self, answer: &Answer) -> bool {
        if !answer.status.is_success() {
            return false;
        }
        if !self.is_chain() {
            return true;
        }
        match Tokens::parse(&answer.body).and_then(|t| t.refresh_token) {
            Some(t) => {
                self.refresh_token = Some(t);
                true
            }
            None => false,
        }
    }
}
