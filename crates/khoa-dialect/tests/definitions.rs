//! Loading definitions: the example files load, and each mistake is refused with its line and
//! key.

use http::HeaderMap;
use khoa_dialect::read::read;
use khoa_dialect::render::Issued;
use khoa_dialect::{Kind, Origin, Refused, load};
use serde_json::{Map, json};

const CASSO: &str = include_str!("../../../dialects/casso.toml");

fn casso() -> khoa_dialect::Dialect {
    load(CASSO, Origin::File("casso.toml".into()), &Map::new()).expect("casso.toml loads")
}

#[test]
fn the_casso_example_reads_its_request_and_renders_its_answers() {
    let d = casso();
    let e = &d.endpoints[0];
    assert_eq!(
        (e.path.as_str(), e.client.as_deref()),
        ("/v1/token", Some("casso"))
    );
    let r = read(e, &HeaderMap::new(), br#"{"code":"key-1"}"#).unwrap();
    assert_eq!(r.get(khoa_dialect::def::Input::ClientSecret), Some("key-1"));

    let ok = e.render(&Issued {
        access_token: "at",
        token_type: "Bearer",
        expires_in: 21600,
        ..Issued::default()
    });
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.body.to_string(),
        r#"{"access_token":"at","expires_in":21600}"#
    );

    let no = d.refuse(&Refused::new(Kind::InvalidClient, "x"));
    assert_eq!(no.status, 401);
    assert_eq!(
        no.body.to_string(),
        r#"{"error":401,"message":"Unauthorized Access","data":null}"#
    );
    // A kind without a case of its own takes its parent's body and keeps its own status.
    let missing = read(e, &HeaderMap::new(), br#"{}"#).unwrap_err();
    assert_eq!(missing.kind, Kind::MissingField);
    let a = d.refuse(&missing);
    assert_eq!(
        (a.status.as_u16(), a.body["message"].as_str()),
        (400, Some("Bad Request"))
    );
    let a = d.refuse(&Refused::new(Kind::MethodNotAllowed, "x"));
    assert_eq!(
        (a.status.as_u16(), a.body["error"].as_u64()),
        (405, Some(405))
    );
}

fn refused(text: &str) -> khoa_dialect::DefinitionError {
    load(text, Origin::File("bad.toml".into()), &Map::new()).expect_err("refused")
}

fn with(from: &str, to: &str) -> String {
    assert!(CASSO.contains(from), "{from}");
    CASSO.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let text = with(
        "grant = \"client_credentials\"",
        "grant = \"client_credentials\"\npth = \"/x\"",
    );
    let e = refused(&text);
    assert_eq!(e.key, "endpoints.token.pth", "{e}");
    assert_eq!(e.line, Some(line_of(&text, "pth =")), "{e}");
    assert!(
        e.to_string()
            .starts_with("dialect definition bad.toml, line "),
        "{e}"
    );
}

#[test]
fn a_template_naming_no_field_is_refused() {
    let text = with("\"{expires_in}\"", "\"{expires_inn}\"");
    let e = refused(&text);
    assert_eq!(e.key, "endpoints.token.response.body.expires_in", "{e}");
    assert!(e.message.contains("{expires_inn}"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "body = { access_token")), "{e}");
}

#[test]
fn an_answer_without_the_access_token_is_refused() {
    let e = refused(&with("access_token = \"{access_token}\", ", ""));
    assert_eq!(e.key, "endpoints.token.response.body");
    assert!(e.message.contains("{access_token}"), "{e}");
}

#[test]
fn the_two_root_cases_are_required() {
    let e = refused(&with(
        "server_error = { message = \"Internal Server Error\" }\n",
        "",
    ));
    assert_eq!(e.key, "errors.cases");
    assert!(e.message.contains("server_error"), "{e}");
}

#[test]
fn two_endpoints_on_one_path_are_refused() {
    let text = format!(
        "{CASSO}\n[endpoints.again]\npath = \"/v1/token\"\ngrant = \"client_credentials\"\n\
         client = \"x\"\nresponse = {{ body = {{ t = \"{{access_token}}\" }} }}\n"
    );
    let e = refused(&text);
    assert_eq!(e.key, "endpoints.again.path", "{e}");
    assert!(e.message.contains("endpoint token"), "{e}");
}

#[test]
fn settings_and_sources_must_exist() {
    let e = refused(&with(
        "client = \"{settings.client}\"",
        "client = \"{settings.clint}\"",
    ));
    assert_eq!(e.key, "endpoints.token.client");
    assert!(e.message.contains("settings.clint"), "{e}");
    let e = refused(&with("\"body.code\"", "\"bdy.code\""));
    assert_eq!(e.key, "endpoints.token.inputs.client_secret");
    let e = refused(&with(
        "grant = \"client_credentials\"",
        "grant = \"password\"",
    ));
    assert!(e.message.contains("username"), "{e}");
    let mut o = Map::new();
    o.insert("nope".into(), json!("x"));
    let e = load(CASSO, Origin::BuiltIn, &o).unwrap_err();
    assert!(e.message.contains("not a setting"), "{e}");
}

#[test]
fn a_settings_override_is_substituted_everywhere() {
    let mut o = Map::new();
    o.insert("client".into(), json!("casso-prod"));
    let d = load(CASSO, Origin::BuiltIn, &o).unwrap();
    assert_eq!(d.endpoints[0].client.as_deref(), Some("casso-prod"));
    o.insert("client".into(), json!(5));
    assert!(load(CASSO, Origin::BuiltIn, &o).is_err());
}

#[test]
fn a_toml_syntax_error_names_its_line() {
    let text = with("[errors]", "[errors");
    let e = refused(&text);
    assert_eq!(e.line, Some(line_of(&text, "[errors")), "{e}");
}

#[test]
fn the_schema_names_every_top_level_key() {
    let s = khoa_dialect::schema();
    let props = s["properties"].as_object().unwrap();
    for k in ["name", "title", "settings", "endpoints", "errors"] {
        assert!(props.contains_key(k), "{k}");
    }
}

#[test]
fn a_case_value_the_body_never_names_is_refused() {
    let e = refused(&with(
        "invalid_client = { message = \"Unauthorized Access\" }",
        "invalid_client = { mesage = \"Unauthorized Access\" }",
    ));
    assert_eq!(e.key, "errors.cases.invalid_client.mesage", "{e}");
}

#[test]
fn an_envelope_needs_a_json_body() {
    let e = refused(&with(
        "body = \"json\"",
        "body = \"form\"\nenvelope = { kind = \"aes256_cbc_hex\", key_header = \"Partner-Code\", field = \"data\" }",
    ));
    assert_eq!(e.key, "endpoints.token.envelope", "{e}");
    let e = refused(&with(
        "body = \"json\"",
        "envelope = { kind = \"rot13\", key_header = \"Partner-Code\", field = \"data\" }",
    ));
    assert!(e.key.starts_with("endpoints.token.envelope"), "{e}");
}

#[test]
fn each_operation_takes_only_its_own_keys() {
    // A token endpoint names its grant.
    let e = refused(&with("grant = \"client_credentials\"\n", ""));
    assert_eq!(e.key, "endpoints.token.grant", "{e}");
    // Revocation runs no grant, answers as RFC 7009 says, and needs the token.
    let revoke = with(
        "grant = \"client_credentials\"",
        "operation = \"revoke\"\ngrant = \"client_credentials\"",
    );
    let e = refused(&revoke);
    assert_eq!(e.key, "endpoints.token.grant", "{e}");
    assert!(e.message.contains("operation revoke runs no grant"), "{e}");
    let e = refused(&with(
        "grant = \"client_credentials\"",
        "operation = \"revoke\"",
    ));
    assert_eq!(e.key, "endpoints.token.response", "{e}");
    // GET is the revocation list's alone, and the list is a GET.
    let e = refused(&with(
        "path = \"/v1/token\"",
        "path = \"/v1/token\"\nmethod = \"GET\"",
    ));
    assert_eq!(e.key, "endpoints.token.method", "{e}");
    // A resource has an answer, which may not name the token fields of a token answer.
    let resource = with("grant = \"client_credentials\"", "operation = \"resource\"");
    let e = refused(&resource);
    assert_eq!(e.key, "endpoints.token.response.body.access_token", "{e}");
    let ok = resource.replace(
        "body = { access_token = \"{access_token}\", refresh_token = \"{refresh_token?}\", expires_in = \"{expires_in}\" }",
        "body = { ok = true, who = \"{client_id}\", echo = \"{body.code}\" }",
    );
    let d = load(&ok, Origin::File("r.toml".into()), &Map::new()).expect("a resource loads");
    assert_eq!(
        d.endpoints[0].operation,
        khoa_dialect::def::Operation::Resource
    );
    // "request" takes the grant from the grant_type input, which it needs.
    let e = refused(&with(
        "grant = \"client_credentials\"",
        "grant = \"request\"",
    ));
    assert!(
        e.message
            .contains("grant request needs the input grant_type"),
        "{e}"
    );
}

#[test]
fn a_resource_echoes_text_and_refuses_other_types() {
    let text = with("grant = \"client_credentials\"", "operation = \"resource\"").replace(
        "body = { access_token = \"{access_token}\", refresh_token = \"{refresh_token?}\", expires_in = \"{expires_in}\" }",
        "body = { echo = \"{body.code}\" }",
    );
    let d = load(&text, Origin::File("r.toml".into()), &Map::new()).unwrap();
    let e = &d.endpoints[0];
    let h = HeaderMap::new();
    let v = khoa_dialect::read::request_values(e, &h, br#"{"code":"x"}"#).unwrap();
    assert_eq!(v, [("body.code".to_owned(), json!("x"))]);
    let v = khoa_dialect::read::request_values(e, &h, br#"{}"#).unwrap();
    assert_eq!(v, [("body.code".to_owned(), json!(""))]);
    for bad in [r#"{"code":null}"#, r#"{"code":7}"#] {
        let r = khoa_dialect::read::request_values(e, &h, bad.as_bytes()).unwrap_err();
        assert_eq!(
            (r.kind, r.field.as_deref()),
            (Kind::InvalidField, Some("code"))
        );
    }
}

#[test]
fn rfc6749_client_auth_takes_basic_or_the_form_and_refuses_another_scheme() {
    let text = with(
        "grant = \"client_credentials\"",
        "grant = \"client_credentials\"\nclient_auth = \"rfc6749\"",
    )
    .replace("body = \"json\"", "body = \"form\"")
    .replace(
        "client_secret = \"body.code\"",
        "client_id = \"body.client_id?\"\nclient_secret = \"body.client_secret?\"",
    );
    let d = load(&text, Origin::File("f.toml".into()), &Map::new()).expect("rfc6749 loads");
    let e = &d.endpoints[0];
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let r = read(e, &h, b"client_id=a&client_secret=b").unwrap();
    assert_eq!(r.get(khoa_dialect::def::Input::ClientId), Some("a"));
    assert!(r.basic.is_none());
    // Basic is form-decoded (RFC 6749 §2.3.1): "a%3Ab" is the id "a:b".
    h.insert("authorization", "Basic YSUzQWI6cw==".parse().unwrap());
    let r = read(e, &h, b"").unwrap();
    assert_eq!(r.basic, Some(("a:b".to_owned(), "s".to_owned())));
    h.insert("authorization", "Bearer x".parse().unwrap());
    assert_eq!(read(e, &h, b"").unwrap_err().kind, Kind::InvalidClientBasic);
    // A form endpoint takes only a form.
    h.remove("authorization");
    h.insert("content-type", "application/json".parse().unwrap());
    let r = read(e, &h, b"{}").unwrap_err();
    assert_eq!(r.kind, Kind::Malformed);
    assert!(
        r.description.contains("application/x-www-form-urlencoded"),
        "{r:?}"
    );
}

#[test]
fn a_signature_of_a_bodiless_endpoint_may_not_sign_body_values() {
    let text = with("body = \"json\"", "body = \"empty\"")
        .replace("client_secret = \"body.code\"", "client_id = \"header.X-Client\"")
        .replace(
            "[endpoints.token.inputs]",
            "signature = { kind = \"rsa_sha256\", header = \"X-Sig\", payload = \"{header.X-Client}|{body.x}\", timestamp = \"header.X-Time\" }\n\n[endpoints.token.inputs]",
        );
    let e = refused(&text);
    assert_eq!(e.key, "endpoints.token.signature.payload", "{e}");
    assert!(e.message.contains("{body.x} reads the body"), "{e}");
    let e = refused(
        &text
            .replace("{body.x}", "{header.X-Time}")
            .replace("timestamp = \"header.X-Time\"", "timestamp = \"body.t\""),
    );
    assert_eq!(e.key, "endpoints.token.signature.timestamp", "{e}");
}

#[test]
fn a_repeated_header_in_a_signed_payload_is_refused_as_repeated() {
    let text = with("body = \"json\"", "body = \"empty\"")
        .replace("client_secret = \"body.code\"", "client_id = \"header.X-Client\"")
        .replace(
            "[endpoints.token.inputs]",
            "signature = { kind = \"rsa_sha256\", header = \"X-Sig\", payload = \"{header.X-Client}|{header.X-Nonce}\", timestamp = \"header.X-Time\" }\n\n[endpoints.token.inputs]",
        );
    let d = load(&text, Origin::File("s.toml".into()), &Map::new()).expect("loads");
    let mut h = HeaderMap::new();
    h.insert("x-client", "c".parse().unwrap());
    h.insert("x-sig", "AAAA".parse().unwrap());
    h.insert("x-time", "2026-12-07T17:00:00+07:00".parse().unwrap());
    h.append("x-nonce", "1".parse().unwrap());
    h.append("x-nonce", "2".parse().unwrap());
    let r = read(&d.endpoints[0], &h, b"").unwrap_err();
    assert_eq!(
        (r.kind, r.header.as_deref()),
        (Kind::RepeatedHeader, Some("x-nonce"))
    );
}
