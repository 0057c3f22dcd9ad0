//! The admin verbs of the CLI, against the same database the server uses.

use anyhow::{Context, Result, bail};
use khoa_core::engine::{Engine, NewClientKey, Unlocked};
use khoa_core::error::EngineError;
use khoa_core::keys::key_states;
use khoa_core::mint::{KeyRotation, RotationOutcome};
use khoa_core::model::{Client, GrantType, TokenPolicy};
use khoa_core::scope::ScopeSet;
use khoa_core::store::AuditFilter;
use khoa_dialect::template::{civil_from_days, days_from_civil};
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;
use serde_json::json;
use std::io::BufRead;

use crate::cli::{
    AuditCommand, AuditListArgs, ClientAddArgs, ClientCommand, KeysCommand, PartnerCommand,
    UserCommand,
};
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

/// An engine refusal as an operator reads it: the object named, without the RFC 6749 code the
/// same refusal carries on the wire ("client svc already exists", not "already exists:
/// client_id"; "no client nosuch", not "invalid_request: no client nosuch").
fn plain(object: impl std::fmt::Display) -> impl FnOnce(EngineError) -> anyhow::Error {
    move |e| match e {
        EngineError::OAuth(e) => anyhow::anyhow!(e.description),
        EngineError::Conflict(_) => anyhow::anyhow!("{object} already exists"),
        other => other.into(),
    }
}

/// NIST SP 800-63B §5.1.1.2: at least 8 characters for a password the subscriber chose.
const MIN_PASSWORD_CHARS: usize = 8;

fn read_new_password() -> Result<SecretString> {
    let password = read_secret_line("password")?;
    let chars = secrecy::ExposeSecret::expose_secret(&password)
        .chars()
        .count();
    if chars < MIN_PASSWORD_CHARS {
        bail!(
            "the password has {chars} characters; at least {MIN_PASSWORD_CHARS} are needed \
             (NIST SP 800-63B §5.1.1.2)"
        );
    }
    Ok(password)
}

fn scopes(s: &str, what: &str) -> Result<ScopeSet> {
    ScopeSet::parse(s).map_err(|_| anyhow::anyhow!("{what}: malformed scope list"))
}

pub async fn client(engine: &Engine, cmd: ClientCommand) -> Result<()> {
    let admin = engine.admin();
    match cmd {
        ClientCommand::Add(args) => add_client(engine, args).await,
        ClientCommand::Key(cmd) => client_key(engine, cmd).await,
        ClientCommand::List => {
            for c in admin.list_clients().await? {
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
            let c = admin
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
            let rotated = engine
                .admin()
                .rotate_client_secret(&client_id, given)
                .await
                .map_err(plain(format!("client {client_id}")))?;
            match rotated {
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
            // Its signature keys go too.
            if !admin.remove_client(&client_id).await? {
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
    let grant_types = if !a.grant_types.is_empty() {
        a.grant_types
    } else if !a.public {
        vec![GrantType::ClientCredentials]
    } else if !a.redirect_uris.is_empty() {
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    } else {
        vec![GrantType::Password, GrantType::RefreshToken]
    };
    // RFC 6749 §4.4: only a client that can authenticate may use client_credentials.
    if a.public && grant_types.contains(&GrantType::ClientCredentials) {
        bail!("a public client cannot use the client_credentials grant (it has no secret)");
    }
    // RFC 9700 §2.1: the code flow only ever redirects to a registered URI.
    if grant_types.contains(&GrantType::AuthorizationCode) && a.redirect_uris.is_empty() {
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
        grant_types,
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
    let generated = engine
        .admin()
        .create_client(client, !a.public, secret)
        .await
        .map_err(plain(format!("client {}", a.client_id)))?;
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
    let admin = engine.admin();
    match cmd {
        UserCommand::Add {
            username,
            scopes: s,
        } => {
            let allowed = s.as_deref().map(|s| scopes(s, "--scopes")).transpose()?;
            let password = read_new_password()?;
            let user = engine
                .admin()
                .create_user(&username, &password, allowed)
                .await
                .map_err(plain(format!("user {username}")))?;
            println!("created user {} ({})", user.username, user.id);
        }
        UserCommand::List => {
            for u in admin.list_users().await? {
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
            let password = read_new_password()?;
            let changed = engine
                .admin()
                .set_user_password(&username, &password)
                .await
                .map_err(plain(format!("user {username}")))?;
            if !changed {
                bail!("no user {username}");
            }
            println!("password of {username} changed");
        }
        UserCommand::Disable { username, enable } => {
            if !admin.set_user_disabled(&username, !enable).await? {
                bail!("no user {username}");
            }
            println!("{username} {}", if enable { "enabled" } else { "disabled" });
        }
        UserCommand::Remove { username } => {
            if !admin.remove_user(&username).await? {
                bail!("no user {username}");
            }
            println!("removed user {username}");
        }
        UserCommand::Unlock { username } => {
            if let Some(Unlocked {
                failures,
                was_locked,
            }) = admin.unlock_user(&username).await?
            {
                let was = if was_locked {
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
            let records = engine.admin().list_signing_keys().await?;
            println!(
                "{:<24}  {:<8}  {:<20}  RETIRES_AT",
                "KID", "STATE", "ACTIVATES_AT"
            );
            for (k, state) in records.iter().zip(key_states(&records, engine.now())) {
                let retires_at = k.retires_at.map_or_else(|| "-".to_owned(), format_time);
                println!(
                    "{:<24}  {:<8}  {:<20}  {retires_at}",
                    k.kid,
                    state.as_str(),
                    format_time(k.activates_at)
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
            match engine.admin().rotate_signing_key(rotation).await? {
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

/// `khoa partner …`. `overlap` is how long a previous key keeps opening envelopes by default:
/// the served envelope endpoints' `key_overlap_secs`, `None` when no served dialect opens
/// envelopes ([`crate::dialects::registry::key_overlap_secs`]).
pub async fn partner(engine: &Engine, cmd: PartnerCommand, overlap: Option<u64>) -> Result<()> {
    let admin = engine.admin();
    let default_overlap = i64::try_from(overlap.unwrap_or(86_400)).unwrap_or(i64::MAX);
    match cmd {
        PartnerCommand::Add {
            code,
            client_id,
            name,
        } => {
            if overlap.is_none() {
                eprintln!(
                    "warning: no served dialect opens envelopes (the built-in partner dialect \
                     is off until dialects.partner.enabled = true): this partner cannot log in \
                     until one is"
                );
            }
            let name = name.unwrap_or_else(|| code.clone());
            let key = admin
                .add_partner(&code, &name, &client_id, None)
                .await
                .map_err(plain(format!("partner {code}")))?;
            println!("partner_code: {code}");
            println!("key_hex: {}", key.as_str());
            eprintln!("(shown once; khoa stores the key sealed under the master key)");
        }
        PartnerCommand::List => {
            for p in admin.list_partners().await? {
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
            let rotated = admin
                .rotate_partner_key(&code, overlap)
                .await
                .map_err(plain(format!("partner {code}")))?;
            match rotated {
                None => bail!("no partner {code}"),
                Some(key) => {
                    println!("key_hex: {}", key.as_str());
                    eprintln!("(shown once; previous keys stay valid for {overlap} s)");
                }
            }
        }
        PartnerCommand::Remove { code } => {
            if !admin.remove_partner(&code).await? {
                bail!("no partner {code}");
            }
            println!("removed partner {code}");
        }
    }
    Ok(())
}

pub async fn audit(engine: &Engine, cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::List(args) => audit_list(engine, args).await,
    }
}

async fn audit_list(engine: &Engine, a: AuditListArgs) -> Result<()> {
    let now = engine.now();
    let time = |flag: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| parse_time(v, now).with_context(|| format!("{flag} {v}")))
            .transpose()
    };
    let filter = AuditFilter {
        subject: a.subject,
        client_id: a.client,
        kind: a.kind,
        since: time("--since", &a.since)?,
        until: time("--until", &a.until)?,
        limit: a.limit,
    };
    let events = engine.admin().list_audit(&filter).await?;
    if a.json {
        for e in events {
            let detail: serde_json::Value =
                serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::String(e.detail));
            let line = json!({
                "id": e.id,
                "at": e.at,
                "time": format_time(e.at),
                "kind": e.kind.as_str(),
                "subject": e.subject,
                "client_id": e.client_id,
                "detail": detail,
                "node": e.node,
            });
            println!("{line}");
        }
        return Ok(());
    }
    println!(
        "{:<20}  {:<14}  {:<28}  {:<20}  DETAIL",
        "TIME", "KIND", "SUBJECT", "CLIENT"
    );
    for e in events {
        println!(
            "{:<20}  {:<14}  {:<28}  {:<20}  {}",
            format_time(e.at),
            e.kind.as_str(),
            e.subject.as_deref().unwrap_or("-"),
            e.client_id.as_deref().unwrap_or("-"),
            e.detail
        );
    }
    Ok(())
}

/// Unix seconds; a UTC date or date-time (`2026-01-31`, `2026-01-31T08:00:00Z`); or a
/// duration before `now` (`90s`, `15m`, `2h`, `7d`).
fn parse_time(v: &str, now: i64) -> Result<i64> {
    if let Ok(secs) = v.parse::<i64>() {
        return Ok(secs);
    }
    if let Some(unit) = v.chars().last().filter(|c| "smhd".contains(*c)) {
        let n: i64 = v[..v.len() - 1]
            .parse()
            .map_err(|_| anyhow::anyhow!("not a duration"))?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => 86_400,
        };
        return Ok(now - n * scale);
    }
    let (date, clock) = v
        .trim_end_matches('Z')
        .split_once('T')
        .unwrap_or((v, "00:00:00"));
    let num = |s: &str| s.parse::<i64>().map_err(|_| anyhow::anyhow!("not a time"));
    let d: Vec<&str> = date.split('-').collect();
    let c: Vec<&str> = clock.split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&c.len()) {
        bail!("expected Unix seconds, YYYY-MM-DD[THH:MM[:SS]Z] or a duration such as 2h");
    }
    let (y, m, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hh, mm) = (num(c[0])?, num(c[1])?);
    let ss = c.get(2).map(|s| num(s)).transpose()?.unwrap_or(0);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        bail!("not a valid date or time");
    }
    Ok(days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn format_time(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

async fn client_key(engine: &Engine, cmd: crate::cli::ClientKeyCommand) -> Result<()> {
    use crate::cli::{ClientKeyCommand, KeyMaterialArgs};
    let admin = engine.admin();
    match cmd {
        ClientKeyCommand::Add {
            client_id,
            material,
            kid,
        } => {
            let added = match material {
                KeyMaterialArgs {
                    public_key: Some(file),
                    hmac_secret_file: None,
                } => {
                    let der = read_public_key(&file)?;
                    admin
                        .add_client_key(&client_id, kid.clone(), NewClientKey::RsaPublicKey(der))
                        .await
                }
                KeyMaterialArgs {
                    public_key: None,
                    hmac_secret_file: Some(file),
                } => {
                    let secret = read_hmac_secret(&file)?;
                    admin
                        .add_client_key(&client_id, kid.clone(), NewClientKey::HmacSecret(&secret))
                        .await
                }
                // clap's argument group already refuses these.
                _ => bail!("give exactly one of --public-key and --hmac-secret-file"),
            };
            let what = match &kid {
                Some(kid) => format!("key {kid} of client {client_id}"),
                None => format!("this key of client {client_id}"),
            };
            let kid = added.map_err(plain(what))?;
            println!("kid: {kid}");
            Ok(())
        }
        ClientKeyCommand::List { client_id } => {
            let keys = admin
                .client_keys(&client_id)
                .await?
                .with_context(|| format!("no client {client_id}"))?;
            println!("{:<20} {:<6} CREATED_AT", "KID", "ALG");
            for k in keys {
                println!("{:<20} {:<6} {}", k.kid, k.alg, format_time(k.created_at));
            }
            Ok(())
        }
        ClientKeyCommand::Remove { client_id, kid } => {
            if !admin.remove_client_key(&client_id, &kid).await? {
                bail!("no key {kid} of client {client_id}");
            }
            println!("removed key {kid} of client {client_id}");
            Ok(())
        }
    }
}

/// An RSA public key in PEM (`-----BEGIN PUBLIC KEY-----`), as DER SPKI.
fn read_public_key(file: &std::path::Path) -> Result<Vec<u8>> {
    use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
    let pem =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let key = rsa::RsaPublicKey::from_public_key_pem(pem.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{}: not an RSA public key in PEM (-----BEGIN PUBLIC KEY-----): {e}",
            file.display()
        )
    })?;
    Ok(key
        .to_public_key_der()
        .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?
        .into_vec())
}

/// The file's bytes without one final line ending (`echo` and editors add one; the partner's
/// secret does not have it). Held zeroized; named in errors by the file, never by content.
fn read_hmac_secret(file: &std::path::Path) -> Result<Zeroizing<Vec<u8>>> {
    let mut secret =
        Zeroizing::new(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?);
    let len = secret
        .strip_suffix(b"\r\n")
        .or_else(|| secret.strip_suffix(b"\n"))
        .map_or(secret.len(), <[u8]>::len);
    secret.truncate(len);
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_times_parse_in_every_accepted_form() {
        let now = 1_800_000_000;
        assert_eq!(parse_time("1700000000", now).unwrap(), 1_700_000_000);
        assert_eq!(parse_time("2h", now).unwrap(), now - 7200);
        assert_eq!(parse_time("7d", now).unwrap(), now - 7 * 86_400);
        assert_eq!(parse_time("1970-01-02", now).unwrap(), 86_400);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("2023-13-01", now).is_err());
    }

    #[test]
    fn audit_times_print_as_utc() {
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        for t in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_time(&format_time(t), 0).unwrap(), t);
        }
    }
}
