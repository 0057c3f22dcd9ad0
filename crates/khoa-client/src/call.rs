//! One token call as a dialect definition describes it, seen from the caller: the request
//! built from the endpoint's `client_auth`, `inputs`, `require`, `body`, `envelope` and
//! `signature`, and the answer read back through its `response` template — the same
//! definition the server reads requests and renders answers with.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue};
use khoa_dialect::def::{BodyKind, ClientAuth, Grant, Input, SignatureKind};
use khoa_dialect::load::{Endpoint, Source};
use khoa_dialect::template::{Filter, parse_rfc3339};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::Credentials;
use crate::error::Error;

/// What a call asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ask<'a> {
    /// A new grant from the credentials: client credentials or the password grant, as the
    /// endpoint runs (or, for `grant = "request"`, as the credentials allow).
    Login,
    Refresh(&'a str),
}

/// A request ready to send.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub method: http::Method,
    pub headers: HeaderMap,
    pub body: Option<(&'static str, Vec<u8>)>,
}

/// Builds the request `endpoint` takes for `ask`; `now_secs` stamps a signature.
pub(crate) fn prepare(
    endpoint: &Endpoint,
    creds: &Credentials,
    ask: Ask<'_>,
    now_secs: i64,
) -> Result<Prepared, Error> {
    let grant = grant_of(endpoint, creds, ask);
    let mut headers = HeaderMap::new();
    let mut body = Map::new();
    let mut form: Vec<(String, String)> = Vec::new();

    // RFC 6749 §2.3.1 lets a confidential client use Basic or the body, never both.
    let basic = match endpoint.client_auth {
        ClientAuth::Basic => Some(false),
        ClientAuth::BasicForm => Some(true),
        ClientAuth::Rfc6749 if creds.client_secret.is_some() => Some(true),
        ClientAuth::Rfc6749 | ClientAuth::Inputs => None,
    };
    if let Some(form_encoded) = basic {
        let id = need(creds.client_id.as_deref(), "client_id")?;
        let secret = need(secret(&creds.client_secret), "client_secret")?;
        let pair = if form_encoded {
            format!("{}:{}", form_encode(id), form_encode(secret))
        } else {
            format!("{id}:{secret}")
        };
        insert(
            &mut headers,
            http::header::AUTHORIZATION,
            &format!("Basic {}", STANDARD.encode(pair)),
        )?;
    }

    let mut place = |source: &Source, value: Value| -> Result<(), Error> {
        match source {
            Source::Body(path) if endpoint.body == BodyKind::Form => {
                form.push((path.join("."), text_of(&value)));
            }
            Source::Body(path) => set_path(&mut body, path, value),
            Source::Header(name, _) => insert(&mut headers, name.clone(), &text_of(&value))?,
            Source::Authorization(scheme) => insert(
                &mut headers,
                http::header::AUTHORIZATION,
                &format!("{scheme} {}", text_of(&value)),
            )?,
        }
        Ok(())
    };
    for input in &endpoint.inputs {
        if basic.is_some() && matches!(input.input, Input::ClientId | Input::ClientSecret) {
            continue;
        }
        match value_of(input.input, creds, ask, grant) {
            Some(v) => place(&input.source, Value::String(v))?,
            None if input.optional => {}
            None => {
                return Err(Error::Config(format!(
                    "endpoint `{}` needs `{}` ({}), which the credentials do not have",
                    endpoint.name,
                    input.input.as_str(),
                    input.source
                )));
            }
        }
    }
    for (source, value) in &endpoint.require {
        place(source, value.clone())?;
    }

    if let Some(env) = &endpoint.envelope {
        let code = need(creds.partner_code.as_deref(), "partner_code")?;
        let key = partner_key(creds)?;
        let iv: [u8; 16] = rand::random();
        let plaintext = serde_json::to_vec(&Value::Object(std::mem::take(&mut body)))
            .map_err(|e| Error::Config(format!("an envelope's plaintext: {e}")))?;
        let sealed = khoa_core::envelope::seal_hex(&key, &iv, &plaintext);
        body.insert(env.field.clone(), Value::String(sealed));
        insert(&mut headers, env.key_header.clone(), code)?;
    }

    if let Some(sig) = &endpoint.signature {
        let Source::Header(stamp, _) = &sig.timestamp else {
            return Err(Error::Config(
                "a signature's timestamp must be a header".into(),
            ));
        };
        insert(&mut headers, stamp.clone(), &rfc3339(now_secs))?;
        let payload = sig.payload.render(&|name| {
            let source = khoa_dialect::load::parse_source(name).ok()?;
            match source {
                Source::Header(h, _) => headers.get(&h)?.to_str().ok().map(Value::from),
                Source::Body(path) => get_path(&body, &path).cloned(),
                Source::Authorization(_) => None,
            }
        });
        let payload = text_of(&payload);
        let key = need(secret(&creds.signing_key), "signing_key")?;
        let signature = sign(sig.kind, key, payload.as_bytes())?;
        let Source::Header(at, _) = &sig.header else {
            return Err(Error::Config("a signature must travel in a header".into()));
        };
        insert(&mut headers, at.clone(), &signature)?;
    }

    let body = match endpoint.body {
        BodyKind::Empty => None,
        BodyKind::Form => Some((
            "application/x-www-form-urlencoded",
            form.iter()
                .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes(),
        )),
        BodyKind::Json => Some((
            "application/json",
            serde_json::to_vec(&Value::Object(body)).expect("a JSON object serialises"),
        )),
    };
    Ok(Prepared {
        method: http::Method::from_bytes(endpoint.method.as_str().as_bytes())
            .unwrap_or(http::Method::POST),
        headers,
        body,
    })
}

/// The grant this call runs: the endpoint's, or for a `grant = "request"` endpoint the one
/// the ask and the credentials make.
fn grant_of(endpoint: &Endpoint, creds: &Credentials, ask: Ask<'_>) -> Grant {
    match (endpoint.grant, ask) {
        (Some(Grant::Request) | None, Ask::Refresh(_)) => Grant::RefreshToken,
        (Some(Grant::Request) | None, Ask::Login) if creds.password.is_some() => Grant::Password,
        (Some(Grant::Request) | None, Ask::Login) => Grant::ClientCredentials,
        (Some(g), _) => g,
    }
}

fn value_of(input: Input, creds: &Credentials, ask: Ask<'_>, grant: Grant) -> Option<String> {
    Some(match input {
        Input::ClientId => creds.client_id.clone()?,
        Input::ClientSecret => secret(&creds.client_secret)?.to_owned(),
        Input::Username if grant == Grant::Password => creds.username.clone()?,
        Input::Password if grant == Grant::Password => secret(&creds.password)?.to_owned(),
        Input::RefreshToken => match ask {
            Ask::Refresh(token) => token.to_owned(),
            Ask::Login => return None,
        },
        Input::Scope => creds.scope.clone()?,
        Input::GrantType => grant.as_str().to_owned(),
        _ => return None,
    })
}

fn need<'a>(value: Option<&'a str>, what: &str) -> Result<&'a str, Error> {
    value.ok_or_else(|| {
        Error::Config(format!(
            "the dialect needs `{what}`, which the credentials do not have"
        ))
    })
}

fn secret(s: &Option<SecretString>) -> Option<&str> {
    s.as_ref().map(|s| s.expose_secret())
}

fn partner_key(creds: &Credentials) -> Result<[u8; 32], Error> {
    let hex_key = need(secret(&creds.partner_key_hex), "partner_key_hex")?;
    hex::decode(hex_key.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| Error::Config("the partner key is not 64 hex digits (32 bytes)".into()))
}

fn sign(kind: SignatureKind, key: &str, payload: &[u8]) -> Result<String, Error> {
    use hmac::{Hmac, Mac};
    Ok(match kind {
        SignatureKind::RsaSha256 => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::DecodePrivateKey;
            use rsa::signature::{SignatureEncoding, Signer};
            let private = rsa::RsaPrivateKey::from_pkcs8_pem(key)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(key))
                .map_err(|_| {
                    Error::Config("the signing key is not an RSA private key in PEM".into())
                })?;
            let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private);
            STANDARD.encode(signer.sign(payload).to_bytes())
        }
        SignatureKind::HmacSha256 => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(payload);
            STANDARD.encode(mac.finalize().into_bytes())
        }
        SignatureKind::HmacSha512 => {
            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(payload);
            STANDARD.encode(mac.finalize().into_bytes())
        }
    })
}

/// `2026-12-07T10:00:00+00:00`: RFC 3339, what signature timestamps take.
fn rfc3339(secs: i64) -> String {
    let (y, m, d) = khoa_dialect::template::civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

/// What `application/x-www-form-urlencoded` leaves as it is (WHATWG URL, "urlencoded
/// serializer"): letters, digits and `*-._`; a space becomes `+`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// RFC 6749 Appendix B: `application/x-www-form-urlencoded`, also for Basic's id and secret.
fn form_encode(s: &str) -> String {
    utf8_percent_encode(s, FORM).to_string().replace("%20", "+")
}

/// Sets a header of the token request, marked sensitive: each carries a credential or is
/// made from one, and a sensitive value is never written by an HTTP library's debug output.
fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) -> Result<(), Error> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| Error::Config(format!("a value for header {name} is not a valid header")))?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn set_path(body: &mut Map<String, Value>, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("a body path has a member");
    let mut at = body;
    for seg in parents {
        let next = at
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        at = next.as_object_mut().expect("made an object above");
    }
    at.insert(last.clone(), value);
}

fn get_path<'a>(body: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(body.get(first)?, |v, seg| v.get(seg))
}

/// A token answer, read.
#[derive(Clone)]
pub(crate) struct Fetched {
    pub access_token: SecretString,
    pub token_type: String,
    /// How long the access token lives, in milliseconds, when the answer says.
    pub lifetime_ms: Option<u64>,
    pub refresh_token: Option<SecretString>,
    pub otp_token: Option<SecretString>,
    pub scope: Option<String>,
    /// The whole answer, for `khoa token get`.
    pub answer: Value,
}

/// Reads a token endpoint's answer: the tokens where the endpoint's `response` template puts
/// them, or an [`Error`] that says whether trying again may help.
pub(crate) fn read_answer(
    endpoint: &Endpoint,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: u64,
) -> Result<Fetched, Error> {
    if !(200..300).contains(&status) {
        return Err(refusal(status, headers, body));
    }
    let answer: Value = serde_json::from_slice(body)
        .map_err(|_| Error::Answer(format!("HTTP {status} with a body that is not JSON")))?;
    let mut access = None;
    let mut token_type = None;
    let mut lifetime_ms = None;
    let mut refresh = None;
    let mut otp = None;
    let mut scope = None;
    for (p, v) in endpoint.response.read_back(&answer) {
        let text = v.as_str().map(str::to_owned);
        match p.name.as_str() {
            "access_token" => access = text,
            "token_type" => token_type = text,
            "refresh_token" => refresh = text,
            "otp_token" => otp = text,
            "scope" => scope = text,
            "expires_in" => lifetime_ms = lifetime_ms.or(duration_ms(v, &p.filters)),
            "expires_at" => {
                lifetime_ms = lifetime_ms.or_else(|| {
                    let at_ms = instant_ms(v, &p.filters)?;
                    Some(at_ms.saturating_sub(now_ms))
                })
            }
            _ => {}
        }
    }
    let access = access.filter(|a| !a.is_empty()).ok_or_else(|| {
        Error::Answer(format!(
            "no access token where endpoint `{}` answers it",
            endpoint.name
        ))
    })?;
    Ok(Fetched {
        access_token: SecretString::from(access),
        token_type: token_type.unwrap_or_else(|| "Bearer".into()),
        lifetime_ms,
        refresh_token: refresh.filter(|r| !r.is_empty()).map(SecretString::from),
        otp_token: otp.filter(|o| !o.is_empty()).map(SecretString::from),
        scope,
        answer,
    })
}

/// A lifetime as the template writes it: seconds, or milliseconds after `ms`, as a number
/// or (after `string`) as text.
fn duration_ms(v: &Value, filters: &[Filter]) -> Option<u64> {
    let n = number(v)?;
    let ms = if filters.contains(&Filter::Millis) {
        n
    } else {
        n * 1000.0
    };
    (ms >= 0.0).then_some(ms as u64)
}

/// An absolute time: Unix seconds (or ms), or RFC 3339 text.
fn instant_ms(v: &Value, filters: &[Filter]) -> Option<u64> {
    if let Some(s) = v.as_str()
        && let Some(secs) = parse_rfc3339(s)
    {
        return u64::try_from(secs).ok().map(|s| s * 1000);
    }
    duration_ms(v, filters)
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A refusal: transient (408, 425, 429, 5xx) with its `Retry-After`, or a refusal of the
/// request, with the OAuth `error` code when the body has one.
fn refusal(status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs);
    if matches!(status, 408 | 425 | 429) || status >= 500 {
        return Error::Unavailable {
            reason: format!("HTTP {status}"),
            retry_after,
        };
    }
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
    Error::Refused { status, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use khoa_dialect::Origin;

    fn dialect(text: &str) -> khoa_dialect::Dialect {
        khoa_dialect::load(text, Origin::File("test.toml".into()), &Default::default())
            .expect("a valid definition")
    }

    #[test]
    fn basic_and_an_empty_body_as_bankhub_takes_them() {
        let d = dialect(include_str!("../../khoa-dialect/dialects/bankhub.toml"));
        let creds = Credentials::client("app", "p@ss:word");
        let req = prepare(&d.endpoints[0], &creds, Ask::Login, 0).unwrap();
        // As is, not form-encoded: the document's own encoding.
        let basic = STANDARD.encode("app:p@ss:word");
        assert_eq!(
            req.headers["authorization"],
            format!("Basic {basic}").as_str()
        );
        assert!(req.body.is_none());
    }

    #[test]
    fn rfc6749_form_encodes_basic_and_names_the_grant() {
        let d = dialect(include_str!("../../khoa-dialect/dialects/oauth2.toml"));
        let token = d.endpoints.iter().find(|e| e.name == "token").unwrap();
        let creds = Credentials::client("my app", "a+b").with_scope("read write");
        let req = prepare(token, &creds, Ask::Refresh("rt-1"), 0).unwrap();
        let basic = STANDARD.encode("my+app:a%2Bb");
        assert_eq!(
            req.headers["authorization"],
            format!("Basic {basic}").as_str()
        );
        let (kind, body) = req.body.unwrap();
        assert_eq!(kind, "application/x-www-form-urlencoded");
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("grant_type=refresh_token"), "{body}");
        assert!(body.contains("refresh_token=rt-1"), "{body}");
        assert!(body.contains("scope=read+write"), "{body}");
        assert!(!body.contains("client_secret"), "one method only: {body}");
    }

    #[test]
    fn a_missing_credential_is_a_configuration_error_naming_it() {
        let d = dialect(include_str!("../../khoa-dialect/dialects/derivative.toml"));
        let err = prepare(&d.endpoints[0], &Credentials::default(), Ask::Login, 0).unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("`username`")),
            "{err}"
        );
    }

    #[test]
    fn answers_are_read_where_the_template_puts_them() {
        let d = dialect(include_str!("../../khoa-dialect/dialects/bankhub.toml"));
        let body = br#"{"code":201,"access_token":"at-1","ttl":300}"#;
        let got = read_answer(&d.endpoints[0], 201, &HeaderMap::new(), body, 0).unwrap();
        assert_eq!(got.access_token.expose_secret(), "at-1");
        assert_eq!(got.lifetime_ms, Some(300_000));
        assert!(got.refresh_token.is_none());

        let ms = [Filter::Millis];
        assert_eq!(duration_ms(&Value::from(4500), &ms), Some(4500));
        assert_eq!(
            duration_ms(&Value::from("900"), &[Filter::String]),
            Some(900_000)
        );
        assert_eq!(
            instant_ms(&Value::from("1970-01-01T00:01:00Z"), &[]),
            Some(60_000)
        );
    }

    #[test]
    fn refusals_say_whether_waiting_may_help() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let d = dialect(include_str!("../../khoa-dialect/dialects/oauth2.toml"));
        let e = &d.endpoints[0];
        match read_answer(e, 429, &h, b"{}", 0) {
            Err(Error::Unavailable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)))
            }
            other => panic!("{:?}", other.err()),
        }
        let refused = read_answer(e, 400, &h, br#"{"error":"invalid_grant"}"#, 0).err();
        assert!(
            matches!(&refused, Some(Error::Refused { status: 400, error: Some(c) }) if c == "invalid_grant"),
            "{refused:?}"
        );
    }

    #[test]
    fn signature_timestamps_are_rfc3339() {
        assert_eq!(rfc3339(1_796_637_600), "2026-12-07T10:00:00+00:00");
    }
}
