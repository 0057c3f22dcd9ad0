//! The OpenAPI operations of the dialects served from definition files, generated from the
//! definitions themselves: each endpoint's request (body members and headers it reads, fixed
//! values), its success body and its error body, with the status of every case. So a dialect
//! an operator writes is documented, and fuzzed, like the built-in ones.

use khoa_dialect::def::{BodyKind, Method};
use khoa_dialect::load::{ANSWER_FIELDS, Endpoint, Source};
use khoa_dialect::template::{Filter, Template};
use khoa_dialect::{Dialect, Kind};
use serde_json::{Map, Value, json};

/// The path item of every endpoint of `dialect`, by path.
pub fn path_items(dialect: &Dialect) -> Vec<(String, utoipa::openapi::PathItem)> {
    dialect
        .endpoints
        .iter()
        .filter_map(|e| {
            let op = operation(dialect, e);
            let method = match e.method {
                Method::Post => "post",
                Method::Put => "put",
            };
            let item = serde_json::from_value(json!({ method: op })).ok()?;
            Some((e.path.clone(), item))
        })
        .collect()
}

fn operation(d: &Dialect, e: &Endpoint) -> Value {
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
    let mut op = json!({
        "tags": [d.name],
        "summary": format!("{} ({})", e.name, d.title),
        "operationId": format!("{}_{}", d.name, e.name),
        "responses": responses(d, e),
    });
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

fn responses(d: &Dialect, e: &Endpoint) -> Value {
    let mut out = Map::new();
    out.insert(
        e.status.to_string(),
        json!({
            "description": "Tokens issued",
            "content": { "application/json": { "schema": schema_of(&e.response, &answer_type) } },
        }),
    );
    let error_schema = schema_of(&d.errors.body, &error_type);
    for kind in Kind::ALL {
        let status = d.refuse(&khoa_dialect::Refused::new(kind, "")).status;
        out.entry(status.as_u16().to_string()).or_insert_with(|| {
            json!({
                "description": format!("Refused ({} and others)", kind.as_str()),
                "content": { "application/json": { "schema": error_schema.clone() } },
            })
        });
    }
    Value::Object(out)
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
