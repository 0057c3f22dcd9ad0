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
