//! `khoa demo`: every dialect at its documented path on an embedded database, seeded with the
//! example credentials of the seed documents, so each document's own sample runs unchanged but
//! for its base URL. The credentials are fixed and public (README); nothing else is printed.

use anyhow::{Context, Result, bail};
use khoa_core::engine::Engine;
use khoa_core::error::EngineError;
use khoa_core::model::{
    AccessTokenFormat, Client, GrantType, RefreshIssuance, RefreshTokenFormat, TokenPolicy,
};
use khoa_core::scope::{OPENID, ScopeSet};
use secrecy::SecretString;
use std::path::{Path, PathBuf};

use crate::cli::DemoArgs;
use crate::config::Config;
use crate::dialects::registry;
use crate::resource::PROTECTED_RESOURCE_PATH;
use crate::startup::{App, shutdown_signal};

/// Seed 004's example credentials.
pub const OAUTH2_PUBLIC_CLIENT: &str = "YOUR_CLIENT_ID";
pub const OAUTH2_USERNAME: &str = "account@tripdata.vn";
pub const OAUTH2_PASSWORD: &str = "@Password123";
pub const OAUTH2_SCOPES: &str = "client-data config-data hub-data offline_access user-data";
/// A confidential client for `client_credentials` (not in the document; fixed for the demo).
pub const OAUTH2_SERVICE_CLIENT: &str = "demo-service";
pub const OAUTH2_SERVICE_SECRET: &str = "demo-service-secret-0123456789abcdef";
/// A public web client of the authorization code flow (not in the document; fixed for the
/// demo), sent back to a local page after sign-in.
pub const OAUTH2_WEB_CLIENT: &str = "demo-web";
pub const OAUTH2_WEB_REDIRECT_URI: &str = "http://127.0.0.1:8000/callback";
pub const OAUTH2_WEB_SCOPES: &str = "offline_access openid user-data";
/// RFC 7636 Appendix B's verifier and its S256 challenge, so the printed example runs as is.
pub const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Seed 000's example account, for both account types.
pub const DERIVATIVE_USERNAME: &str = "022C099995";
pub const DERIVATIVE_PASSWORD: &str = "123456aA@";
/// Seed 001: the bank hub gives partners a client id and secret; these are the demo's.
pub const BANKHUB_CLIENT: &str = "bankhub-demo";
pub const BANKHUB_SECRET: &str = "bankhub-demo-secret-0123456789abcdef";
/// Seed 002: the partner code of the document's samples, the demo's published AES key, and
/// the login its payload carries.
pub const PARTNER_CODE: &str = "YOUR_PARTNER_CODE";
pub const PARTNER_KEY_HEX: &str =
    "f41b33bef7f43a4c4c7d0804e435be79c58f261d52791d9095c2ff0eb0341132";
pub const PARTNER_CLIENT: &str = "tconnect-demo";
pub const PARTNER_CLIENT_SECRET: &str = "tconnect-demo-secret-0123456789abcdef";
pub const PARTNER_USERNAME: &str = "merchant@tconnect.vn";
pub const PARTNER_PASSWORD: &str = "Merchant@123";
/// Seed 003: the credential in the document's Java sample (its Basic header decodes to this).
pub const VIETQR_USERNAME: &str = "customer-vietqrtest-user2468";
pub const VIETQR_PASSWORD: &str = "Y3VzdG9tZXItdmlldHFydGVzdC11c2VyMjQ2OA==";

/// The demo's configuration: every built-in dialect on, at its documented path.
pub fn demo_config(base: Config) -> Config {
    let mut c = base;
    for name in registry::built_in_names() {
        c.dialects.enable(name);
    }
    c
}

/// What the demo serves, to find its paths and settings by dialect and endpoint.
struct Served<'a>(&'a [std::sync::Arc<khoa_dialect::Dialect>]);

impl Served<'_> {
    fn dialect(&self, name: &str) -> Option<&khoa_dialect::Dialect> {
        self.0.iter().find(|d| d.name == name).map(|d| d.as_ref())
    }

    /// The path of `dialect`'s `endpoint`, as the loaded definition has it.
    fn path(&self, dialect: &str, endpoint: &str) -> String {
        self.dialect(dialect)
            .and_then(|d| d.endpoints.iter().find(|e| e.name == endpoint))
            .map(|e| e.path.clone())
            .unwrap_or_default()
    }

    fn setting(&self, dialect: &str, key: &str) -> Option<String> {
        self.dialect(dialect)?
            .settings
            .get(key)?
            .as_str()
            .map(str::to_owned)
    }
}

pub async fn run(args: DemoArgs, base: Config) -> Result<()> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        bail!(
            "the demo listens on loopback only; pass --allow-remote to listen on {}",
            args.listen
        );
    }
    let data = match args.data {
        Some(d) => d,
        None => fresh_dir()?,
    };
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let mut base = base;
    if args.dialects.is_some() {
        base.dialects.dir = args.dialects;
    }
    let config = demo_config(Config {
        listen: args.listen,
        database_url: format!("sqlite://{}", data.join("khoa.db").display()),
        master_key: None,
        master_key_file: Some(data.join("master.key")),
        issuer: None,
        ..base
    });
    let app = App::build(config).await?;
    let base_url = format!("http://{}", app.local_addr());
    let served = Served(&app.state().defined_dialects);
    seed_served(&app.state().engine, &served).await?;
    write_demo_json(&data, &base_url, &served)?;
    print_instructions(&base_url, &data, &served);
    for d in app.state().defined_dialects.iter() {
        if let khoa_dialect::Origin::File(file) = &d.origin {
            println!();
            println!("# {} ({}), from {}:", d.name, d.title, file.display());
            for e in &d.endpoints {
                if let Some(c) = &e.client {
                    println!(
                        "# (its client first: KHOA_DATABASE_URL=sqlite://{}/khoa.db \
                         KHOA_MASTER_KEY_FILE={}/master.key khoa client add {c})",
                        data.display(),
                        data.display()
                    );
                }
                if let Some(hint) = signing_hint(e) {
                    println!("{hint}");
                }
                println!("{}", curl_line(&base_url, e));
            }
        }
    }
    app.run(shutdown_signal()).await?;
    Ok(())
}

fn fresh_dir() -> Result<PathBuf> {
    use rand::Rng;
    let dir = std::env::temp_dir().join(format!(
        "khoa-demo-{}-{:08x}",
        std::process::id(),
        rand::thread_rng().r#gen::<u32>()
    ));
    Ok(dir)
}

/// Creates the demo principals of every dialect, as the built-in definitions bind them; on a
/// reused data directory they already exist, which is fine.
pub async fn seed(engine: &Engine) -> Result<()> {
    let built_ins: Vec<_> = registry::built_ins(&Default::default())?
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    seed_served(engine, &Served(&built_ins)).await
}

async fn seed_served(engine: &Engine, served: &Served<'_>) -> Result<()> {
    seed_oauth2(engine).await?;
    seed_derivative(engine, served).await?;
    seed_bankhub(engine).await?;
    seed_partner(engine).await?;
    seed_vietqr(engine).await?;
    Ok(())
}

fn client(id: &str, name: &str, grants: &[GrantType], scopes: &str, policy: TokenPolicy) -> Client {
    let scopes = ScopeSet::parse(scopes).expect("valid scopes");
    Client {
        client_id: id.into(),
        name: name.into(),
        secret_hash: None,
        allowed_scopes: scopes.clone(),
        default_scopes: scopes,
        grant_types: grants.to_vec(),
        redirect_uris: Vec::new(),
        policy,
        disabled: false,
        created_at: 0,
    }
}

async fn seed_oauth2(engine: &Engine) -> Result<()> {
    let scopes = ScopeSet::parse(OAUTH2_SCOPES).expect("valid scopes");
    let public = client(
        OAUTH2_PUBLIC_CLIENT,
        "TripData demo (seed 004)",
        &[GrantType::Password, GrantType::RefreshToken],
        OAUTH2_SCOPES,
        TokenPolicy {
            // Seed 004's sample answers a 43-character reference token: opaque, like it.
            access_format: AccessTokenFormat::Opaque,
            access_ttl: 3600,
            refresh: RefreshIssuance::OfflineAccess,
            ..TokenPolicy::default()
        },
    );
    ignore_existing(engine.admin().create_client(public, false, None).await)?;
    let service = Client {
        default_scopes: ScopeSet::parse("hub-data").expect("valid"),
        ..client(
            OAUTH2_SERVICE_CLIENT,
            "demo service (client_credentials)",
            &[GrantType::ClientCredentials],
            "config-data hub-data",
            TokenPolicy::default(),
        )
    };
    let secret = SecretString::from(OAUTH2_SERVICE_SECRET);
    ignore_existing(
        engine
            .admin()
            .create_client(service, true, Some(secret))
            .await,
    )?;
    let web = Client {
        redirect_uris: vec![OAUTH2_WEB_REDIRECT_URI.to_owned()],
        ..client(
            OAUTH2_WEB_CLIENT,
            "demo web app (authorization code + PKCE)",
            &[GrantType::AuthorizationCode, GrantType::RefreshToken],
            OAUTH2_WEB_SCOPES,
            TokenPolicy::default(),
        )
    };
    ignore_existing(engine.admin().create_client(web, false, None).await)?;
    // The document's user may also sign in to the web client with OpenID Connect.
    let allowed = ScopeSet::parse(&format!("{scopes} {OPENID}")).expect("valid scopes");
    let password = SecretString::from(OAUTH2_PASSWORD);
    ignore_existing(
        engine
            .admin()
            .create_user(OAUTH2_USERNAME, &password, Some(allowed))
            .await,
    )?;
    Ok(())
}

async fn seed_derivative(engine: &Engine, served: &Served<'_>) -> Result<()> {
    let policy = TokenPolicy {
        access_format: AccessTokenFormat::Account,
        access_ttl: 28_800,
        refresh: RefreshIssuance::Always,
        refresh_format: RefreshTokenFormat::Account,
        refresh_ttl: 7 * 24 * 3600,
        otp: true,
        ..TokenPolicy::default()
    };
    let grants = [GrantType::Password, GrantType::RefreshToken];
    // The clients the derivative definition binds its two account types to.
    for (key, name) in [
        ("derivative_client", "derivative accounts (seed 000)"),
        ("underlying_client", "underlying accounts (seed 000)"),
    ] {
        let Some(id) = served.setting("derivative", key) else {
            continue;
        };
        let c = client(&id, name, &grants, "trading", policy.clone());
        ignore_existing(engine.admin().create_client(c, false, None).await)?;
    }
    let password = SecretString::from(DERIVATIVE_PASSWORD);
    ignore_existing(
        engine
            .admin()
            .create_user(DERIVATIVE_USERNAME, &password, None)
            .await,
    )?;
    Ok(())
}

async fn seed_bankhub(engine: &Engine) -> Result<()> {
    let c = client(
        BANKHUB_CLIENT,
        "bank hub demo (seed 001)",
        &[GrantType::ClientCredentials],
        "bankhub",
        TokenPolicy {
            access_format: AccessTokenFormat::Hex40,
            access_ttl: 60_000,
            refresh: RefreshIssuance::Never,
            ..TokenPolicy::default()
        },
    );
    let secret = SecretString::from(BANKHUB_SECRET);
    ignore_existing(engine.admin().create_client(c, true, Some(secret)).await)
}

async fn seed_partner(engine: &Engine) -> Result<()> {
    let c = client(
        PARTNER_CLIENT,
        "TCONNECT partner demo (seed 002)",
        &[GrantType::Password, GrantType::RefreshToken],
        "partner",
        TokenPolicy {
            access_format: AccessTokenFormat::Jwt,
            access_ttl: 3600,
            refresh: RefreshIssuance::Always,
            refresh_format: RefreshTokenFormat::Jwt,
            refresh_ttl: 86_400,
            ..TokenPolicy::default()
        },
    );
    let secret = SecretString::from(PARTNER_CLIENT_SECRET);
    ignore_existing(engine.admin().create_client(c, true, Some(secret)).await)?;
    let password = SecretString::from(PARTNER_PASSWORD);
    ignore_existing(
        engine
            .admin()
            .create_user(PARTNER_USERNAME, &password, None)
            .await,
    )?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(PARTNER_KEY_HEX, &mut key).expect("valid demo key");
    ignore_existing(
        engine
            .admin()
            .add_partner(
                PARTNER_CODE,
                "TCONNECT demo partner",
                PARTNER_CLIENT,
                Some(key),
            )
            .await,
    )
}

async fn seed_vietqr(engine: &Engine) -> Result<()> {
    let c = client(
        VIETQR_USERNAME,
        "VietQR transaction sync (seed 003)",
        &[GrantType::ClientCredentials],
        "transaction-sync",
        TokenPolicy {
            access_format: AccessTokenFormat::Opaque,
            access_ttl: 300,
            refresh: RefreshIssuance::Never,
            ..TokenPolicy::default()
        },
    );
    let secret = SecretString::from(VIETQR_PASSWORD);
    ignore_existing(engine.admin().create_client(c, true, Some(secret)).await)
}

fn ignore_existing<T>(r: Result<T, EngineError>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(EngineError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What `DATA_DIR/demo.json` holds: one object per dialect with its path(s) and the credential
/// fields its document names.
fn demo_json(base_url: &str, d: &Served<'_>) -> serde_json::Value {
    serde_json::json!({
        "base_url": base_url,
        "oauth2": {
            "path": d.path("oauth2", "token"),
            "client_id": OAUTH2_PUBLIC_CLIENT,
            "username": OAUTH2_USERNAME,
            "password": OAUTH2_PASSWORD,
            "scope": OAUTH2_SCOPES,
            "protected_resource": PROTECTED_RESOURCE_PATH,
            "confidential": {
                "client_id": OAUTH2_SERVICE_CLIENT,
                "client_secret": OAUTH2_SERVICE_SECRET,
            },
            "authorization_code": {
                "authorize_path": crate::authorize::AUTHORIZE_PATH,
                "client_id": OAUTH2_WEB_CLIENT,
                "redirect_uri": OAUTH2_WEB_REDIRECT_URI,
                "scope": OAUTH2_WEB_SCOPES,
                "code_verifier": PKCE_VERIFIER,
                "code_challenge": PKCE_CHALLENGE,
            },
        },
        "derivative": {
            "path": d.path("derivative", "derivative"),
            "underlying_path": d.path("derivative", "underlying"),
            "username": DERIVATIVE_USERNAME,
            "password": DERIVATIVE_PASSWORD,
        },
        "bankhub": {
            "path": d.path("bankhub", "token"),
            "client_id": BANKHUB_CLIENT,
            "client_secret": BANKHUB_SECRET,
        },
        "partner": {
            "path": d.path("partner", "refresh"),
            "login_path": d.path("partner", "login"),
            "refresh_path": d.path("partner", "refresh"),
            "partner_code": PARTNER_CODE,
            "key_hex": PARTNER_KEY_HEX,
            "username": PARTNER_USERNAME,
            "password": PARTNER_PASSWORD,
            "client_id": PARTNER_CLIENT,
            "client_secret": PARTNER_CLIENT_SECRET,
        },
        "vietqr": {
            "path": d.path("vietqr", "token_generate"),
            "transaction_sync_path": d.path("vietqr", "transaction_sync"),
            "username": VIETQR_USERNAME,
            "password": VIETQR_PASSWORD,
        },
    })
}

fn write_demo_json(dir: &Path, base_url: &str, d: &Served<'_>) -> Result<()> {
    let path = dir.join("demo.json");
    let text = serde_json::to_string_pretty(&demo_json(base_url, d))?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// The demo's example authorization request (RFC 6749 §4.1.1 with RFC 7636 §4.3).
pub fn authorize_url(base: &str) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "{base}{}?response_type=code&client_id={OAUTH2_WEB_CLIENT}&redirect_uri={}&scope={}&state=demo-state&code_challenge={PKCE_CHALLENGE}&code_challenge_method=S256",
        crate::authorize::AUTHORIZE_PATH,
        enc(OAUTH2_WEB_REDIRECT_URI),
        enc(OAUTH2_WEB_SCOPES),
    )
}

fn print_instructions(base: &str, data: &Path, d: &Served<'_>) {
    let token = d.path("oauth2", "token");
    println!("khoa demo listening on {base}");
    println!(
        "data directory: {} (credentials in demo.json)",
        data.display()
    );
    println!();
    println!("# seed 004 (OAuth 2.0 password grant):");
    println!(
        "curl --location '{base}{token}' \\\n  --header 'Content-Type: application/x-www-form-urlencoded' \\\n  --data-urlencode 'grant_type=password' \\\n  --data-urlencode 'client_id={OAUTH2_PUBLIC_CLIENT}' \\\n  --data-urlencode 'password={OAUTH2_PASSWORD}' \\\n  --data-urlencode 'username={OAUTH2_USERNAME}'"
    );
    println!("# the protected resource, with the access_token from above:");
    println!("curl {base}{PROTECTED_RESOURCE_PATH} -H 'Authorization: Bearer ACCESS_TOKEN'");
    println!("# refresh (rotates: the old refresh token stops working):");
    println!(
        "curl {base}{token} -d grant_type=refresh_token -d client_id={OAUTH2_PUBLIC_CLIENT} --data-urlencode refresh_token=REFRESH_TOKEN"
    );
    println!("# client_credentials (JWT access token):");
    println!(
        "curl {base}{token} -u {OAUTH2_SERVICE_CLIENT}:{OAUTH2_SERVICE_SECRET} -d grant_type=client_credentials"
    );
    println!("# authorization code + PKCE: open in a browser, sign in as above; the page at");
    println!(
        "#   {OAUTH2_WEB_REDIRECT_URI} receives ?code=… (nothing needs to listen there), then:"
    );
    println!("{}", authorize_url(base));
    println!(
        "curl {base}{token} -d grant_type=authorization_code -d client_id={OAUTH2_WEB_CLIENT} --data-urlencode redirect_uri={OAUTH2_WEB_REDIRECT_URI} -d code_verifier={PKCE_VERIFIER} --data-urlencode code=CODE"
    );
    println!();
    println!(
        "# seed 000 (derivative login; POSTs to the protected resource also need x-otp-token):"
    );
    println!(
        "curl -X POST '{base}{}' -H 'Content-Type: application/json' -d '{{\"username\": \"{DERIVATIVE_USERNAME}\", \"password\": \"{DERIVATIVE_PASSWORD}\"}}'",
        d.path("derivative", "derivative")
    );
    println!();
    println!("# seed 001 (bank hub token):");
    println!(
        "curl --request POST --url {base}{} --user '{BANKHUB_CLIENT}:{BANKHUB_SECRET}'",
        d.path("bankhub", "token")
    );
    println!();
    println!(
        "# seed 002 (encrypted partner API): Partner-Code {PARTNER_CODE}, AES-256 key {PARTNER_KEY_HEX};"
    );
    println!(
        "#   POST {base}{} and {base}{} with {{\"data\": hex(IV || AES-256-CBC(json))}}; login json:",
        d.path("partner", "login"),
        d.path("partner", "refresh")
    );
    println!(
        "#   {{\"username\":\"{PARTNER_USERNAME}\",\"password\":\"{PARTNER_PASSWORD}\",\"client_id\":\"{PARTNER_CLIENT}\",\"client_secret\":\"{PARTNER_CLIENT_SECRET}\"}}"
    );
    println!();
    println!("# seed 003 (VietQR token_generate, the document's Java sample credential):");
    println!(
        "curl -X POST {base}{} -u '{VIETQR_USERNAME}:{VIETQR_PASSWORD}' -H 'Content-Type: application/json' -d '{{}}'",
        d.path("vietqr", "token_generate")
    );
    println!();
    println!("Press Ctrl-C to stop.");
}

/// How to make the SIGNATURE of a signed endpoint's curl line: what is signed, with shell
/// variables named like [`curl_line`]'s placeholders, and the openssl command that signs it.
pub fn signing_hint(e: &khoa_dialect::load::Endpoint) -> Option<String> {
    use khoa_dialect::def::SignatureKind;
    use khoa_dialect::load::{Source, parse_source};
    let sig = e.signature.as_ref()?;
    let placeholder = |name: &str| {
        let source = parse_source(name).ok()?;
        let input = e.inputs.iter().find(|i| i.source == source);
        let var = match (input, &source) {
            (Some(i), _) => i.input.as_str().to_uppercase(),
            _ if source == sig.timestamp => "TIMESTAMP".to_owned(),
            (None, Source::Header(_, h)) => h.to_uppercase().replace('-', "_"),
            _ => "VALUE".to_owned(),
        };
        Some(serde_json::Value::String(format!("${var}")))
    };
    let payload = sig.payload.render(&placeholder);
    let payload = payload.as_str().unwrap_or_default();
    let sign = match sig.kind {
        SignatureKind::RsaSha256 => "openssl dgst -sha256 -sign client.key.pem",
        SignatureKind::HmacSha256 => "openssl dgst -sha256 -hmac \"$SECRET\" -binary",
        SignatureKind::HmacSha512 => "openssl dgst -sha512 -hmac \"$SECRET\" -binary",
    };
    Some(format!(
        "# TIMESTAMP=$(date -Iseconds); SIGNATURE=$(printf '%s' \"{payload}\" | {sign} | base64 -w0)"
    ))
}

/// A curl line for an endpoint of a definition file: its method and path, each input where the
/// definition reads it, with the input's name in capitals to fill in (fixed values as they
/// must be).
pub fn curl_line(base: &str, e: &khoa_dialect::load::Endpoint) -> String {
    use khoa_dialect::def::{BodyKind, ClientAuth};
    use khoa_dialect::load::Source;
    let mut line = format!("curl -X {} '{base}{}'", e.method.as_str(), e.path);
    if e.client_auth != ClientAuth::Inputs {
        line.push_str(" --user 'CLIENT_ID:CLIENT_SECRET'");
    }
    let mut body = serde_json::Map::new();
    let mut put = |path: &[String], value: serde_json::Value| {
        let mut at = &mut body;
        for seg in &path[..path.len() - 1] {
            at = at
                .entry(seg.clone())
                .or_insert_with(|| serde_json::Value::Object(Default::default()))
                .as_object_mut()
                .expect("an object on the way");
        }
        at.insert(path[path.len() - 1].clone(), value);
    };
    let sources = e
        .inputs
        .iter()
        .map(|i| (&i.source, i.input.as_str().to_uppercase().into()))
        .chain(e.require.iter().map(|(s, v)| (s, v.clone())));
    for (source, value) in sources {
        match source {
            Source::Body(path) if e.envelope.is_none() => put(path, value),
            Source::Body(_) => {}
            Source::Header(_, h) => {
                line.push_str(&format!(" -H '{h}: {}'", value.as_str().unwrap_or("VALUE")))
            }
            Source::Authorization(scheme) => line.push_str(&format!(
                " -H 'Authorization: {scheme} {}'",
                value.as_str().unwrap_or("VALUE")
            )),
        }
    }
    if let Some(sig) = &e.signature {
        for (source, value) in [(&sig.timestamp, "TIMESTAMP"), (&sig.header, "SIGNATURE")] {
            if let Source::Header(_, h) = source
                && !line.contains(&format!(" -H '{h}: "))
            {
                line.push_str(&format!(" -H '{h}: {value}'"));
            }
        }
    }
    if let Some(env) = &e.envelope {
        line.push_str(&format!(" -H '{}: KEY'", env.key_header));
        put(std::slice::from_ref(&env.field), "ENVELOPE".into());
    }
    match e.body {
        BodyKind::Json => line.push_str(&format!(
            " -H 'Content-Type: application/json' -d '{}'",
            serde_json::Value::Object(body)
        )),
        BodyKind::Form => {
            for (k, v) in body {
                let v = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                line.push_str(&format!(" --data-urlencode '{k}={v}'"));
            }
        }
        BodyKind::Empty => {}
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_endpoint_gets_its_signature_headers_and_how_to_sign() {
        let text = include_str!("../../../dialects/snap.toml");
        let d = khoa_dialect::load(text, khoa_dialect::Origin::BuiltIn, &Default::default())
            .expect("snap.toml loads");
        let e = &d.endpoints[0];
        let line = curl_line("http://h", e);
        assert!(line.contains(" -H 'X-CLIENT-KEY: CLIENT_ID'"), "{line}");
        assert!(line.contains(" -H 'X-TIMESTAMP: TIMESTAMP'"), "{line}");
        assert!(line.contains(" -H 'X-SIGNATURE: SIGNATURE'"), "{line}");
        let hint = signing_hint(e).expect("a signed endpoint");
        assert!(
            hint.contains("printf '%s' \"$CLIENT_ID|$TIMESTAMP\" | openssl dgst -sha256 -sign"),
            "{hint}"
        );
        let casso = include_str!("../../../dialects/casso.toml");
        let d =
            khoa_dialect::load(casso, khoa_dialect::Origin::BuiltIn, &Default::default()).unwrap();
        assert!(signing_hint(&d.endpoints[0]).is_none());
    }
}
