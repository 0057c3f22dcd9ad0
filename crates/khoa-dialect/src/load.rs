//! Loading a definition: TOML → settings resolved → typed → validated and compiled into a
//! [`Dialect`], or a [`DefinitionError`] naming the file, the line and the key.

use std::collections::HashMap;
use std::fmt;

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::def::{
    BodyKind, ClientAuth, Definition, EnvelopeKind, Grant, Input, Message, Method, Operation,
    SignatureKind, StatusMode,
};
use crate::refusal::Kind;
use crate::template::Template;

/// A definition that does not load: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionError {
    /// The file (or `built-in NAME`).
    pub origin: String,
    pub line: Option<usize>,
    /// The dotted key at fault, empty for the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dialect definition {}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ", key {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where a definition came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    BuiltIn,
    File(std::path::PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A loaded, validated dialect, ready to read requests and render answers.
#[derive(Clone, Debug)]
pub struct Dialect {
    pub name: String,
    pub title: String,
    pub origin: Origin,
    /// The file as written, for `khoa dialect show`.
    pub text: String,
    /// `[settings]`, with the operator's overrides applied.
    pub settings: serde_json::Map<String, Value>,
    pub endpoints: Vec<Endpoint>,
    pub errors: Errors,
}

/// Where an input is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A member of the body, nested by dots.
    Body(Vec<String>),
    /// The header, and its name as the definition spells it (for messages).
    Header(HeaderName, String),
    /// The credentials of `Authorization: SCHEME credentials` (case-insensitive scheme).
    Authorization(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Body(path) => write!(f, "body.{}", path.join(".")),
            Source::Header(_, spelled) => write!(f, "header.{spelled}"),
            Source::Authorization(s) => write!(f, "authorization.{s}"),
        }
    }
}

impl Source {
    /// The name a refusal gives the field: the body member's path or the header's name.
    pub fn field_name(&self) -> String {
        match self {
            Source::Body(path) => path.join("."),
            Source::Header(_, spelled) => spelled.clone(),
            Source::Authorization(_) => "Authorization".to_owned(),
        }
    }
}

/// A compiled [`crate::def::Envelope`].
#[derive(Clone, Debug)]
pub struct EnvelopeSpec {
    pub kind: EnvelopeKind,
    pub key_header: HeaderName,
    pub field: String,
    pub key_overlap_secs: u64,
}

/// A compiled [`crate::def::Signature`].
#[derive(Clone, Debug)]
pub struct SignatureSpec {
    pub kind: SignatureKind,
    /// Where the signature is: a [`Source::Header`].
    pub header: Source,
    /// Placeholders are sources (`header.X-TIMESTAMP`).
    pub payload: Template,
    pub timestamp: Source,
    pub window_secs: u64,
}

#[derive(Clone, Debug)]
pub struct InputSource {
    pub input: Input,
    pub source: Source,
    pub optional: bool,
}

/// One compiled endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    pub method: Method,
    pub path: String,
    pub operation: Operation,
    /// The grant of a `token` operation.
    pub grant: Option<Grant>,
    pub client: Option<String>,
    pub client_auth: ClientAuth,
    pub body: BodyKind,
    pub inputs: Vec<InputSource>,
    pub require: Vec<(Source, Value)>,
    pub envelope: Option<EnvelopeSpec>,
    pub signature: Option<SignatureSpec>,
    pub status: u16,
    /// The success body as written, for the OpenAPI document's example (null for the
    /// operations whose answer is their RFC's).
    pub response_example: Value,
    pub response: Template,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// This endpoint's own error answers, instead of the dialect's.
    pub errors: Option<Errors>,
}

impl Endpoint {
    pub fn input(&self, input: Input) -> Option<&InputSource> {
        self.inputs.iter().find(|i| i.input == input)
    }
}

#[derive(Clone, Debug)]
pub struct Case {
    pub status: Option<u16>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub message: Option<Template>,
    pub values: Vec<(String, Template)>,
}

#[derive(Clone, Debug)]
pub struct Errors {
    pub mode: StatusMode,
    pub mirror: Option<String>,
    pub body: Template,
    pub cases: HashMap<Kind, Case>,
}

/// What the answer of a `resource` endpoint may name besides request values (`body.NAME`).
pub const RESOURCE_FIELDS: [&str; 3] = ["client_id", "subject", "scope"];

/// What a success template may name.
pub const ANSWER_FIELDS: [&str; 12] = [
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "refresh_expires_in",
    "otp_token",
    "scope",
    "client_id",
    "issued_at",
    "expires_at",
    "refresh_expires_at",
    "id_token",
];

/// What an error template may name besides the cases' own values.
pub const ERROR_FIELDS: [&str; 7] = [
    "status",
    "message",
    "error",
    "description",
    "field",
    "header",
    "retry_after",
];

/// Loads one definition from its text. `overrides` replace `[settings]` values (from the
/// operator's `[dialects.NAME]`); a key that is not a setting is refused.
pub fn load(
    text: &str,
    origin: Origin,
    overrides: &serde_json::Map<String, Value>,
) -> Result<Dialect, DefinitionError> {
    let origin_name = match &origin {
        Origin::BuiltIn => "built-in".to_owned(),
        Origin::File(p) => p.display().to_string(),
    };
    let err = |key: String, message: String| DefinitionError {
        line: line_of(text, &key),
        origin: origin_name.clone(),
        key,
        message,
    };
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| DefinitionError {
        origin: origin_name.clone(),
        line: e.span().map(|s| line_at(text, s.start)),
        key: String::new(),
        message: e.message().to_owned(),
    })?;
    let mut settings = match doc.get("settings") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => return Err(err("settings".into(), "must be a table".into())),
        None => toml::Table::new(),
    };
    for (k, v) in overrides {
        let Some(default) = settings.get(k) else {
            let known: Vec<&str> = settings.keys().map(String::as_str).collect();
            return Err(err(
                format!("settings.{k}"),
                format!(
                    "the configuration sets {k}, which is not a setting of this dialect \
                     (its settings: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        let v: toml::Value = serde_json::from_value(v.clone())
            .map_err(|e| err(format!("settings.{k}"), e.to_string()))?;
        if std::mem::discriminant(default) != std::mem::discriminant(&v) {
            return Err(err(
                format!("settings.{k}"),
                format!(
                    "the configuration gives a {}, the setting is a {}",
                    v.type_str(),
                    default.type_str()
                ),
            ));
        }
        settings.insert(k.clone(), v);
    }
    for (k, v) in doc.iter_mut() {
        if k != "settings" {
            substitute(v, &settings, &mut vec![k.clone()]).map_err(|(key, m)| err(key, m))?;
        }
    }
    let resolved = match serde_json::to_value(&settings) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    doc.insert("settings".into(), toml::Value::Table(settings));
    let def: Definition =
        serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
            let mut key = e.path().to_string();
            let inner = e.inner().to_string();
            let message = inner.lines().next().unwrap_or_default().to_owned();
            // An unknown key is reported at its table: name the key itself.
            if let Some(field) = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
            {
                key = if key == field || key.ends_with(&format!(".{field}")) {
                    key
                } else if key == "." || key.is_empty() {
                    field.to_owned()
                } else {
                    format!("{key}.{field}")
                };
            }
            if key == "." {
                key.clear();
            }
            err(key, message)
        })?;
    let mut d = compile(def, text, origin).map_err(|(key, message)| err(key, message))?;
    d.settings = resolved;
    Ok(d)
}

/// Replaces `{settings.NAME}` in every string: alone in its string the setting keeps its type.
fn substitute(
    v: &mut toml::Value,
    settings: &toml::Table,
    path: &mut Vec<String>,
) -> Result<(), (String, String)> {
    match v {
        toml::Value::String(s) if s.contains("{settings.") => {
            let lookup = |name: &str| {
                settings.get(name).cloned().ok_or_else(|| {
                    (
                        path.join("."),
                        format!("{{settings.{name}}} names no key of [settings]"),
                    )
                })
            };
            let trimmed = s.trim();
            if let Some(name) = trimmed
                .strip_prefix("{settings.")
                .and_then(|r| r.strip_suffix('}'))
                .filter(|n| !n.contains('{') && !n.contains('}'))
            {
                *v = lookup(name)?;
                return Ok(());
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(at) = rest.find("{settings.") {
                out.push_str(&rest[..at]);
                let after = &rest[at + "{settings.".len()..];
                let end = after
                    .find('}')
                    .ok_or_else(|| (path.join("."), "unclosed {settings.".to_owned()))?;
                match lookup(&after[..end])? {
                    toml::Value::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                path.push(k.clone());
                substitute(v, settings, path)?;
                path.pop();
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                path.push(i.to_string());
                substitute(v, settings, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

type Fail = (String, String);

fn compile(def: Definition, text: &str, origin: Origin) -> Result<Dialect, Fail> {
    let f = |k: &str, m: String| (k.to_owned(), m);
    if def.name.is_empty()
        || !def
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(f(
            "name",
            format!(
                "{:?}: a name is lowercase letters, digits, - and _",
                def.name
            ),
        ));
    }
    if def.endpoints.is_empty() {
        return Err(f("endpoints", "a dialect has at least one endpoint".into()));
    }
    let mut endpoints = Vec::new();
    for (name, e) in &def.endpoints {
        let at = |k: &str| format!("endpoints.{name}.{k}");
        check_path(&e.path).map_err(|m| (at("path"), m))?;
        if let Some(other) = endpoints
            .iter()
            .find(|o: &&Endpoint| o.path == e.path && o.method == e.method)
        {
            return Err((
                at("path"),
                format!(
                    "{} {} is also endpoint {}",
                    e.method.as_str(),
                    e.path,
                    other.name
                ),
            ));
        }
        let mut inputs = Vec::new();
        for (input, raw) in &e.inputs {
            let (raw, optional) = match raw.strip_suffix('?') {
                Some(r) => (r, true),
                None => (raw.as_str(), false),
            };
            let key = at(&format!("inputs.{}", input.as_str()));
            let source = parse_source(raw).map_err(|m| (key.clone(), m))?;
            if matches!(source, Source::Body(_)) && e.body == BodyKind::Empty {
                return Err((
                    key,
                    format!("{raw} reads the body of an endpoint whose body = \"empty\""),
                ));
            }
            inputs.push(InputSource {
                input: *input,
                source,
                optional,
            });
        }
        let has = |i: Input| e.inputs.contains_key(&i);
        check_operation(e, &at)?;
        let needs: &[Input] = match (e.operation, e.grant) {
            (Operation::Token, Some(Grant::Password)) => &[Input::Username, Input::Password],
            (Operation::Token, Some(Grant::RefreshToken)) => &[Input::RefreshToken],
            (Operation::Token, Some(Grant::Request)) => &[Input::GrantType],
            (Operation::Revoke | Operation::Introspect, _) => &[Input::Token],
            _ => &[],
        };
        for n in needs {
            if !has(*n) {
                return Err((
                    at("inputs"),
                    format!(
                        "{} needs the input {}",
                        match e.grant {
                            Some(g) if e.operation == Operation::Token =>
                                format!("grant {}", g.as_str()),
                            _ => format!("operation {}", e.operation.as_str()),
                        },
                        n.as_str()
                    ),
                ));
            }
        }
        if matches!(e.client_auth, ClientAuth::Basic | ClientAuth::BasicForm)
            && (has(Input::ClientId) || has(Input::ClientSecret))
        {
            return Err((
                at("client_auth"),
                "client_auth reads the client from Authorization: Basic; inputs must not name \
                 client_id or client_secret too (client_auth = \"rfc6749\" takes either)"
                    .into(),
            ));
        }
        let envelope = match &e.envelope {
            None => None,
            Some(env) => {
                if e.body != BodyKind::Json {
                    return Err((
                        at("envelope"),
                        "an envelope is carried in a JSON body (body = \"json\")".into(),
                    ));
                }
                if e.client_auth != ClientAuth::Inputs {
                    return Err((
                        at("envelope"),
                        "the envelope's key authenticates the client: client_auth must stay \
                         \"inputs\""
                            .into(),
                    ));
                }
                let key_header = HeaderName::try_from(env.key_header.as_str()).map_err(|_| {
                    (
                        at("envelope.key_header"),
                        format!("{:?} is not a header name", env.key_header),
                    )
                })?;
                Some(EnvelopeSpec {
                    kind: env.kind,
                    key_header,
                    field: env.field.clone(),
                    key_overlap_secs: env.key_overlap_secs,
                })
            }
        };
        let signature = match &e.signature {
            None => None,
            Some(sig) => {
                if envelope.is_some() || e.client_auth != ClientAuth::Inputs {
                    return Err((
                        at("signature"),
                        "a signature authenticates the client itself: no envelope, and \
                         client_auth stays \"inputs\""
                            .into(),
                    ));
                }
                if !has(Input::ClientId) && e.client.is_none() {
                    return Err((
                        at("signature"),
                        "the signature is verified with a key of the request's client: the \
                         endpoint needs a client_id input or a bound client"
                            .into(),
                    ));
                }
                let header = HeaderName::try_from(sig.header.as_str())
                    .map(|h| Source::Header(h, sig.header.clone()))
                    .map_err(|_| {
                        (
                            at("signature.header"),
                            format!("{:?} is not a header name", sig.header),
                        )
                    })?;
                let is_source = |n: &str| parse_source(n).is_ok();
                let payload = Template::compile(&Value::String(sig.payload.clone()), &is_source)
                    .map_err(|t| (at("signature.payload"), t.message))?;
                let timestamp =
                    parse_source(&sig.timestamp).map_err(|m| (at("signature.timestamp"), m))?;
                if e.body == BodyKind::Empty {
                    let reads_body = |n: &str| matches!(parse_source(n), Ok(Source::Body(_)));
                    if let Some(n) = payload.names().into_iter().find(|n| reads_body(n)) {
                        return Err((
                            at("signature.payload"),
                            format!("{{{n}}} reads the body of an endpoint whose body = \"empty\""),
                        ));
                    }
                    if matches!(timestamp, Source::Body(_)) {
                        return Err((
                            at("signature.timestamp"),
                            format!(
                                "{} reads the body of an endpoint whose body = \"empty\"",
                                sig.timestamp
                            ),
                        ));
                    }
                }
                if sig.window_secs == 0 {
                    return Err((at("signature.window_secs"), "must be at least 1".into()));
                }
                Some(SignatureSpec {
                    kind: sig.kind,
                    header,
                    payload,
                    timestamp,
                    window_secs: sig.window_secs,
                })
            }
        };
        let names_client = e.client_auth != ClientAuth::Inputs
            || has(Input::ClientId)
            || e.client.is_some()
            || envelope.is_some();
        if !names_client && e.operation != Operation::Resource {
            return Err((
                at("client"),
                "the endpoint must name its client: a client_id input, client_auth = \"basic\", \
                 or a bound client"
                    .into(),
            ));
        }
        let mut require = Vec::new();
        for (raw, value) in &e.require {
            let key = at(&format!("require.{raw}"));
            let source = parse_source(raw).map_err(|m| (key.clone(), m))?;
            if matches!(source, Source::Body(_)) && e.body == BodyKind::Empty {
                return Err((
                    key,
                    format!("{raw} reads the body of an endpoint whose body = \"empty\""),
                ));
            }
            require.push((source, value.clone()));
        }
        let (status, response_example, response, response_headers) = match &e.response {
            None => (200, Value::Null, Template::Const(Value::Null), Vec::new()),
            Some(r) => {
                let resource = e.operation == Operation::Resource;
                let known = |n: &str| {
                    if resource {
                        RESOURCE_FIELDS.contains(&n)
                            || matches!(parse_source(n), Ok(Source::Body(_)))
                    } else {
                        ANSWER_FIELDS.contains(&n)
                    }
                };
                let response = Template::compile(&r.body, &known).map_err(|t| {
                    (
                        format!("{}.{}", at("response.body"), t.path.join("."))
                            .trim_end_matches('.')
                            .to_owned(),
                        t.message,
                    )
                })?;
                if !resource && !response.names().contains(&"access_token") {
                    return Err((
                        at("response.body"),
                        "the answer must carry {access_token} somewhere".into(),
                    ));
                }
                if resource
                    && e.body == BodyKind::Empty
                    && response.names().iter().any(|n| n.starts_with("body."))
                {
                    return Err((
                        at("response.body"),
                        "the answer names request values of an endpoint whose body = \"empty\""
                            .into(),
                    ));
                }
                if !(200..300).contains(&r.status) {
                    return Err((
                        at("response.status"),
                        format!("{} is not a 2xx status", r.status),
                    ));
                }
                let h = headers(&r.headers, &at("response.headers"))?;
                (r.status, r.body.clone(), response, h)
            }
        };
        let errors = e
            .errors
            .as_ref()
            .map(|errors| {
                compile_errors(errors).map_err(|(k, m)| (format!("{}.{k}", at("errors")), m))
            })
            .transpose()?;
        endpoints.push(Endpoint {
            name: name.clone(),
            method: e.method,
            path: e.path.clone(),
            operation: e.operation,
            grant: e.grant,
            client: e.client.clone(),
            client_auth: e.client_auth,
            body: e.body,
            inputs,
            require,
            envelope,
            signature,
            status,
            response_example,
            response,
            headers: response_headers,
            errors,
        });
    }
    let errors = compile_errors(&def.errors).map_err(|(k, m)| (format!("errors.{k}"), m))?;
    Ok(Dialect {
        name: def.name,
        title: def.title,
        origin,
        text: text.to_owned(),
        settings: serde_json::Map::new(),
        endpoints,
        errors,
    })
}

/// Which keys each operation takes and needs.
fn check_operation(e: &crate::def::Endpoint, at: &dyn Fn(&str) -> String) -> Result<(), Fail> {
    let op = e.operation.as_str();
    let refuse = |key: &str, m: String| Err((at(key), m));
    match e.operation {
        Operation::Token if e.grant.is_none() => {
            return refuse("grant", "a token endpoint names the grant it runs".into());
        }
        Operation::Token if e.response.is_none() => {
            return refuse("response", "a token endpoint needs its answer".into());
        }
        Operation::Resource if e.response.is_none() => {
            return refuse("response", "a resource endpoint needs its answer".into());
        }
        Operation::Token => {}
        _ if e.grant.is_some() => {
            return refuse("grant", format!("operation {op} runs no grant"));
        }
        Operation::Revoke | Operation::Introspect | Operation::RevokedJwts
            if e.response.is_some() =>
        {
            return refuse(
                "response",
                format!("operation {op} answers as its RFC says: it takes no response"),
            );
        }
        _ => {}
    }
    if e.operation != Operation::Token && (e.envelope.is_some() || e.signature.is_some()) {
        return refuse(
            if e.envelope.is_some() {
                "envelope"
            } else {
                "signature"
            },
            "envelopes and signatures authenticate token requests only".into(),
        );
    }
    match (
        e.operation == Operation::RevokedJwts,
        e.method == Method::Get,
    ) {
        (true, false) => return refuse("method", "operation revoked_jwts is a GET".into()),
        (false, true) => {
            return refuse(
                "method",
                format!("GET is for operation revoked_jwts, not {op}"),
            );
        }
        _ => {}
    }
    if e.operation == Operation::RevokedJwts {
        if e.body != BodyKind::Empty || !e.inputs.is_empty() {
            return refuse(
                "inputs",
                "operation revoked_jwts reads ?since= and the client's Authorization: Basic \
                 only: body = \"empty\" and no inputs"
                    .into(),
            );
        }
        if e.client_auth == ClientAuth::Inputs {
            return refuse(
                "client_auth",
                "operation revoked_jwts authenticates its client with HTTP Basic".into(),
            );
        }
    }
    Ok(())
}

fn compile_errors(e: &crate::def::Errors) -> Result<Errors, Fail> {
    for root in [Kind::Malformed, Kind::ServerError] {
        if !e.cases.contains_key(&root) {
            return Err((
                "cases".into(),
                format!(
                    "a case for {} is required (every refusal falls back to it or to {})",
                    root.as_str(),
                    if root == Kind::Malformed {
                        "server_error"
                    } else {
                        "malformed"
                    }
                ),
            ));
        }
    }
    let value_names: Vec<&str> = e
        .cases
        .values()
        .flat_map(|c| c.values.keys().map(String::as_str))
        .collect();
    let base = |n: &str| ERROR_FIELDS.contains(&n) && n != "message";
    let known = |n: &str| ERROR_FIELDS.contains(&n) || value_names.contains(&n);
    let body =
        Template::compile(&e.body, &known).map_err(|t| (join("body", &t.path), t.message))?;
    // A case's own values exist for the body to name: one it never names is a typo
    // (`mesage = …`, `stauts = 401`) that would otherwise load and do nothing.
    let named = body.names();
    for (kind, c) in &e.cases {
        if let Some(k) = c.values.keys().find(|k| !named.contains(&k.as_str())) {
            return Err((
                format!("cases.{}.{k}", kind.as_str()),
                format!(
                    "errors.body names no {{{k}}}: a case holds status, headers, message, and \
                     values the body names"
                ),
            ));
        }
    }
    let mut cases = HashMap::new();
    for (kind, c) in &e.cases {
        let at = format!("cases.{}", kind.as_str());
        if let Some(s) = c.status
            && !(400..600).contains(&s)
        {
            return Err((
                format!("{at}.status"),
                format!("{s} is not an error status"),
            ));
        }
        let message = match &c.message {
            None => None,
            Some(Message::One(m)) => Some(m.clone()),
            Some(Message::PerLanguage(m)) => {
                let Some(lang) = &e.language else {
                    return Err((
                        format!("{at}.message"),
                        "messages per language need errors.language to say which is sent".into(),
                    ));
                };
                Some(m.get(lang).cloned().ok_or_else(|| {
                    (
                        format!("{at}.message"),
                        format!("no message in language {lang:?}"),
                    )
                })?)
            }
        };
        let message = message
            .map(|m| Template::compile(&Value::String(m), &base))
            .transpose()
            .map_err(|t| (format!("{at}.message"), t.message))?;
        let mut values = Vec::new();
        for (k, v) in &c.values {
            let t = Template::compile(v, &base)
                .map_err(|t| (join(&format!("{at}.{k}"), &t.path), t.message))?;
            values.push((k.clone(), t));
        }
        cases.insert(
            *kind,
            Case {
                status: c.status,
                headers: headers(&c.headers, &format!("{at}.headers"))?,
                message,
                values,
            },
        );
    }
    if e.http_status == StatusMode::Mirror {
        let Some(path) = &e.mirror else {
            return Err((
                "mirror".into(),
                "http_status = \"mirror\" needs errors.mirror, the path of the body's status"
                    .into(),
            ));
        };
        match body.at(path) {
            Some(Template::Const(v)) if v.as_u64().is_some_and(|s| (400..600).contains(&s)) => {}
            Some(Template::Var(p)) if p.name == "status" => {}
            _ => {
                return Err((
                    "mirror".into(),
                    format!("errors.body.{path} must be an error status or {{status}}"),
                ));
            }
        }
    }
    Ok(Errors {
        mode: e.http_status,
        mirror: e.mirror.clone(),
        body,
        cases,
    })
}

fn join(at: &str, path: &[String]) -> String {
    if path.is_empty() {
        at.to_owned()
    } else {
        format!("{at}.{}", path.join("."))
    }
}

fn headers(
    h: &indexmap::IndexMap<String, String>,
    at: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, Fail> {
    h.iter()
        .map(|(k, v)| {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|_| (format!("{at}.{k}"), format!("{k:?} is not a header name")))?;
            let value = HeaderValue::try_from(v.as_str())
                .map_err(|_| (format!("{at}.{k}"), format!("{v:?} is not a header value")))?;
            Ok((name, value))
        })
        .collect()
}

fn check_path(p: &str) -> Result<(), String> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && !p.contains("//")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?}: a path starts with / and holds letters, digits, / - _ . ~ only"
        ))
    }
}

/// `body.a.b`, `header.NAME`, `authorization.SCHEME`.
pub fn parse_source(raw: &str) -> Result<Source, String> {
    let bad = || {
        format!(
            "{raw:?}: a source is body.NAME (nested body.a.b), header.NAME or authorization.SCHEME"
        )
    };
    let (kind, rest) = raw.split_once('.').ok_or_else(bad)?;
    match kind {
        "body" => {
            let path: Vec<String> = rest.split('.').map(str::to_owned).collect();
            if path.iter().any(String::is_empty) {
                return Err(bad());
            }
            Ok(Source::Body(path))
        }
        "header" => HeaderName::try_from(rest)
            .map(|h| Source::Header(h, rest.to_owned()))
            .map_err(|_| bad()),
        "authorization"
            if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            Ok(Source::Authorization(rest.to_owned()))
        }
        _ => Err(bad()),
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of a dotted key in the file, as far down the path as the file spells it (a key
/// made by substitution or a default has the line of its nearest written parent).
fn line_of(text: &str, key: &str) -> Option<usize> {
    use toml_edit::{Item, Value};
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut span = None;
    let mut at: Option<&Item> = None;
    for seg in key.split('.').filter(|s| !s.is_empty()) {
        let next = match at {
            None => doc.as_table().get_key_value(seg),
            Some(Item::Table(t)) => t.get_key_value(seg),
            Some(Item::Value(Value::InlineTable(t))) => t.get_key_value(seg),
            _ => None,
        };
        let Some((k, item)) = next else { break };
        span = k.span().or(span);
        at = Some(item);
    }
    span.map(|s| line_at(text, s.start))
}
