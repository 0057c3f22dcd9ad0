//! `khoa token get`: a token from any dialect's endpoint, for a human at a terminal — the
//! answer as the endpoint gave it (its refresh token redacted), or with `--header` the
//! `Authorization` line to paste into curl. With `--store DIR` the token is kept and shared
//! (`khoa_client::FileStore`), so scripts that call it often get the same token until it is due. Secrets come from files, standard input or the
//! environment, never from arguments, which other users of the host can read in `ps`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use khoa_client::{Clock, Credentials, FileStore, SystemClock, TokenSource, read_secret};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Fetch a token from a token endpoint described by a dialect and print it.
    Get(TokenGetArgs),
}

#[derive(Debug, Args)]
pub struct TokenGetArgs {
    /// A built-in dialect (oauth2, derivative, bankhub, partner, vietqr) or a definition file.
    #[arg(long, default_value = "oauth2")]
    pub dialect: String,
    /// The token endpoint's URL.
    #[arg(long, value_name = "URL")]
    pub token_url: String,
    /// Which of the definition's token endpoints logs in, when it has several.
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub client_id: Option<String>,
    /// A file holding the client secret (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret.
    #[arg(long, value_name = "NAME")]
    pub client_secret_env: Option<String>,
    #[arg(long)]
    pub username: Option<String>,
    /// A file holding the user's password (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    #[arg(long, value_name = "NAME")]
    pub password_env: Option<String>,
    #[arg(long)]
    pub scope: Option<String>,
    /// The partner code of an envelope dialect.
    #[arg(long)]
    pub partner_code: Option<String>,
    /// A file holding the partner's AES key in hex (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub partner_key_file: Option<PathBuf>,
    #[arg(long, value_name = "NAME")]
    pub partner_key_env: Option<String>,
    /// A file holding the signing key: RSA private key PEM, or an HMAC secret (`-`: stdin).
    #[arg(long, value_name = "FILE")]
    pub signing_key_file: Option<PathBuf>,
    #[arg(long, value_name = "NAME")]
    pub signing_key_env: Option<String>,
    /// Print only `Authorization: <type> <token>`, for `curl -H`.
    #[arg(long)]
    pub header: bool,
    /// Keep the token (and its refresh token) in this directory, shared by every `khoa token
    /// get --store` and `khoa agent` of the host that names it: a fresh saved token is printed
    /// without a call, a stale one refreshed (one process at a time, under a file lock).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// With --store: a new token now (a refresh when the store has a refresh token).
    #[arg(long, requires = "store")]
    pub refresh: bool,
}

pub async fn run(cmd: TokenCommand) -> Result<()> {
    let TokenCommand::Get(args) = cmd;
    let stdin_uses = [
        &args.client_secret_file,
        &args.password_file,
        &args.partner_key_file,
        &args.signing_key_file,
    ]
    .iter()
    .filter(|f| f.as_deref() == Some(Path::new("-")))
    .count();
    if stdin_uses > 1 {
        bail!("only one secret can come from standard input (`-`)");
    }
    let secret = |what: &str, file: &Option<PathBuf>, env: &Option<String>| {
        read_secret(what, file.as_deref(), env.as_deref()).map_err(anyhow::Error::msg)
    };
    let creds = Credentials {
        client_id: args.client_id.clone(),
        client_secret: secret(
            "client secret",
            &args.client_secret_file,
            &args.client_secret_env,
        )?,
        username: args.username.clone(),
        password: secret("password", &args.password_file, &args.password_env)?,
        scope: args.scope.clone(),
        partner_code: args.partner_code.clone(),
        partner_key_hex: secret("partner key", &args.partner_key_file, &args.partner_key_env)?,
        signing_key: secret("signing key", &args.signing_key_file, &args.signing_key_env)?,
    };
    let dialect = if khoa_dialect::built_in(&args.dialect).is_some() {
        khoa_client::load_built_in(&args.dialect)
    } else if Path::new(&args.dialect).exists() {
        khoa_client::load_file(Path::new(&args.dialect))
    } else {
        let names: Vec<_> = khoa_dialect::BUILT_IN.iter().map(|(n, _)| *n).collect();
        bail!(
            "--dialect {}: neither a built-in dialect ({}) nor a file",
            args.dialect,
            names.join(", ")
        );
    }?;
    let mut builder = TokenSource::builder(Arc::new(dialect))
        .token_url(&args.token_url)
        .credentials(creds);
    if let Some(e) = &args.endpoint {
        builder = builder.login_endpoint(e);
    }
    let Some(dir) = &args.store else {
        let source = builder.build()?;
        let (token, answer) = source
            .login_answer()
            .await
            .with_context(|| format!("token from {}", args.token_url))?;
        if args.header {
            println!("Authorization: {}", token.authorization());
        } else {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        return Ok(());
    };
    let source = builder.store(FileStore::new(dir)?).build()?;
    let token = if args.refresh {
        source.refresh().await
    } else {
        source.token().await
    }
    .with_context(|| format!("token from {}", args.token_url))?;
    if args.header {
        println!("Authorization: {}", token.authorization());
    } else {
        let now = SystemClock.now_ms();
        let answer = serde_json::json!({
            "access_token": token.secret(),
            "token_type": token.token_type(),
            "expires_in": token.expires_at_ms().saturating_sub(now) / 1000,
        });
        println!("{}", serde_json::to_string_pretty(&answer)?);
    }
    Ok(())
}
