use anyhow::Result;
use clap::Parser;
use khoa_server::cli::{Cli, Command};
use khoa_server::config::Config;
use khoa_server::startup::{App, OnMissing, check_database, open_engine, shutdown_signal};
use khoa_server::{admin, demo};

/// Argon2id allocates `memory_kib` (19 MiB by default) per hash. glibc raises its mmap
/// threshold after the first such block is freed, so later blocks come from the heap and stay
/// resident after use: tens of MB held for nothing between logins. A fixed threshold keeps
/// large blocks on mmap, returned to the system as soon as the hash is done.
fn release_large_allocations_promptly() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn main() -> std::process::ExitCode {
    release_large_allocations_promptly();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run()));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The message and its causes on one line, for an operator: never a stack trace, which
        // `RUST_BACKTRACE` in the environment would otherwise add to every refusal.
        Err(e) => {
            eprintln!("khoa: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    // `khoa agent --config` names the agent's own file, not a server configuration, and
    // `khoa token get` calls someone else's server: neither reads khoa's configuration file.
    let server_config = match cli.command {
        Command::Agent { .. } | Command::Token(_) => None,
        _ => cli.config.as_deref(),
    };
    let config = Config::load(server_config)?;
    // The admin verbs print their answer, not the engine's INFO lines, unless asked with
    // KHOA_LOG: their output is read by people and by scripts.
    let log = match cli.command {
        Command::Serve | Command::Demo(_) | Command::Agent { .. } => config.log.as_str(),
        _ if std::env::var_os("KHOA_LOG").is_some() => config.log.as_str(),
        _ => "warn",
    };
    khoa_server::telemetry::init_logging(log, config.log_format);
    match cli.command {
        Command::Serve => App::build(config).await?.run(shutdown_signal()).await?,
        Command::Demo(args) => demo::run(args, config).await?,
        Command::Migrate => {
            let created = check_database(&config, OnMissing::Create)?;
            // The key file too: the admin verbs that follow refuse to create one.
            khoa_server::master_key::load(&config, OnMissing::Create)?;
            khoa_store::migrate(&config.database_url).await?;
            match config.sqlite_path() {
                Some(path) if created => println!("created a new database at {}", path.display()),
                _ => println!("database is up to date"),
            }
        }
        Command::Client(cmd) => {
            admin::client(&*open_engine(&config, config.issuer()).await?, cmd).await?
        }
        Command::User(cmd) => {
            admin::user(&*open_engine(&config, config.issuer()).await?, cmd).await?
        }
        Command::Partner(cmd) => {
            let engine = open_engine(&config, config.issuer()).await?;
            let served = khoa_server::startup::load_defined_dialects(&config)?;
            let overlap = khoa_server::dialects::registry::key_overlap_secs(&served);
            admin::partner(&engine, cmd, overlap).await?
        }
        Command::Audit(cmd) => {
            admin::audit(&*open_engine(&config, config.issuer()).await?, cmd).await?
        }
        Command::Backup(args) => khoa_server::backup::run(&config, args).await?,
        Command::Dialect(cmd) => khoa_server::dialect_cli::run(&config, cmd)?,
        Command::Token(cmd) => khoa_server::token_cli::run(*cmd).await?,
        Command::Agent { config } => khoa_client::agent::run(&config, shutdown_signal()).await?,
        Command::Keys(cmd) => {
            let engine = open_engine(&config, config.issuer()).await?;
            admin::keys(&engine, cmd, &config.keys).await?
        }
    }
    Ok(())
}
