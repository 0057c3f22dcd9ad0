//! Parsers for what arrives from outside, shared by the dialects: form bodies, Basic and Bearer
//! credentials. Each returns a typed error; the dialect renders it in its own shape.
//!
//! The form parser is written here rather than taken from `serde_urlencoded`/`form_urlencoded`
//! because RFC 6749 demands what those hide: a repeated parameter must be rejected (§3.1), and
//! bytes that are not UTF-8 after percent-decoding must be refused, not replaced by U+FFFD.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the request body is not valid UTF-8")]
    NotUtf8,
    #[error("the {0} parameter is repeated")]
    Repeated(String),
}

/// Decodes one `application/x-www-form-urlencoded` component strictly.
fn decode_component(raw: &[u8]) -> Result<String, FormError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| FormError::NotUtf8)
}

/// Parses a form body into name → value. Empty values count as absent (RFC 6749 §3.1), and a
/// name given twice is an error.
pub fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, FormError> {
    let mut out = HashMap::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let name = decode_component(name)?;
        let value = decode_component(value)?;
        if out.contains_key(&name) {
            return Err(FormError::Repeated(name));
        }
        if !value.is_empty() {
            out.insert(name, value);
        } else {
            // Remember the name so that `a=&a=x` is still caught as a repetition.
            out.insert(name, String::new());
        }
    }
    out.retain(|_, v| !v.is_empty());
    Ok(out)
}

/// What an `Authorization` header held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Absent,
    /// `Basic` with the id and secret already split.
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
    /// Present but unreadable, or another scheme.
    Malformed,
}

/// Parses the `Authorization` header value. When `form_encoded_basic` is set the Basic user and
/// password are form-decoded as RFC 6749 §2.3.1 requires of OAuth clients; plain Basic (RFC 7617)
/// is used by the dialects whose documents do not ask for it.
pub fn parse_authorization(header: Option<&[u8]>, form_encoded_basic: bool) -> Authorization {
    let Some(raw) = header else {
        return Authorization::Absent;
    };
    let Ok(value) = std::str::from_utf8(raw) else {
        return Authorization::Malformed;
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        // RFC 6750 §2.1 b64token characters.
        let ok = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=|".contains(&b));
        return if ok {
            Authorization::Bearer(rest.to_owned())
        } else {
            Authorization::Malformed
        };
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Authorization::Malformed;
    }
    let Some(decoded) = STANDARD
        .decode(rest)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return Authorization::Malformed;
    };
    let Some((user, password)) = decoded.split_once(':') else {
        return Authorization::Malformed;
    };
    if form_encoded_basic {
        match (
            decode_component(user.as_bytes()),
            decode_component(password.as_bytes()),
        ) {
            (Ok(u), Ok(p)) => Authorization::Basic {
                user: u,
                password: p,
            },
            _ => Authorization::Malformed,
        }
    } else {
        Authorization::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }
}

/// A credential header sent more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0} header is repeated")]
pub struct RepeatedHeader(pub &'static str);

/// The one value of a header that carries credentials or keys, `None` when absent.
///
/// Two `Authorization` (or `Partner-Code`) fields are refused, not resolved by taking the first:
/// RFC 9110 §5.3 lets a sender repeat only list-valued fields, and a proxy or a filter in front
/// of khoa may have checked the other one. RFC 6750 §3.1 names a request that "repeats the same
/// parameter" `invalid_request`; repeated form parameters are refused the same way (§3.1 of
/// RFC 6749, [`parse_form`]).
pub fn single_header<'h>(
    headers: &'h http::HeaderMap,
    name: &'static str,
) -> Result<Option<&'h [u8]>, RepeatedHeader> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(RepeatedHeader(name));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// Whether a `Content-Type` header names `expected` (parameters such as charset ignored).
pub fn content_type_is(header: Option<&[u8]>, expected: &str) -> bool {
    header
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| h.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decodes_percent_and_plus_and_drops_empty_values() {
        let f = parse_form(
            b"grant_type=password&username=account%40tripdata.vn&password=%40Pass+word&scope=",
        )
        .unwrap();
        assert_eq!(f["username"], "account@tripdata.vn");
        assert_eq!(f["password"], "@Pass word");
        assert!(!f.contains_key("scope"));
    }

    #[test]
    fn form_rejects_repeats_even_with_empty_first_value() {
        assert_eq!(parse_form(b"a=1&a=2"), Err(FormError::Repeated("a".into())));
        assert_eq!(parse_form(b"a=&a=2"), Err(FormError::Repeated("a".into())));
    }

    #[test]
    fn form_rejects_bytes_that_are_not_utf8() {
        assert_eq!(parse_form(b"a=%FF%FE"), Err(FormError::NotUtf8));
        assert_eq!(parse_form(b"a=\xff"), Err(FormError::NotUtf8));
    }

    #[test]
    fn basic_is_split_and_optionally_form_decoded() {
        let h = format!("Basic {}", STANDARD.encode("my%20id:p%3Aw"));
        assert_eq!(
            parse_authorization(Some(h.as_bytes()), true),
            Authorization::Basic {
                user: "my id".into(),
                password: "p:w".into()
            }
        );
        assert_eq!(
            parse_authorization(Some(h.as_bytes()), false),
            Authorization::Basic {
                user: "my%20id".into(),
                password: "p%3Aw".into()
            }
        );
        assert_eq!(
            parse_authorization(Some(b"Basic !!!"), true),
            Authorization::Malformed
        );
        let no_colon = format!("Basic {}", STANDARD.encode("nocolon"));
        assert_eq!(
            parse_authorization(Some(no_colon.as_bytes()), true),
            Authorization::Malformed
        );
    }

    #[test]
    fn bearer_accepts_b64token_and_refuses_junk() {
        assert_eq!(
            parse_authorization(Some(b"bearer abc.DEF-_~+/="), false),
            Authorization::Bearer("abc.DEF-_~+/=".into())
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer "), false),
            Authorization::Malformed
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer a b"), false),
            Authorization::Malformed
        );
        assert_eq!(
            parse_authorization(Some(b"Digest x"), false),
            Authorization::Malformed
        );
        assert_eq!(parse_authorization(None, false), Authorization::Absent);
    }

    #[test]
    fn a_credential_header_must_come_once() {
        let mut h = http::HeaderMap::new();
        assert_eq!(single_header(&h, "authorization"), Ok(None));
        h.append("authorization", "Basic YTpi".parse().unwrap());
        assert_eq!(
            single_header(&h, "authorization"),
            Ok(Some(&b"Basic YTpi"[..]))
        );
        h.append("authorization", "Basic YzpksQ==".parse().unwrap());
        assert_eq!(
            single_header(&h, "authorization"),
            Err(RepeatedHeader("authorization"))
        );
    }

    #[test]
    fn content_type_ignores_parameters_and_case() {
        assert!(content_type_is(
            Some(b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            "application/x-www-form-urlencoded"
        ));
        assert!(!content_type_is(
            Some(b"application/json"),
            "application/x-www-form-urlencoded"
        ));
        assert!(!content_type_is(None, "application/json"));
    }
}

/// A body that must be one JSON object.
pub fn json_object(body: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(body).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// What a JSON object holds under `name`.
#[derive(Debug, PartialEq, Eq)]
pub enum Field<'a> {
    Missing,
    /// Present but not a string (or an empty one).
    Invalid,
    Str(&'a str),
}

pub fn string_field<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Field<'a> {
    match obj.get(name) {
        None | Some(serde_json::Value::Null) => Field::Missing,
        Some(serde_json::Value::String(s)) if !s.is_empty() => Field::Str(s),
        Some(_) => Field::Invalid,
    }
}

/// Whether a body is "empty" as token endpoints that take no body understand it: no bytes,
/// only whitespace, or a JSON object (whose members are ignored) — what real callers send.
pub fn is_empty_body(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace) || json_object(body).is_some()
}

#[cfg(test)]
mod body_tests {
    use super::*;

    #[test]
    fn string_fields_distinguish_missing_from_invalid() {
        let obj = json_object(br#"{"a":"x","b":5,"c":"","d":null}"#).unwrap();
        assert_eq!(string_field(&obj, "a"), Field::Str("x"));
        assert_eq!(string_field(&obj, "b"), Field::Invalid);
        assert_eq!(string_field(&obj, "c"), Field::Invalid);
        assert_eq!(string_field(&obj, "d"), Field::Missing);
        assert_eq!(string_field(&obj, "e"), Field::Missing);
    }

    #[test]
    fn empty_bodies_are_nothing_whitespace_or_an_object() {
        assert!(is_empty_body(b""));
        assert!(is_empty_body(b" \n"));
        assert!(is_empty_body(b"{}"));
        assert!(!is_empty_body(b"[]"));
        assert!(!is_empty_body(b"grant_type=x"));
        assert!(json_object(b"[1]").is_none());
        assert!(json_object(b"\xff").is_none());
    }
}
