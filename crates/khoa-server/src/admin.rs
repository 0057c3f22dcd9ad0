//! The admin verbs of the CLI, against the same database the server uses.

use anyhow::{Context, Result, bail};
use khoa_core::engine::Engine;
use khoa_core::keys::key_states;
use khoa_core::mint::{KeyRotation, RotationOutcome};
use khoa_core::model::{Client, GrantType, TokenPolicy};
use khoa_core::scope::ScopeSet;
use secrecy::SecretString;
use std::io::BufRead;

use crate::cli::{ClientAddArgs, ClientCommand, KeysCommand, PartnerCommand, UserCommand};
use crate::config::KeysConfig;

/// Reads one line from standard input (a password or secret piped in, never an argument that
/// would land in shell history or `ps`).
fn read_secret_line(what: &str) -> Result<SecretString> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        bail!("no {what} on standard input");
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

fn scopes(s: &str, what: &str) -> Result<ScopeSet> {
    ScopeSet::parse(s).map_err(|_| anyhow::anyhow!("{what}: malformed scope list"))
}

pub async fn client(engine: &Engine, cmd: ClientCommand) -> Result<()> {
    let clients = &engine.stores().clients;
    match cmd {
        ClientCommand::Add(args) => add_client(engine, args).await,
        ClientCommand::List => {
            for c in clients.list_clients().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    c.client_id,
                    if c.is_public() {
                        "public"
                    } else {
                        "confidential"
                    },
                    c.policy.access_format.as_str(),
                    c.allowed_scopes
                );
            }
            Ok(())
        }
        ClientCommand::Show { client_id } => {
            let c = clients
                .find_client(&client_id)
                .await?
                .with_context(|| format!("no client {client_id}"))?;
            print_client(&c);
            Ok(())
        }
        ClientCommand::RotateSecret {
            client_id,
            secret_stdin,
        } => {
            let given = secret_stdin
                .then(|| read_secret_line("client secret"))
                .transpose()?;
            let from_stdin = given.is_some();
            match engine.rotate_client_secret(&client_id, given).await? {
                None => bail!("no client {client_id}"),
                Some(_) if from_stdin => println!("secret of {client_id} replaced"),
                Some(secret) => {
                    println!("client_secret: {secret}");
                    eprintln!("(shown once; khoa stores only a keyed hash of it)");
                }
            }
            Ok(())
        }
        ClientCommand::Remove { client_id } => {
            if !clients.delete_client(&client_id).await? {
                bail!("no client {client_id}");
            }
            println!("removed client {client_id}");
            Ok(())
        }
    }
}

async fn add_client(engine: &Engine, a: ClientAddArgs) -> Result<()> {
    let allowed = scopes(&a.scopes, "--scopes")?;
    let default_scopes = match &a.default_scopes {
        Some(d) => scopes(d, "--default-scopes")?,
        None => allowed.clone(),
    };
    if !default_scopes.is_subset(&allowed) {
        bail!("--default-scopes must be a subset of --scopes");
    }
    for (name, v) in [
        ("--access-ttl", a.access_ttl),
        ("--refresh-ttl", a.refresh_ttl),
        ("--session-lifetime", a.session_lifetime),
    ] {
        if v <= 0 {
            bail!("{name} must be positive");
        }
    }
    if a.reuse_window < 0 {
        bail!("--reuse-window must not be negative");
    }
    // RFC 9700 §2.1: the code flow only ever redirects to a registered URI.
    if a.grant_types.contains(&GrantType::AuthorizationCode) && a.redirect_uris.is_empty() {
        bail!("the authorization_code grant needs at least one --redirect-uri");
    }
    let secret = a
        .secret_stdin
        .then(|| read_secret_line("client secret"))
        .transpose()?;
    let client = Client {
        client_id: a.client_id.clone(),
        name: a.name.unwrap_or_else(|| a.client_id.clone()),
        secret_hash: None,
        allowed_scopes: allowed,
        default_scopes,
        grant_types: a.grant_types,
        redirect_uris: a.redirect_uris,
        policy: TokenPolicy {
            access_format: a.token_format,
            access_ttl: a.access_ttl,
            refresh: a.refresh,
            refresh_ttl: a.refresh_ttl,
            session_lifetime: a.session_lifetime,
            reuse_window: a.reuse_window,
            refresh_format: a.refresh_format,
            otp: a.otp,
        },
        disabled: false,
        created_at: 0,
    };
    let generated = engine.create_client(client, !a.public, secret).await?;
    println!("client_id: {}", a.client_id);
    if let Some(secret) = generated {
        println!("client_secret: {secret}");
        eprintln!("(shown once; khoa stores only a keyed hash of it)");
    }
    Ok(())
}

fn print_client(c: &Client) {
    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
    println!("client_id:        {}", c.client_id);
    println!("name:             {}", c.name);
    println!(
        "type:             {}",
        if c.is_public() {
            "public"
        } else {
            "confidential"
        }
    );
    println!("grant_types:      {}", grants.join(","));
    println!("redirect_uris:    {}", c.redirect_uris.join(" "));
    println!("allowed_scopes:   {}", c.allowed_scopes);
    println!("default_scopes:   {}", c.default_scopes);
    println!("token_format:     {}", c.policy.access_format.as_str());
    println!("access_ttl:       {}", c.policy.access_ttl);
    println!("refresh:          {}", c.policy.refresh.as_str());
    println!("refresh_ttl:      {}", c.policy.refresh_ttl);
    println!("session_lifetime: {}", c.policy.session_lifetime);
    println!("reuse_window:     {}", c.policy.reuse_window);
    println!("disabled:         {}", c.disabled);
}

pub async fn user(engine: &Engine, cmd: UserCommand) -> Result<()> {
    let users = &engine.stores().users;
    match cmd {
        UserCommand::Add {
            username,
            scopes: s,
        } => {
            let allowed = s.as_deref().map(|s| scopes(s, "--scopes")).transpose()?;
            let password = read_secret_line("password")?;
            let user = engine.create_user(&username, &password, allowed).await?;
            println!("created user {} ({})", user.username, user.id);
        }
        UserCommand::List => {
            for u in users.list_users().await? {
                let scopes = u.allowed_scopes.map(|s| s.to_string());
                println!(
                    "{}\t{}\t{}\t{}",
                    u.username,
                    u.id,
                    if u.disabled { "disabled" } else { "enabled" },
                    scopes.as_deref().unwrap_or("*")
                );
            }
        }
        UserCommand::SetPassword { username } => {
            let password = read_secret_line("password")?;
            if !engine.set_user_password(&username, &password).await? {
                bail!("no user {username}");
            }
            println!("password of {username} changed");
        }
        UserCommand::Disable { username, enable } => {
            if !users.set_user_disabled(&username, !enable).await? {
                bail!("no user {username}");
            }
            println!("{username} {}", if enable { "enabled" } else { "disabled" });
        }
        UserCommand::Remove { username } => {
            if !users.delete_user(&username).await? {
                bail!("no user {username}");
            }
            println!("removed user {username}");
        }
        UserCommand::Unlock { username } => {
            let state = engine.login_failures(&username).await?;
            let locked = state.as_ref().is_some_and(|s| s.locked_at(engine.now()));
            if engine.unlock_user(&username).await? {
                let failures = state.map_or(0, |s| s.failures);
                let was = if locked {
                    "unlocked"
                } else {
                    "was not locked;"
                };
                println!("{username} {was} {failures} failed sign-ins forgotten");
            } else {
                println!("{username} has no failed sign-ins");
            }
        }
    }
    Ok(())
}

pub async fn keys(engine: &Engine, cmd: KeysCommand, config: &KeysConfig) -> Result<()> {
    match cmd {
        KeysCommand::List => {
            let records = engine.stores().keys.list_keys().await?;
            for (k, state) in records.iter().zip(key_states(&records, engine.now())) {
                let retires_at = k
                    .retires_at
                    .map_or_else(|| "-".to_owned(), |t| t.to_string());
                println!(
                    "{}\t{}\t{}\t{retires_at}",
                    k.kid,
                    state.as_str(),
                    k.activates_at
                );
            }
        }
        KeysCommand::Rotate {
            lead,
            danger_immediate,
        } => {
            let rotation = if danger_immediate {
                KeyRotation::DangerImmediate
            } else {
                let lead = lead.unwrap_or(config.rotation_lead_secs);
                let min = config.min_rotation_lead_secs();
                if lead < min {
                    bail!(
                        "--lead {lead} is too short: the next key must be published for at least \
                         keys.jwks_max_age_secs + keys.reload_secs = {} + {} = {min} seconds \
                         before it signs, or a node or JWKS cache that has not seen it yet would \
                         refuse its tokens. Give --lead {min} or more, or --danger-immediate to \
                         replace a compromised key at once.",
                        config.jwks_max_age_secs,
                        config.reload_secs
                    );
                }
                KeyRotation::After { lead_secs: lead }
            };
            match engine.rotate_signing_key(rotation).await? {
                RotationOutcome::Scheduled {
                    kid,
                    activates_at,
                    old_keys_retire_at,
                } => {
                    println!("next signing key: {kid}");
                    println!("activates_at: {activates_at}");
                    println!("previous keys retire_at: {old_keys_retire_at}");
                }
                RotationOutcome::Pending { kid, activates_at } => bail!(
                    "a rotation is already pending: key {kid} activates at {activates_at} \
                     ({} s from now); rotate again once it has",
                    activates_at - engine.now()
                ),
            }
        }
    }
    Ok(())
}

pub async fn partner(engine: &Engine, cmd: PartnerCommand, default_overlap: i64) -> Result<()> {
    let partners = engine.partners();
    match cmd {
        PartnerCommand::Add {
            code,
            client_id,
            name,
        } => {
            let name = name.unwrap_or_else(|| code.clone());
            let key = partners.create(&code, &name, &client_id, None).await?;
            println!("partner_code: {code}");
            println!("key_hex: {}", key.as_str());
            eprintln!("(shown once; khoa stores the key sealed under the master key)");
        }
        PartnerCommand::List => {
            for p in partners.list().await? {
                println!("{}\t{}\t{}", p.code, p.client_id, p.name);
                for k in p.keys {
                    let state = match k.expires_at {
                        None => "current".to_owned(),
                        Some(t) => format!("valid until {t}"),
                    };
                    println!("  {}\t{}\t{state}", k.key_id, k.created_at);
                }
            }
        }
        PartnerCommand::RotateKey { code, overlap } => {
            let overlap = overlap.unwrap_or(default_overlap);
            if overlap < 0 {
                bail!("--overlap must not be negative");
            }
            match partners.rotate_key(&code, overlap).await? {
                None => bail!("no partner {code}"),
                Some(key) => {
                    println!("key_hex: {}", key.as_str());
                    eprintln!("(shown once; previous keys stay valid for {overlap} s)");
                }
            }
        }
        PartnerCommand::Remove { code } => {
            if !partners.remove(&code).await? {
                bail!("no partner {code}");
            }
            println!("removed partner {code}");
        }
    }
    Ok(())
}
