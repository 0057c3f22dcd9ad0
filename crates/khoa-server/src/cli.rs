//! The `khoa` command line (clap). Verbs stay thin: parse, call the engine, print.

use clap::{Args, Parser, Subcommand};
use khoa_core::model::{AccessTokenFormat, GrantType, RefreshIssuance, RefreshTokenFormat};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "khoa",
    version,
    about = "khoa — one token engine, every dialect"
)]
pub struct Cli {
    /// TOML configuration file; every key can be overridden by a KHOA_* environment variable.
    #[arg(long, global = true, env = "KHOA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the token server.
    Serve,
    /// Serve every dialect on a fresh embedded database seeded with the documents' examples.
    Demo(DemoArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage users (resource owners).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage partners of the encrypted dialect (seed 002) and their AES keys.
    #[command(subcommand)]
    Partner(PartnerCommand),
    /// Read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Copy the SQLite database while the server runs (a consistent snapshot, verified).
    Backup(BackupArgs),
    /// Dialect definitions: list what is served, show, check a file, print the JSON Schema.
    #[command(subcommand)]
    Dialect(DialectCommand),
    /// Tokens from any dialect's endpoint, as its caller: `khoa token get`.
    #[command(subcommand)]
    Token(Box<crate::token_cli::TokenCommand>),
    /// A local credential-injecting proxy: http://LISTEN/NAME/<path> is forwarded to upstream
    /// NAME with a fresh token (README: "Calling a partner through `khoa agent`").
    Agent {
        /// The agent's TOML configuration (deploy/agent.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DialectCommand {
    /// Every dialect: name, source (built-in or file), state, and its endpoints.
    List,
    /// Print a dialect's definition (built-in or from `dialects.dir`), a starting point to copy.
    Show {
        /// The dialect's name.
        name: String,
    },
    /// Validate a definition file and print the endpoints it would serve; exit 1 naming the
    /// file, the line and the key of the first mistake.
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the JSON Schema of definition files, for editors that validate TOML.
    Schema,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write; refused if it exists (unless --force).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Replace an existing backup file.
    #[arg(long)]
    pub force: bool,
    /// Database pages copied per step; between steps the live writer has the disk to itself.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub step_pages: u32,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first. Times are Unix seconds, UTC dates
    /// (`2026-01-31` or `2026-01-31T08:00:00Z`), or durations ago (`90s`, `15m`, `2h`, `7d`).
    List(AuditListArgs),
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    /// Only events about this subject (a user id, or the username of a failed login or an
    /// admin action on a user).
    #[arg(long)]
    pub subject: Option<String>,
    /// Only events of this client.
    #[arg(long)]
    pub client: Option<String>,
    /// Only events of this kind: login_success, login_failure, token_issued, refresh_reuse,
    /// family_revoked, revocation, lockout, key_rotation, admin.
    #[arg(long)]
    pub kind: Option<khoa_core::store::AuditKind>,
    /// Only events at or after this time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events at or before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PartnerCommand {
    /// Register a partner bound to an existing client; its AES-256 key is printed once (hex).
    Add {
        /// The Partner-Code header value.
        code: String,
        /// The confidential client whose logins the partner makes.
        #[arg(long)]
        client_id: String,
        /// Display name (defaults to the code).
        #[arg(long)]
        name: Option<String>,
    },
    /// List partners and their keys (ids and validity only).
    List,
    /// Issue a new key (printed once); the old keys keep working for the overlap.
    RotateKey {
        code: String,
        /// Seconds the previous keys stay valid (default: dialects.partner.key_overlap_secs).
        #[arg(long)]
        overlap: Option<i64>,
    },
    /// Delete a partner and its keys.
    Remove { code: String },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = crate::config::parse_listen)]
    pub listen: SocketAddr,
    /// Directory for the demo database, master key and demo.json (default: a fresh temporary
    /// directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// A directory of dialect definitions (`*.toml`) to serve beside the built-in ones, as
    /// `dialects.dir` does for `khoa serve`; a curl line is printed for each endpoint.
    #[arg(long, value_name = "DIR")]
    pub dialects: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client. A confidential client's generated secret is printed once.
    Add(ClientAddArgs),
    /// List clients.
    List,
    /// Show one client.
    Show { client_id: String },
    /// Replace a confidential client's secret (generated and printed once, or read from stdin).
    RotateSecret {
        client_id: String,
        /// Read the new secret from the first line of standard input.
        #[arg(long)]
        secret_stdin: bool,
    },
    /// Delete a client.
    Remove { client_id: String },
    /// Keys a client signs its requests with, for signature dialects (SNAP): RSA public keys
    /// and HMAC secrets.
    #[command(subcommand)]
    Key(ClientKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClientKeyCommand {
    /// Register an RSA public key (PEM `PUBLIC KEY`, as `openssl rsa -pubout` writes it) or
    /// an HMAC shared secret (stored sealed under the master key).
    Add {
        client_id: String,
        #[command(flatten)]
        material: KeyMaterialArgs,
        /// The key's name among the client's keys (default: the first 16 hex digits of a
        /// public key's SHA-256; 16 random hex digits for a secret).
        #[arg(long)]
        kid: Option<String>,
    },
    /// List a client's keys, newest first.
    List { client_id: String },
    /// Remove one key.
    Remove { client_id: String, kid: String },
}

/// What `client key add` registers: exactly one of the two.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct KeyMaterialArgs {
    /// An RSA public key, PEM: for `rsa_sha256` signatures.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// A file holding the secret shared with the client (its bytes, without a final line
    /// ending; at least 32): for `hmac_sha256` and `hmac_sha512` signatures. A file, never
    /// an argument, so that it stays out of shell history and `ps`.
    #[arg(long, value_name = "FILE")]
    pub hmac_secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ClientAddArgs {
    pub client_id: String,
    /// Display name (defaults to the id).
    #[arg(long)]
    pub name: Option<String>,
    /// A public client (no secret; authenticates by client_id alone).
    #[arg(long)]
    pub public: bool,
    /// Read the secret from the first line of standard input instead of generating one.
    #[arg(long, conflicts_with = "public")]
    pub secret_stdin: bool,
    /// Scopes the client may be granted (space-separated).
    #[arg(long, default_value = "")]
    pub scopes: String,
    /// Scopes granted when a request names none (default: all allowed scopes).
    #[arg(long)]
    pub default_scopes: Option<String>,
    /// Grant types, comma-separated: client_credentials, password, refresh_token,
    /// authorization_code. Default: client_credentials for a confidential client; for a public
    /// one authorization_code,refresh_token with a --redirect-uri, else password,refresh_token.
    #[arg(long, value_delimiter = ',')]
    pub grant_types: Vec<GrantType>,
    /// A redirect URI of the authorization code flow, matched exactly (repeatable).
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// Access-token format: jwt, opaque, hex40 or account.
    #[arg(long, default_value = "jwt")]
    pub token_format: AccessTokenFormat,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub access_ttl: i64,
    /// When to issue refresh tokens: offline_access, always or never.
    #[arg(long, default_value = "offline_access")]
    pub refresh: RefreshIssuance,
    /// Refresh-token lifetime in seconds (each rotation starts a new one).
    #[arg(long, default_value_t = 14 * 24 * 3600)]
    pub refresh_ttl: i64,
    /// Absolute session lifetime in seconds; no refresh extends past it.
    #[arg(long, default_value_t = 90 * 24 * 3600)]
    pub session_lifetime: i64,
    /// Seconds during which a repeated refresh returns the same successor (0: none).
    #[arg(long, default_value_t = 5)]
    pub reuse_window: i64,
    /// Refresh-token format: opaque, jwt or account.
    #[arg(long, default_value = "opaque")]
    pub refresh_format: RefreshTokenFormat,
    /// Bind an otp_token to every access token (mutating requests must present it).
    #[arg(long)]
    pub otp: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from the first line of standard input.
    Add {
        username: String,
        /// Restrict the scopes this user may be granted (space-separated).
        #[arg(long)]
        scopes: Option<String>,
    },
    /// List users.
    List,
    /// Set a user's password, read from the first line of standard input.
    SetPassword { username: String },
    /// Disable a user (or enable again with --enable).
    Disable {
        username: String,
        #[arg(long)]
        enable: bool,
    },
    /// Delete a user.
    Remove { username: String },
    /// Lift a lockout after failed sign-ins at once and forget the failures (any username:
    /// unknown ones are counted too).
    Unlock { username: String },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys: kid, state (next, current, previous, retired), activates_at and
    /// retires_at (Unix seconds; `-` for none).
    List,
    /// Publish a fresh key now and switch signing to it after the lead time; the old key stays
    /// published until the last token it signed has expired, then retires.
    Rotate {
        /// Seconds until the new key signs (default: keys.rotation_lead_secs). At least
        /// keys.jwks_max_age_secs + keys.reload_secs.
        #[arg(long)]
        lead: Option<u64>,
        /// For a compromised key: the new key signs at once and every token signed by the old
        /// keys stops validating at once. Nodes and JWKS caches that have not seen the new key
        /// refuse its tokens until they reload.
        #[arg(long, conflicts_with = "lead")]
        danger_immediate: bool,
    },
}
