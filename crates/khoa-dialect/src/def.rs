//! The definition file's types: what an operator writes, as serde reads it. `docs/dialects.md`
//! explains each key with examples; [`crate::schema`] derives the JSON Schema from these types.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::refusal::Kind;

/// One dialect: a partner's token API.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// The dialect's name: the `dialect` label of metrics and logs, `khoa dialect show NAME`.
    /// Lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// One line that says whose API this is.
    #[serde(default)]
    pub title: String,
    /// Values the rest of the file refers to as `{settings.NAME}`, resolved when the file is
    /// loaded (a path prefix, a bound client's id, a language).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, serde_json::Value>")]
    pub settings: IndexMap<String, serde_json::Value>,
    /// The dialect's operations (`login`, `refresh`, `token`, …), by name.
    pub endpoints: IndexMap<String, Endpoint>,
    /// How every refusal of every endpoint is answered.
    pub errors: Errors,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Method {
    #[default]
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "PUT")]
    Put,
    /// Only for `operation = "revoked_jwts"`, which reads its query string.
    #[serde(rename = "GET")]
    Get,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Get => "GET",
        }
    }
}

/// What an endpoint does. Each operation is code, chosen by name; everything around it (the
/// path, where its inputs and the client's credentials are read, every refusal's answer) is
/// the definition's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Runs `grant` and answers `response` with the issued tokens.
    #[default]
    Token,
    /// RFC 7009 revocation of the `token` input: 200 with an empty body, whether or not the
    /// token existed.
    Revoke,
    /// RFC 7662 introspection of the `token` input: the token's metadata, or
    /// `{"active": false}` alone.
    Introspect,
    /// khoa's JWT revocation list (`GET`, `?since=` unix seconds): `{"until", "revoked":
    /// [{"jti", "exp"}]}`, for resource servers that verify JWTs offline.
    RevokedJwts,
    /// A protected API: the request's `Authorization: Bearer` token must be one khoa issued
    /// and still valid; `response` is answered, its templates naming request values
    /// (`{body.NAME}`) and the token's `{client_id}`, `{subject}`, `{scope}`.
    Resource,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Token => "token",
            Operation::Revoke => "revoke",
            Operation::Introspect => "introspect",
            Operation::RevokedJwts => "revoked_jwts",
            Operation::Resource => "resource",
        }
    }
}

/// The grant an endpoint runs in the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// RFC 6749 §4.3: needs `username` and `password` inputs.
    Password,
    /// RFC 6749 §4.4: needs an authenticated client.
    ClientCredentials,
    /// RFC 6749 §6: needs a `refresh_token` input.
    RefreshToken,
    /// The grant the request names in its `grant_type` input: one endpoint for every grant
    /// khoa has (RFC 6749 §3.2), `unsupported_grant_type` for any other.
    Request,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Password => "password",
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken => "refresh_token",
            Grant::Request => "request",
        }
    }
}

/// What the request body is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// A JSON object (`body.NAME`, nested as `body.outer.inner`).
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`; a repeated parameter is refused (`body.NAME`).
    Form,
    /// No body: nothing, whitespace, or a JSON object whose members are ignored (what callers
    /// of body-less endpoints really send).
    Empty,
}

/// Where the client's credentials come from, when not from inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// From the `client_id` / `client_secret` inputs, else the bound `client`.
    #[default]
    Inputs,
    /// `Authorization: Basic base64(id:secret)`, read as is (RFC 7617), as most partner
    /// documents encode it.
    Basic,
    /// `Authorization: Basic` with id and secret form-encoded first (RFC 6749 §2.3.1).
    BasicForm,
    /// RFC 6749 §2.3: `Authorization: Basic` (form-encoded), or the `client_id` and
    /// `client_secret` inputs, or `client_id` alone for a public client; never two methods.
    Rfc6749,
}

/// The engine inputs an endpoint can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    ClientId,
    ClientSecret,
    Username,
    Password,
    RefreshToken,
    Scope,
    /// The grant of `grant = "request"`.
    GrantType,
    /// RFC 6749 §4.1.3: the authorization code, its redirect URI, and the PKCE verifier.
    Code,
    RedirectUri,
    CodeVerifier,
    /// The token of `operation = "revoke"` / `"introspect"`, and its hint.
    Token,
    TokenTypeHint,
}

impl Input {
    pub const ALL: [Input; 12] = [
        Input::ClientId,
        Input::ClientSecret,
        Input::Username,
        Input::Password,
        Input::RefreshToken,
        Input::Scope,
        Input::GrantType,
        Input::Code,
        Input::RedirectUri,
        Input::CodeVerifier,
        Input::Token,
        Input::TokenTypeHint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Input::ClientId => "client_id",
            Input::ClientSecret => "client_secret",
            Input::Username => "username",
            Input::Password => "password",
            Input::RefreshToken => "refresh_token",
            Input::Scope => "scope",
            Input::GrantType => "grant_type",
            Input::Code => "code",
            Input::RedirectUri => "redirect_uri",
            Input::CodeVerifier => "code_verifier",
            Input::Token => "token",
            Input::TokenTypeHint => "token_type_hint",
        }
    }
}

/// One operation of the dialect.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default)]
    pub method: Method,
    /// The path, from `/`; unique among every loaded dialect.
    pub path: String,
    #[serde(default)]
    pub operation: Operation,
    /// The grant of `operation = "token"` (required there, refused elsewhere).
    #[serde(default)]
    pub grant: Option<Grant>,
    /// The client this endpoint acts for when the request names none (a public client whose
    /// token policy its logins get).
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default)]
    pub body: BodyKind,
    /// Each engine input and where it is read: `body.NAME` (nested `body.a.b`),
    /// `header.NAME`, `authorization.SCHEME` (the credentials after `Authorization: SCHEME`).
    /// A source ending in `?` is optional.
    #[serde(default)]
    #[schemars(with = "IndexMap<Input, String>")]
    pub inputs: IndexMap<Input, String>,
    /// Sources that must hold a fixed value, such as `"body.grantType" = "client_credentials"`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, serde_json::Value>")]
    pub require: IndexMap<String, serde_json::Value>,
    /// The body is an envelope to open first; inputs named `body.…` are then read from what
    /// it holds, and the key that opened it authenticates its client.
    #[serde(default)]
    pub envelope: Option<Envelope>,
    /// The request is signed with a key registered for its client (`khoa client key add`);
    /// a valid, fresh, first-seen signature authenticates the client.
    #[serde(default)]
    pub signature: Option<Signature>,
    /// The answer of `operation = "token"` and `"resource"`; the other operations answer as
    /// their RFC says.
    #[serde(default)]
    pub response: Option<Response>,
    /// This endpoint's own error answers, when they differ from the dialect's `[errors]`.
    #[serde(default)]
    pub errors: Option<Errors>,
}

/// A request signature. The schemes are code, registered by name.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub kind: SignatureKind,
    /// The header carrying the signature, base64.
    pub header: String,
    /// What is signed: text with sources as placeholders, such as
    /// `{header.X-CLIENT-KEY}|{header.X-TIMESTAMP}`.
    pub payload: String,
    /// The source of the signing time, RFC 3339 / ISO 8601 with an offset
    /// (`2026-12-07T17:00:00+07:00`).
    pub timestamp: String,
    /// How far the signing time may be from now, either way; a signature is accepted once
    /// within it.
    #[serde(default = "five_minutes")]
    pub window_secs: u64,
}

fn five_minutes() -> u64 {
    300
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureKind {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`SHA256withRSA`), verified with the client's
    /// registered public key.
    RsaSha256,
    /// HMAC-SHA256 (RFC 2104) with a secret the client shares with khoa, sealed at rest.
    HmacSha256,
    /// HMAC-SHA512 (RFC 2104) with a secret the client shares with khoa, sealed at rest.
    HmacSha512,
}

/// An encrypted body. The ciphers are code, registered by name.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub kind: EnvelopeKind,
    /// The header naming whose key opens it (a partner code).
    pub key_header: String,
    /// The member of the JSON body holding the ciphertext.
    pub field: String,
    /// Seconds a partner's previous key keeps opening envelopes after `khoa partner
    /// rotate-key` (that verb's default).
    #[serde(default = "one_day")]
    pub key_overlap_secs: u64,
}

fn one_day() -> u64 {
    86_400
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeKind {
    /// `hex(IV ‖ AES-256-CBC(JSON object))` under the partner's key (`khoa partner add`), one
    /// identical refusal for every way it fails to open.
    Aes256CbcHex,
}

/// The answer to a request the engine granted.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Response {
    #[serde(default = "ok")]
    pub status: u16,
    /// A JSON template: constants, and `{access_token}`-style fields of the issued tokens.
    pub body: serde_json::Value,
    /// Extra headers (`Cache-Control: no-store` is always sent).
    #[serde(default)]
    pub headers: IndexMap<String, String>,
}

fn ok() -> u16 {
    200
}

/// How the HTTP status of an error answer is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusMode {
    /// Each case's own status.
    #[default]
    Semantic,
    /// The number at `errors.mirror` in the rendered body, as an envelope that carries its
    /// own status and is always sent with it.
    Mirror,
}

/// Every refusal's answer: one body template, and a case per kind of refusal.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Errors {
    /// Which language of a case's `message` table is sent.
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub http_status: StatusMode,
    /// With `http_status = "mirror"`: the dotted path of the body's status field.
    #[serde(default)]
    pub mirror: Option<String>,
    /// The error body: constants and `{status}`, `{message}`, `{error}`, `{description}`,
    /// `{field}`, `{header}`, `{retry_after}` and the case's own values.
    pub body: serde_json::Value,
    /// By kind of refusal; `malformed` and `server_error` are required, others fall back to
    /// their parent (docs/dialects.md lists the tree).
    #[schemars(with = "IndexMap<Kind, Case>")]
    pub cases: IndexMap<Kind, Case>,
}

/// One kind of refusal's answer.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct Case {
    /// The HTTP status; the kind's own when absent.
    #[serde(default)]
    pub status: Option<u16>,
    /// Extra headers, such as `WWW-Authenticate`.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// `{message}`: one text, or one per language (`{ vi = "…", en = "…" }`).
    #[serde(default)]
    pub message: Option<Message>,
    /// Further values the body template names, such as `code = -107`.
    #[serde(flatten)]
    #[schemars(with = "IndexMap<String, serde_json::Value>")]
    pub values: IndexMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Message {
    One(String),
    PerLanguage(IndexMap<String, String>),
}
