//! `khoa dialect …`: what the registry serves, and a definition file checked the way start-up
//! checks it: valid on its own, and on no path this configuration already serves.

use anyhow::{Context, Result, bail};

use crate::cli::DialectCommand;
use crate::config::Config;
use crate::dialects::registry;
use crate::startup::{load_defined_dialects, reserved_paths};

pub fn run(config: &Config, cmd: DialectCommand) -> Result<()> {
    match cmd {
        DialectCommand::List => list(config),
        DialectCommand::Show { name } => {
            let served = load_defined_dialects(config)?;
            let built_ins = registry::built_ins(&config.dialects)?;
            let found = served
                .iter()
                .find(|d| d.name == name)
                .or_else(|| built_ins.iter().map(|(d, _)| d).find(|d| d.name == name));
            match found {
                Some(d) => print!("{}", d.text),
                None => bail!(
                    "no dialect {name} (khoa dialect list shows what is loaded{})",
                    if config.dialects.dir.is_none() {
                        "; dialects.dir is not set"
                    } else {
                        ""
                    }
                ),
            }
            Ok(())
        }
        DialectCommand::Check { file } => {
            let served = load_defined_dialects(config)?;
            let d = registry::check_file(&file, &served, &reserved_paths(config))?;
            println!("{} ({}): valid", d.name, file.display());
            for e in &d.endpoints {
                let does = match e.grant {
                    Some(g) => g.as_str(),
                    None => e.operation.as_str(),
                };
                println!("  {} {}  ({}, {does})", e.method.as_str(), e.path, e.name);
            }
            Ok(())
        }
        DialectCommand::Schema => {
            let schema = serde_json::to_string_pretty(&khoa_dialect::schema())
                .context("the schema serialises")?;
            println!("{schema}");
            Ok(())
        }
    }
}

fn list(config: &Config) -> Result<()> {
    let served = load_defined_dialects(config)?;
    let built_ins = registry::built_ins(&config.dialects)?;
    println!("{:<12} {:<10} {:<9} ENDPOINTS", "NAME", "SOURCE", "STATE");
    // Every built-in with its configured paths, enabled or not; a file of the same name
    // replaces it.
    for (d, enabled) in &built_ins {
        let d = served.iter().find(|s| s.name == d.name).unwrap_or(d);
        let source = match d.origin {
            khoa_dialect::Origin::BuiltIn => "built-in",
            khoa_dialect::Origin::File(_) => "file",
        };
        let state = if *enabled { "enabled" } else { "disabled" };
        println!("{:<12} {source:<10} {state:<9} {}", d.name, endpoints(d));
    }
    for d in served
        .iter()
        .filter(|d| !built_ins.iter().any(|(b, _)| b.name == d.name))
    {
        println!(
            "{:<12} {:<10} {:<9} {}",
            d.name,
            "file",
            "enabled",
            endpoints(d)
        );
        println!("{:<12} {}", "", d.origin);
    }
    Ok(())
}

fn endpoints(d: &khoa_dialect::Dialect) -> String {
    let e: Vec<String> = d
        .endpoints
        .iter()
        .map(|e| format!("{} {}", e.method.as_str(), e.path))
        .collect();
    e.join(", ")
}
