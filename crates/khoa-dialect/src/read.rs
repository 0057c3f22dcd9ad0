//! Reading a request as a definition's endpoint takes it: the body, the client's credentials,
//! each input from where the definition says, the fixed values. Every failure is a
//! [`Refused`], rendered by the dialect's own error template.

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::def::{BodyKind, ClientAuth, Input};
use crate::load::{Endpoint, EnvelopeSpec, SignatureSpec, Source};
use crate::refusal::{Kind, Refused};
use crate::wire::{
    Authorization, FormError, content_type_is, is_empty_body, json_object, parse_authorization,
    parse_form, single_header,
};

/// What a request carried, ready to become an engine request.
#[derive(Debug, Default)]
pub struct Read {
    /// By [`Input`], the values found (optional inputs may be absent).
    pub inputs: Vec<(Input, String)>,
    /// `Authorization: Basic` id and secret, with `client_auth = "basic"` (or "rfc6749").
    pub basic: Option<(String, String)>,
    /// What a signature endpoint's request signed, to verify.
    pub signed: Option<Signed>,
}

/// A request signature as it arrived: the bytes, what they sign, and when.
#[derive(Debug)]
pub struct Signed {
    pub signature: Vec<u8>,
    pub payload: String,
    /// Unix seconds.
    pub timestamp: i64,
}

impl Read {
    pub fn get(&self, input: Input) -> Option<&str> {
        self.inputs
            .iter()
            .find(|(i, _)| *i == input)
            .map(|(_, v)| v.as_str())
    }

    pub fn take(&mut self, input: Input) -> Option<String> {
        let at = self.inputs.iter().position(|(i, _)| *i == input)?;
        Some(self.inputs.swap_remove(at).1)
    }
}

/// Reads `headers` and `body` for `endpoint`.
pub fn read(endpoint: &Endpoint, headers: &HeaderMap, body: &[u8]) -> Result<Read, Refused> {
    let body = parse_body(endpoint.body, headers, body)?;
    read_from(endpoint, headers, &body)
}

/// The request values a `resource` endpoint's answer names (`{body.NAME}`), each as text: ""
/// when absent, and a refusal (`invalid_field`) when it holds anything but a string (null
/// included), which
/// the answer would otherwise echo as something the caller did not send.
pub fn request_values(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, Value)>, Refused> {
    let body = parse_body(endpoint.body, headers, body)?;
    let mut out = Vec::new();
    for name in endpoint.response.names() {
        let Ok(source) = crate::load::parse_source(name) else {
            continue;
        };
        let value = match lookup(&source, headers, &body)? {
            None => Value::String(String::new()),
            Some(Value::String(s)) => Value::String(s),
            Some(_) => {
                return Err(Refused {
                    field: Some(source.field_name()),
                    ..Refused::new(
                        Kind::InvalidField,
                        format!("{} must be a string", source.field_name()),
                    )
                });
            }
        };
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

/// The key header of an envelope endpoint: who the envelope says it is from.
pub fn envelope_key(env: &EnvelopeSpec, headers: &HeaderMap) -> Result<String, Refused> {
    let raw = headers.get_all(&env.key_header);
    let mut values = raw.iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Refused {
            header: Some(env.key_header.as_str().to_owned()),
            ..Refused::new(
                Kind::RepeatedHeader,
                format!("the {} header is repeated", env.key_header),
            )
        });
    }
    first
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Refused {
            header: Some(env.key_header.as_str().to_owned()),
            ..Refused::new(
                Kind::MissingCredentials,
                format!("the {} header is required", env.key_header),
            )
        })
}

/// The ciphertext of an envelope body: the string at `env.field` of a JSON object. An empty
/// string is a ciphertext that does not open, not a malformed body: answered like one, it
/// would be the one bad ciphertext with an answer of its own.
pub fn envelope_data(env: &EnvelopeSpec, body: &[u8]) -> Result<String, Refused> {
    match json_object(body).as_ref().and_then(|o| o.get(&env.field)) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(Refused::new(
            Kind::Malformed,
            format!(
                "the body must be a JSON object with a string field \"{}\"",
                env.field
            ),
        )),
    }
}

/// Reads the inputs of `endpoint` from `headers` and an already parsed (or opened) body.
pub fn read_from(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    body: &Map<String, Value>,
) -> Result<Read, Refused> {
    let mut out = Read::default();
    match endpoint.client_auth {
        ClientAuth::Inputs => {}
        ClientAuth::Basic | ClientAuth::BasicForm => {
            let auth = single_header(headers, "authorization").map_err(repeated)?;
            match parse_authorization(auth, endpoint.client_auth == ClientAuth::BasicForm) {
                Authorization::Basic { user, password } => out.basic = Some((user, password)),
                _ => {
                    return Err(Refused::new(
                        Kind::MissingCredentials,
                        "client credentials are required in Authorization: Basic",
                    ));
                }
            }
        }
        // RFC 6749 §2.3.1: Basic is optional beside the body's client_id, but an
        // Authorization header that is not readable Basic is a failed authentication.
        ClientAuth::Rfc6749 => {
            let auth = single_header(headers, "authorization").map_err(repeated)?;
            match parse_authorization(auth, true) {
                Authorization::Basic { user, password } => out.basic = Some((user, password)),
                Authorization::Absent => {}
                _ => {
                    return Err(Refused::new(
                        Kind::InvalidClientBasic,
                        "the Authorization header is not valid Basic credentials",
                    ));
                }
            }
        }
    }
    for i in &endpoint.inputs {
        match lookup(&i.source, headers, body)? {
            Some(Value::String(s)) if !s.is_empty() => out.inputs.push((i.input, s)),
            None | Some(Value::Null) if i.optional => {}
            None | Some(Value::Null) => return Err(missing(&i.source)),
            Some(Value::String(_))
                if matches!(i.source, Source::Header(..) | Source::Authorization(_)) =>
            {
                return Err(missing(&i.source));
            }
            Some(_) => {
                return Err(Refused {
                    field: Some(i.source.field_name()),
                    ..Refused::new(
                        Kind::InvalidField,
                        format!("{} must be a non-empty string", i.source.field_name()),
                    )
                });
            }
        }
    }
    if let Some(sig) = &endpoint.signature {
        out.signed = Some(signed(sig, headers, body)?);
    }
    for (source, want) in &endpoint.require {
        match lookup(source, headers, body)? {
            None | Some(Value::Null) => {
                return Err(Refused::field(Kind::MissingField, &source.field_name()));
            }
            Some(v) if &v == want => {}
            Some(_) => return Err(Refused::field(Kind::WrongValue, &source.field_name())),
        }
    }
    Ok(out)
}

fn missing(source: &Source) -> Refused {
    match source {
        Source::Authorization(scheme) => Refused::new(
            Kind::MissingCredentials,
            format!("credentials are required in Authorization: {scheme}"),
        ),
        s => Refused::field(Kind::MissingField, &s.field_name()),
    }
}

fn repeated(e: crate::wire::RepeatedHeader) -> Refused {
    Refused {
        header: Some(e.0.to_owned()),
        ..Refused::new(
            Kind::RepeatedHeader,
            format!("The {} header is repeated", e.0),
        )
    }
}

fn parse_body(
    kind: BodyKind,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, Refused> {
    const FORM: &str = "application/x-www-form-urlencoded";
    match kind {
        BodyKind::Empty if is_empty_body(body) => Ok(Map::new()),
        BodyKind::Empty => Err(Refused::new(
            Kind::Malformed,
            "The request body must be empty",
        )),
        BodyKind::Json => json_object(body).ok_or_else(|| {
            Refused::new(
                Kind::Malformed,
                "The request body is not a valid JSON object",
            )
        }),
        BodyKind::Form
            if !content_type_is(
                headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.as_bytes()),
                FORM,
            ) =>
        {
            Err(Refused::new(
                Kind::Malformed,
                format!("the request body must be {FORM}"),
            ))
        }
        BodyKind::Form => match parse_form(body) {
            Ok(form) => Ok(form
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()),
            Err(FormError::Repeated(name)) => Err(Refused {
                field: Some(name.clone()),
                ..Refused::new(Kind::Malformed, format!("the parameter {name} is repeated"))
            }),
            Err(e) => Err(Refused::new(Kind::Malformed, e.to_string())),
        },
    }
}

fn lookup(
    source: &Source,
    headers: &HeaderMap,
    body: &Map<String, Value>,
) -> Result<Option<Value>, Refused> {
    Ok(match source {
        Source::Body(path) => {
            let mut at = body.get(&path[0]);
            for seg in &path[1..] {
                at = at.and_then(|v| v.get(seg));
            }
            at.cloned()
        }
        Source::Header(name, _) => {
            let raw = headers.get_all(name);
            let mut values = raw.iter();
            let first = values.next();
            if values.next().is_some() {
                return Err(Refused {
                    header: Some(name.as_str().to_owned()),
                    ..Refused::new(
                        Kind::RepeatedHeader,
                        format!("The {name} header is repeated"),
                    )
                });
            }
            first
                .and_then(|v| v.to_str().ok())
                .map(|v| Value::String(v.trim().to_owned()))
        }
        Source::Authorization(scheme) => {
            let auth = single_header(headers, "authorization").map_err(repeated)?;
            auth.and_then(|a| std::str::from_utf8(a).ok())
                .and_then(|a| a.trim().split_once(' '))
                .filter(|(s, _)| s.eq_ignore_ascii_case(scheme))
                .map(|(_, cred)| Value::String(cred.trim().to_owned()))
        }
    })
}

fn signed(
    sig: &SignatureSpec,
    headers: &HeaderMap,
    body: &Map<String, Value>,
) -> Result<Signed, Refused> {
    use base64::Engine as _;
    let raw = match lookup(&sig.header, headers, body)? {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(Refused::field(Kind::MissingField, &sig.header.field_name())),
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(raw.as_bytes())
        .map_err(|_| Refused::new(Kind::BadSignature, "the signature is not base64"))?;
    let stamp = match lookup(&sig.timestamp, headers, body)? {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            return Err(Refused::field(
                Kind::MissingField,
                &sig.timestamp.field_name(),
            ));
        }
    };
    let timestamp = crate::template::parse_rfc3339(&stamp).ok_or_else(|| Refused {
        field: Some(sig.timestamp.field_name()),
        ..Refused::new(
            Kind::InvalidField,
            format!(
                "{} must be a time such as 2026-12-07T17:00:00+07:00",
                sig.timestamp.field_name()
            ),
        )
    })?;
    // The first source that fails: absent, or refused as read (a repeated header).
    let missing = std::cell::RefCell::new(None);
    let failed = std::cell::RefCell::new(None);
    let payload = sig.payload.render(&|name| {
        let value = match crate::load::parse_source(name).map(|s| lookup(&s, headers, body)) {
            Ok(Ok(v)) => v,
            Ok(Err(r)) => {
                failed.borrow_mut().get_or_insert(r);
                return None;
            }
            Err(_) => None,
        };
        if value.is_none() {
            missing.borrow_mut().get_or_insert_with(|| name.to_owned());
        }
        value
    });
    if let Some(r) = failed.into_inner() {
        return Err(r);
    }
    if let Some(name) = missing.into_inner() {
        let field = crate::load::parse_source(&name)
            .map(|s| s.field_name())
            .unwrap_or(name);
        return Err(Refused::field(Kind::MissingField, &field));
    }
    let Value::String(payload) = payload else {
        return Err(Refused::new(
            Kind::BadSignature,
            "the signed payload is not text",
        ));
    };
    Ok(Signed {
        signature,
        payload,
        timestamp,
    })
}
