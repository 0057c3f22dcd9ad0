//! `khoa.example.toml` at the repository root cannot go stale: it loads, and its keys and
//! values are exactly those of `Config::default()`, so that a key added to the configuration
//! without a line in the example fails here.

use figment::Figment;
use figment::providers::{Format, Toml};
use khoa_server::config::Config;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Keys without a default value: in the example only as commented-out lines (`# key = …`).
/// `master_key` is never serialised (a secret), the others serialise as null.
const OPTIONAL: [&str; 9] = [
    "issuer",
    "master_key",
    "master_key_file",
    "node",
    "danger_clock_file",
    "http.max_connections_per_ip",
    "tls.cert_file",
    "tls.key_file",
    "dialects.dir",
];

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../khoa.example.toml")
}

/// `value` flattened to dotted paths; arrays are values.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = match prefix {
                    "" => key.clone(),
                    _ => format!("{prefix}.{key}"),
                };
                flatten(&path, inner, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

fn keys_of(value: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    flatten("", value, &mut out);
    out
}

#[test]
fn the_example_config_loads_and_lists_every_key_with_its_default() {
    let path = example_path();
    let text = std::fs::read_to_string(&path).expect("khoa.example.toml at the repository root");
    // Loads as `khoa serve --config` would (KHOA_* of the test's environment included).
    Config::load(Some(&path)).expect("khoa.example.toml loads");
    let example: Value = Figment::from(Toml::string(&text))
        .extract()
        .expect("khoa.example.toml is TOML");
    let example = keys_of(&example);
    let mut defaults = keys_of(&serde_json::to_value(Config::default()).unwrap());
    // `[dialects.NAME]` holds what the built-in definitions have: `enabled` and settings.
    let built_ins = khoa_server::dialects::registry::built_ins(&Default::default()).unwrap();
    for (d, enabled) in built_ins {
        defaults.insert(format!("dialects.{}.enabled", d.name), Value::Bool(enabled));
        for (key, value) in &d.settings {
            defaults.insert(format!("dialects.{}.{key}", d.name), value.clone());
        }
    }

    // The keys without a default: listed above, commented out in the example.
    let unlisted: Vec<&String> = defaults
        .iter()
        .filter(|(key, value)| value.is_null() && !OPTIONAL.contains(&key.as_str()))
        .map(|(key, _)| key)
        .collect();
    assert!(
        unlisted.is_empty(),
        "keys without a default missing from OPTIONAL (add them, and a commented-out line \
         to khoa.example.toml): {unlisted:?}"
    );
    for key in OPTIONAL {
        let default = defaults.remove(key);
        assert!(
            default.as_ref().is_none_or(Value::is_null),
            "{key} has a default ({default:?}): it belongs in the example uncommented"
        );
        assert!(!example.contains_key(key), "{key} is set in the example");
        let leaf = leaf(key);
        assert!(
            text.lines().any(|l| l.starts_with(&format!("# {leaf} = "))),
            "khoa.example.toml shows no commented-out `# {leaf} = …` line"
        );
    }

    // Assert: the same keys both ways, and the same values.
    let missing: Vec<&String> = defaults
        .keys()
        .filter(|k| !example.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "configuration keys missing from khoa.example.toml: {missing:?}"
    );
    let extra: Vec<&String> = example
        .keys()
        .filter(|k| !defaults.contains_key(*k))
        .collect();
    assert!(
        extra.is_empty(),
        "khoa.example.toml has keys the configuration does not: {extra:?}"
    );
    let differ: Vec<String> = defaults
        .iter()
        .filter(|(key, value)| example[*key] != **value)
        .map(|(key, value)| format!("{key}: example {}, default {value}", example[key]))
        .collect();
    assert!(
        differ.is_empty(),
        "khoa.example.toml differs from the defaults: {differ:#?}"
    );
}

#[test]
fn every_commented_out_key_of_the_example_is_a_real_key() {
    // Uncommented, the optional lines must load too: a typo in them would go unnoticed.
    let text = std::fs::read_to_string(example_path()).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if OPTIONAL
                    .iter()
                    .any(|k| rest.starts_with(&format!("{} = ", leaf(k)))) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("khoa.toml");
    // The master key placeholder is not hex: put a real-looking one.
    let uncommented = uncommented.replace("<64 hex characters>", &"ab".repeat(32));
    std::fs::write(&file, uncommented).unwrap();

    let config = Config::load(Some(&file)).expect("the example with its optional keys loads");

    let loaded = keys_of(&serde_json::to_value(&config).unwrap());
    let still_unset: Vec<&str> = OPTIONAL
        .into_iter()
        .filter(|k| *k != "master_key" && loaded.get(*k).is_none_or(Value::is_null))
        .collect();
    assert!(
        still_unset.is_empty(),
        "not set by their lines: {still_unset:?}"
    );
    // Never serialised: read directly.
    assert!(config.master_key.is_some());
}

fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap()
}
