//! `khoa dialect …`: what the registry serves, and a definition file checked the way start-up
//! checks it: valid on its own, and on no path this configuration already serves.

use anyhow::{Context, Result, bail};

use crate::cli::DialectCommand;
use crate::config::Config;
use crate::dialects::{self, registry};
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
                None if registry::BUILT_IN.contains(&name.as_str()) => bail!(
                    "{name} is a built-in dialect served by its own handler; it has no \
                     definition file yet (docs/dialects.md shows the format, and \
                     dialects/casso.toml is a complete example)"
                ),
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
                println!(
                    "  {} {}  ({}, {})",
                    e.method.as_str(),
                    e.path,
                    e.name,
                    e.grant.as_str()
                );
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
    // Every built-in with its configured paths, enabled or not.
    let mut all = config.dialects.clone();
    all.oauth2.enabled = true;
    all.derivative.enabled = true;
    all.bankhub.enabled = true;
    all.partner.enabled = true;
    all.vietqr.enabled = true;
    let enabled = dialects::route_dialects(&config.dialects, &[]);
    let routes = dialects::route_dialects(&all, &[]);
    for name in registry::BUILT_IN {
        if let Some((d, enabled)) = built_ins.iter().find(|(d, _)| d.name == name) {
            // Served as configured, or replaced by a file of the same name.
            let d = served.iter().find(|s| s.name == name).unwrap_or(d);
            let source = match d.origin {
                khoa_dialect::Origin::BuiltIn => "built-in",
                khoa_dialect::Origin::File(_) => "file",
            };
            let state = if *enabled { "enabled" } else { "disabled" };
            println!("{name:<12} {source:<10} {state:<9} {}", endpoints(d));
            continue;
        }
        let state = if enabled.iter().any(|r| r.dialect == name) {
            "enabled"
        } else {
            "disabled"
        };
        let paths: Vec<&str> = routes
            .iter()
            .filter(|r| r.dialect == name)
            .map(|r| r.path.as_str())
            .collect();
        println!(
            "{name:<12} {:<10} {state:<9} {}",
            "built-in",
            paths.join(" ")
        );
    }
    for d in served
        .iter()
        .filter(|d| !registry::BUILT_IN.contains(&d.name.as_str()))
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
