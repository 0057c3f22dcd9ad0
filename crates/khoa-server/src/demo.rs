//! `khoa demo`: every dialect at its documented path on an embedded database, seeded with the
//! example credentials of the seed documents, so each document's own sample runs unchanged but
//! for its base URL. The credentials are fixed and public (README); nothing else is printed.

use anyhow::{Context, Result, bail};
use khoa_core::engine::Engine;
use khoa_core::error::EngineError;
use khoa_core::model::{AccessTokenFormat, Client, GrantType, RefreshIssuance, TokenPolicy};
use khoa_core::scope::ScopeSet;
use secrecy::SecretString;
use std::path::{Path, PathBuf};

use crate::cli::DemoArgs;
use crate::config::Config;
use crate::dialects::oauth2::TOKEN_PATH;
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
    let config = Config {
        listen: args.listen,
        database_url: format!("sqlite://{}", data.join("khoa.db").display()),
        master_key: None,
        master_key_file: Some(data.join("master.key")),
        issuer: None,
        ..base
    };
    let app = App::build(config).await?;
    let base_url = format!("http://{}", app.local_addr());
    seed(&app.state().engine).await?;
    write_demo_json(&data, &base_url)?;
    print_instructions(&base_url, &data);
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

/// Creates the demo principals; on a reused data directory they already exist, which is fine.
pub async fn seed(engine: &Engine) -> Result<()> {
    let scopes = ScopeSet::parse(OAUTH2_SCOPES).expect("valid scopes");
    let public = Client {
        client_id: OAUTH2_PUBLIC_CLIENT.into(),
        name: "TripData demo (seed 004)".into(),
        secret_hash: None,
        allowed_scopes: scopes.clone(),
        default_scopes: scopes.clone(),
        grant_types: vec![GrantType::Password, GrantType::RefreshToken],
        policy: TokenPolicy {
            // Seed 004's sample answers a 43-character reference token: opaque, like it.
            access_format: AccessTokenFormat::Opaque,
            access_ttl: 3600,
            refresh: RefreshIssuance::OfflineAccess,
            ..TokenPolicy::default()
        },
        disabled: false,
        created_at: 0,
    };
    ignore_existing(engine.create_client(public, false, None).await)?;
    let service = Client {
        client_id: OAUTH2_SERVICE_CLIENT.into(),
        name: "demo service (client_credentials)".into(),
        secret_hash: None,
        allowed_scopes: ScopeSet::parse("config-data hub-data").expect("valid"),
        default_scopes: ScopeSet::parse("hub-data").expect("valid"),
        grant_types: vec![GrantType::ClientCredentials],
        policy: TokenPolicy::default(),
        disabled: false,
        created_at: 0,
    };
    let secret = SecretString::from(OAUTH2_SERVICE_SECRET);
    ignore_existing(engine.create_client(service, true, Some(secret)).await)?;
    let password = SecretString::from(OAUTH2_PASSWORD);
    ignore_existing(
        engine
            .create_user(OAUTH2_USERNAME, &password, Some(scopes))
            .await,
    )?;
    Ok(())
}

fn ignore_existing<T>(r: Result<T, EngineError>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(EngineError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn demo_json(base_url: &str) -> serde_json::Value {
    serde_json::json!({
        "base_url": base_url,
        "oauth2": {
            "path": TOKEN_PATH,
            "client_id": OAUTH2_PUBLIC_CLIENT,
            "username": OAUTH2_USERNAME,
            "password": OAUTH2_PASSWORD,
            "scope": OAUTH2_SCOPES,
            "protected_resource": PROTECTED_RESOURCE_PATH,
            "confidential": {
                "client_id": OAUTH2_SERVICE_CLIENT,
                "client_secret": OAUTH2_SERVICE_SECRET,
            },
        },
    })
}

fn write_demo_json(dir: &Path, base_url: &str) -> Result<()> {
    let path = dir.join("demo.json");
    let text = serde_json::to_string_pretty(&demo_json(base_url))?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn print_instructions(base: &str, data: &Path) {
    println!("khoa demo listening on {base}");
    println!(
        "data directory: {} (credentials in demo.json)",
        data.display()
    );
    println!();
    println!("# seed 004 (OAuth 2.0 password grant):");
    println!(
        "curl --location '{base}{TOKEN_PATH}' \\\n  --header 'Content-Type: application/x-www-form-urlencoded' \\\n  --data-urlencode 'grant_type=password' \\\n  --data-urlencode 'client_id={OAUTH2_PUBLIC_CLIENT}' \\\n  --data-urlencode 'password={OAUTH2_PASSWORD}' \\\n  --data-urlencode 'username={OAUTH2_USERNAME}'"
    );
    println!();
    println!("# the protected resource, with the access_token from above:");
    println!("curl {base}{PROTECTED_RESOURCE_PATH} -H 'Authorization: Bearer ACCESS_TOKEN'");
    println!();
    println!("# refresh (rotates: the old refresh token stops working):");
    println!(
        "curl {base}{TOKEN_PATH} -d grant_type=refresh_token -d client_id={OAUTH2_PUBLIC_CLIENT} --data-urlencode refresh_token=REFRESH_TOKEN"
    );
    println!();
    println!("# client_credentials (JWT access token):");
    println!(
        "curl {base}{TOKEN_PATH} -u {OAUTH2_SERVICE_CLIENT}:{OAUTH2_SERVICE_SECRET} -d grant_type=client_credentials"
    );
    println!();
    println!("Press Ctrl-C to stop.");
}
