use anyhow::Result;
use clap::Parser;
use khoa_server::cli::{Cli, Command};
use khoa_server::config::Config;
use khoa_server::startup::{App, create_database_dir, open_engine, shutdown_signal};
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

fn main() -> Result<()> {
    release_large_allocations_promptly();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    khoa_server::telemetry::init_logging(&config.log, config.log_format);
    match cli.command {
        Command::Serve => App::build(config).await?.run(shutdown_signal()).await?,
        Command::Demo(args) => demo::run(args, config).await?,
        Command::Migrate => {
            create_database_dir(&config);
            khoa_store::migrate(&config.database_url).await?;
            println!("database is up to date");
        }
        Command::Client(cmd) => {
            admin::client(&*open_engine(&config, config.issuer()).await?, cmd).await?
        }
        Command::User(cmd) => {
            admin::user(&*open_engine(&config, config.issuer()).await?, cmd).await?
        }
        Command::Partner(cmd) => {
            let overlap = config.dialects.partner.key_overlap_secs;
            let engine = open_engine(&config, config.issuer()).await?;
            admin::partner(&engine, cmd, overlap).await?
        }
        Command::Audit(cmd) => {
            admin::audit(&*open_engine(&config, config.issuer()).await?, cmd).await?
        }
        Command::Keys(cmd) => {
            let engine = open_engine(&config, config.issuer()).await?;
            admin::keys(&engine, cmd, &config.keys).await?
        }
    }
    Ok(())
}
