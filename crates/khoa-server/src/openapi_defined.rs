//! The OpenAPI operations of every served dialect, generated from its definition: each
//! endpoint's request (body members, headers and query it reads, fixed values), its success
//! body (the template's, or the RFC's for the standard operations) and its error body, with the
//! status of every case. So a dialect an operator writes is documented, and fuzzed, exactly
//! like the built-in ones.

use khoa_dialect::def::{BodyKind, ClientAuth, Method, Operation};
use khoa_dialect::load::{ANSWER_FIELDS, Endpoint, Source};
use khoa_dialect::template::{Filter, Template};
use khoa_dialect::{Dialect, Kind};
use serde_json::{Map, Value, json};

/// The path item of every endpoint of `dialect`, by path.
pub fn path_items(dialect: &Dialect) -> Vec<(String, utoipa::openapi::PathItem)> {
    dialect
        .endpoints
        .iter()
        .enumerate()
        .filter_map(|(index, e)| {
            let op = operation(dialect, index, e);
            let method = match e.method {
                Method::Post => "post",
                Method::Put => "put",
                Method::Get => "get",
            };
            let item = serde_json::from_value(json!({ method: op })).ok()?;
            Some((e.path.clone(), item))
        })
        .collect()
}

fn operation(d: &Dialect, index: usize, e: &Endpoint) -> Value {
    let mut body = Schema::default();
    let mut parameters = Vec::new();
    let sources = e
        .inputs
        .iter()
        .map(|i| (&i.source, !i.optional, None))
        .chain(e.require.iter().map(|(s, v)| (s, true, Some(v))));
    for (source, required, fixed) in sources {
        match source {
            Source::Body(path) => body.insert(path, required, fixed),
            Source::Header(_, h) => parameters.push(json!({
                "name": h, "in": "header", "required": required,
                "schema": { "type": "string" },
            })),
            Source::Authorization(_) => {}
        }
    }
    if let Some(sig) = &e.signature {
        for (source, what) in [
            (&sig.header, "The request signature, base64"),
            (&sig.timestamp, "The signing time, RFC 3339"),
        ] {
            if let Source::Header(_, h) = source
                && !parameters.iter().any(|p| p["name"] == h.as_str())
            {
                parameters.push(json!({
                    "name": h, "in": "header", "required": true,
                    "schema": { "type": "string" }, "description": what,
                }));
            }
        }
    }
    if let Some(env) = &e.envelope {
        parameters.push(json!({
            "name": env.key_header.as_str(), "in": "header", "required": true,
            "schema": { "type": "string" },
            "description": "Whose key opens the envelope",
        }));
        // What travels is the ciphertext; the members above are inside it.
        body = Schema::default();
        body.insert(std::slice::from_ref(&env.field), true, None);
    }
    if e.operation == Operation::RevokedJwts {
        parameters.push(json!({
            "name": "since", "in": "query", "required": false,
            "schema": { "type": "integer" }, "description": "Unix seconds; 0 when absent",
        }));
    }
    let mut op = json!({
        "tags": [d.name],
        "summary": format!("{} ({})", e.name, d.title),
        "operationId": format!("{}_{}", d.name, e.name),
        "responses": responses(d, index, e),
    });
    match (e.operation, e.client_auth) {
        (Operation::Resource, _) => op["security"] = json!([{ "bearer": [] }]),
        (_, ClientAuth::Basic | ClientAuth::BasicForm) => {
            op["security"] = json!([{ "client_basic": [] }])
        }
        (_, ClientAuth::Rfc6749) => op["security"] = json!([{}, { "client_basic": [] }]),
        (_, ClientAuth::Inputs) => {}
    }
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    let content_type = match e.body {
        BodyKind::Json => Some("application/json"),
        BodyKind::Form => Some("application/x-www-form-urlencoded"),
        BodyKind::Empty => None,
    };
    if let Some(ct) = content_type {
        op["requestBody"] = json!({
            "required": true,
            "content": { ct: { "schema": body.to_json() } },
        });
    }
    op
}

fn responses(d: &Dialect, index: usize, e: &Endpoint) -> Value {
    let mut out = Map::new();
    let success = match e.operation {
        Operation::Token => json!({
            "description": "Tokens issued",
            "content": { "application/json": { "schema": schema_of(&e.response, &answer_type) } },
        }),
        Operation::Resource => json!({
            "description": "Accepted",
            "content": { "application/json": { "schema": schema_of(&e.response, &|_| "string") } },
        }),
        Operation::Revoke => json!({
            "description": "Revoked, or no such token (RFC 7009 §2.2): an empty body",
        }),
        Operation::Introspect => json!({
            "description": "RFC 7662 §2.2: the token's metadata, or {\"active\": false} alone",
            "content": { "application/json": { "schema": introspection_schema() } },
        }),
        Operation::RevokedJwts => json!({
            "description": "The JWTs revoked since `since`: poll again with `since` a little \
                before `until`",
            "content": { "application/json": { "schema": {
                "type": "object", "required": ["until", "revoked"],
                "additionalProperties": false,
                "properties": {
                    "until": { "type": "integer" },
                    "revoked": { "type": "array", "items": {
                        "type": "object", "required": ["jti", "exp"],
                        "additionalProperties": false,
                        "properties": {
                            "jti": { "type": "string" }, "exp": { "type": "integer" },
                        },
                    } },
                },
            } } },
        }),
    };
    out.insert(e.status.to_string(), success);
    let errors = d.errors_of(index);
    let error_schema = schema_of(&errors.body, &error_type);
    for kind in Kind::ALL {
        let status = errors.refuse(&khoa_dialect::Refused::new(kind, "")).status;
        out.entry(status.as_u16().to_string()).or_insert_with(|| {
            json!({
                "description": format!("Refused ({} and others)", kind.as_str()),
                "content": { "application/json": { "schema": error_schema.clone() } },
            })
        });
    }
    Value::Object(out)
}

/// RFC 7662 §2.2's members, as [`crate::dialects::operations`] answers them.
fn introspection_schema() -> Value {
    let text = json!({ "type": "string" });
    let int = json!({ "type": "integer" });
    json!({
        "type": "object", "required": ["active"], "additionalProperties": false,
        "properties": {
            "active": { "type": "boolean" },
            "scope": text, "client_id": text, "sub": text, "exp": int, "iat": int,
            "token_type": text, "token_use": text, "aud": text, "iss": text, "jti": text,
        },
    })
}

/// The JSON type a success template's field renders as.
fn answer_type(name: &str) -> &'static str {
    match name {
        "expires_in" | "refresh_expires_in" | "issued_at" | "expires_at" | "refresh_expires_at" => {
            "integer"
        }
        n if ANSWER_FIELDS.contains(&n) => "string",
        _ => "string",
    }
}

fn error_type(name: &str) -> &'static str {
    match name {
        "status" | "retry_after" => "integer",
        _ => "string",
    }
}

/// The schema of what `t` renders, given the type of each placeholder.
fn schema_of(t: &Template, var_type: &dyn Fn(&str) -> &'static str) -> Value {
    match t {
        Template::Const(Value::Null) => json!({ "type": "null" }),
        Template::Const(v) => json!({ "type": json_type(v), "example": v }),
        Template::Var(p) => {
            let stringified = p
                .filters
                .iter()
                .any(|f| matches!(f, Filter::String | Filter::Rfc3339 | Filter::Format(_)));
            let ty = if stringified {
                "string"
            } else {
                var_type(&p.name)
            };
            // A placeholder with no value renders `null` unless it is optional.
            json!({ "type": [ty, "null"] })
        }
        Template::Text(_) => json!({ "type": "string" }),
        Template::Object(members) => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for (k, v) in members {
                properties.insert(k.clone(), schema_of(v, var_type));
                if !matches!(v, Template::Var(p) if p.optional) {
                    required.push(Value::String(k.clone()));
                }
            }
            json!({ "type": "object", "properties": properties, "required": required })
        }
        Template::Array(items) => json!({
            "type": "array",
            "items": items.first().map_or(json!({}), |i| schema_of(i, var_type)),
        }),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A request body's schema, built from the dotted paths an endpoint reads.
#[derive(Default)]
struct Schema {
    properties: Vec<(String, Schema, bool)>,
    fixed: Option<Value>,
    leaf: bool,
}

impl Schema {
    fn insert(&mut self, path: &[String], required: bool, fixed: Option<&Value>) {
        let Some((head, rest)) = path.split_first() else {
            return;
        };
        let at = match self.properties.iter().position(|(k, _, _)| k == head) {
            Some(i) => i,
            None => {
                self.properties
                    .push((head.clone(), Schema::default(), false));
                self.properties.len() - 1
            }
        };
        let (_, child, req) = &mut self.properties[at];
        *req |= required;
        if rest.is_empty() {
            child.leaf = true;
            child.fixed = fixed.cloned();
        } else {
            child.insert(rest, required, fixed);
        }
    }

    fn to_json(&self) -> Value {
        if self.leaf && self.properties.is_empty() {
            return match &self.fixed {
                Some(v) => json!({ "type": json_type(v), "enum": [v] }),
                None => json!({ "type": "string", "minLength": 1 }),
            };
        }
        let mut properties = Map::new();
        let mut required = Vec::new();
        for (k, s, req) in &self.properties {
            properties.insert(k.clone(), s.to_json());
            if *req {
                required.push(Value::String(k.clone()));
            }
        }
        json!({ "type": "object", "properties": properties, "required": required })
    }
}
