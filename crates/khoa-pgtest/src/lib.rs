//! A throwaway PostgreSQL cluster for tests, so that `cargo test` needs no pre-configured
//! server: `initdb` into a temporary directory, then `pg_ctl start` on a free port of
//! 127.0.0.1, with trust authentication and `fsync=off` (nothing here must survive a crash).
//!
//! ```no_run
//! // One cluster per test binary, one database per test.
//! let url = khoa_pgtest::PgCluster::shared().create_database("users_round_trip");
//! assert!(url.starts_with("postgres://postgres@127.0.0.1:"));
//! ```
//!
//! Whatever goes wrong — no binaries, `initdb` failing, a server that does not come up — is a
//! panic that says what happened: a test that needs PostgreSQL must fail without it, never pass.
//!
//! # Layout
//!
//! One file, in the order a cluster lives: finding the server binaries (`PATH`, then the newest
//! `/usr/lib/postgresql/*/bin`), running them as an unprivileged user when the tests run as
//! root (PostgreSQL refuses to run as root), starting and stopping the server, and cleaning
//! up — by `Drop`, and by a small reaper process for the clusters that are never dropped (a
//! `static` shared by a test binary) or whose test process is killed.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// A running PostgreSQL server on its own data directory. Dropping it stops the server
/// (`pg_ctl stop -m immediate`) and removes the directory.
pub struct PgCluster {
    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    bin: PathBuf,
    /// The temporary directory: `data/`, the server `log` and the Unix socket.
    root: PathBuf,
    port: u16,
    /// Set when we are root: the server is run as this user instead.
    run_as: Option<Unprivileged>,
    /// Cleans up once this process is gone; see [`PgCluster::spawn_reaper`].
    reaper: Option<Child>,
}

/// The unprivileged user the server runs as when the tests run as root.
struct Unprivileged {
    uid: u32,
    gid: u32,
    /// The command that runs the rest of its arguments as that user.
    prefix: Vec<OsString>,
}

/// The user the Debian and RPM server packages create; PostgreSQL cannot run as root and these
/// tests must not create users, so as root they need it.
const SERVER_USER: &str = "postgres";

/// How often a start is tried on a new free port, should another process take the port
/// between our probe and the server's bind.
const START_ATTEMPTS: u32 = 3;

impl PgCluster {
    /// Creates a cluster in a new temporary directory and starts it on a free port.
    ///
    /// # Panics
    ///
    /// When no PostgreSQL server binaries are found, when running as root without a
    /// `postgres` user, or when `initdb` or the server fail; the message says which.
    pub fn start() -> PgCluster {
        let bin = find_server_bin().unwrap_or_else(|| {
            panic!(
                "khoa-pgtest: no PostgreSQL server found (looked for initdb, pg_ctl and postgres \
                 on PATH and in /usr/lib/postgresql/*/bin). Install the server package (Debian: \
                 `apt-get install postgresql`; .ci/run does). Tests that need PostgreSQL cannot \
                 pass without it."
            )
        });
        let run_as = is_root().then(unprivileged);
        let root = tempfile::Builder::new()
            .prefix("khoa-pg-")
            .tempdir()
            .expect("khoa-pgtest: cannot create a temporary directory")
            .keep();
        if let Some(user) = &run_as {
            std::os::unix::fs::chown(&root, Some(user.uid), Some(user.gid)).unwrap_or_else(|e| {
                panic!(
                    "khoa-pgtest: cannot hand {} to {SERVER_USER}: {e}",
                    root.display()
                )
            });
        }
        let mut cluster = PgCluster {
            bin,
            root,
            port: 0,
            run_as,
            reaper: None,
        };
        // From here on a panic unwinds through `Drop`, which removes the directory.
        cluster.reaper = Some(cluster.spawn_reaper());
        cluster.initdb();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "khoa-pgtest: the PostgreSQL server at {} did not start:\n{}",
            cluster.bin.display(),
            failures.join("\n---\n")
        );
    }

    /// One cluster for the whole test binary, started by the first caller. It is never
    /// dropped; its reaper stops it and removes its directory when the process exits.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(PgCluster::start)
    }

    /// The URL of the `postgres` database, as the superuser `postgres`, without a password.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` (letters, digits and `_`) and returns its URL.
    ///
    /// # Panics
    ///
    /// When the name is not a plain identifier or `createdb` fails (the name is taken, the
    /// server is stopped…).
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "khoa-pgtest: `{name}` is not a plain database name"
        );
        let createdb = Some(self.bin.join("createdb"))
            .filter(|p| is_executable(p))
            .unwrap_or_else(|| PathBuf::from("createdb"));
        // A client, not the server: root may run it.
        let port = self.port.to_string();
        let out = Command::new(&createdb)
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name])
            .output();
        expect_success(&format!("{} {name}", createdb.display()), out);
        self.url_of(name)
    }

    /// Stops the server (`-m fast`: sessions are ended with "terminating connection due to
    /// administrator command"), keeping its data: an outage, until [`PgCluster::start_again`].
    pub fn stop(&self) {
        let out = self.pg_ctl().args(["-m", "fast", "-w", "stop"]).output();
        expect_success("pg_ctl stop", out);
    }

    /// Starts the server stopped by [`PgCluster::stop`] again, on the same data and port.
    ///
    /// # Panics
    ///
    /// When it does not come up, for instance because another process took its port meanwhile.
    pub fn start_again(&self) {
        if let Err(why) = self.try_start() {
            panic!("khoa-pgtest: the PostgreSQL server did not start again:\n{why}");
        }
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log(&self) -> PathBuf {
        self.root.join("log")
    }

    /// A server-side tool (`initdb`, `pg_ctl`), as the unprivileged user if we are root, run
    /// from the cluster's directory (the server user may not be allowed into ours).
    fn server_tool(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new(&user.prefix[0]);
                cmd.args(&user.prefix[1..]).arg(path);
                cmd
            }
            None => Command::new(path),
        };
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = self.server_tool("pg_ctl");
        cmd.arg("-D").arg(self.data());
        cmd
    }

    fn initdb(&self) {
        let out = self
            .server_tool("initdb")
            .arg("-D")
            .arg(self.data())
            // The C locale exists everywhere; --no-sync because the cluster is thrown away.
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output();
        expect_success("initdb", out);
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.root.display()
        );
        let out = self
            .pg_ctl()
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output();
        match out {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "pg_ctl start on port {}: {}\n{}{}\nserver log:\n{}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.log()).unwrap_or_default()
            )),
            Err(e) => Err(format!("cannot run pg_ctl: {e}")),
        }
    }

    /// A process that waits for this one to end, then stops the server and removes its
    /// directory. It reads its stdin, a pipe only this process writes to: the pipe closes
    /// however this process ends — a normal exit that never drops a `static` cluster, a panic,
    /// a kill — and that is the reaper's cue. It ignores the signals a Ctrl-C sends to the
    /// whole process group, so that it outlives the tests it cleans up after.
    fn spawn_reaper(&self) -> Child {
        const SCRIPT: &str = r#"
            trap '' HUP INT TERM PIPE
            cat >/dev/null
            data=$1; root=$2; shift 2
            if [ -d "$data" ]; then "$@" -D "$data" -m immediate -w stop >/dev/null 2>&1; fi
            rm -rf "$root"
        "#;
        let stop = self.server_tool("pg_ctl");
        Command::new("sh")
            .args(["-c", SCRIPT, "khoa-pgtest-reaper"])
            .arg(self.data())
            .arg(&self.root)
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("khoa-pgtest: cannot start the reaper (sh)")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate: nothing in a throwaway cluster is worth a shutdown checkpoint. It fails
        // harmlessly when the server is not running (stopped, or never started).
        let _ = self
            .pg_ctl()
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(mut reaper) = self.reaper.take() {
            // Its cue; it finds nothing left to do.
            drop(reaper.stdin.take());
            let _ = reaper.wait();
        }
    }
}

/// The directory of the server to use: that of the first `initdb` on `PATH`, else of the highest
/// version under `/usr/lib/postgresql` (Debian keeps it off `PATH`). Symlinks are followed, so
/// that `pg_ctl` and `postgres` are looked for beside the real `initdb`.
fn find_server_bin() -> Option<PathBuf> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let candidates = path_dirs
        .into_iter()
        .chain(versioned_bin_dirs(Path::new("/usr/lib/postgresql")));
    for dir in candidates {
        let Ok(initdb) = std::fs::canonicalize(dir.join("initdb")) else {
            continue;
        };
        let Some(bin) = initdb.parent() else {
            continue;
        };
        if ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|tool| is_executable(&bin.join(tool)))
        {
            return Some(bin.to_path_buf());
        }
    }
    None
}

/// `<root>/<version>/bin` (Debian: `/usr/lib/postgresql/<version>/bin`), newest version first.
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = parse_version(&e.file_name().to_string_lossy())?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// `"16"` → `[16]`, `"9.6"` → `[9, 6]`; anything else is not a version directory.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_root() -> bool {
    run_id(&["-u"]).is_some_and(|uid| uid == 0)
}

/// The server user and the command that runs a program as it: `runuser` (util-linux, made for
/// root), else `setpriv` with its numeric ids.
fn unprivileged() -> Unprivileged {
    let (Some(uid), Some(gid)) = (run_id(&["-u", SERVER_USER]), run_id(&["-g", SERVER_USER]))
    else {
        panic!(
            "khoa-pgtest: running as root, and PostgreSQL refuses to; there is no `{SERVER_USER}` \
             user to run it as. Install the server package (Debian: `apt-get install \
             postgresql`), which creates it, or run the tests as another user."
        );
    };
    let prefix: Vec<OsString> = if let Some(runuser) = find_tool("runuser") {
        vec![runuser.into(), "-u".into(), SERVER_USER.into(), "--".into()]
    } else if let Some(setpriv) = find_tool("setpriv") {
        vec![
            setpriv.into(),
            format!("--reuid={uid}").into(),
            format!("--regid={gid}").into(),
            "--clear-groups".into(),
            "--".into(),
        ]
    } else {
        panic!(
            "khoa-pgtest: running as root, and neither runuser nor setpriv (util-linux) is there \
             to run PostgreSQL as `{SERVER_USER}`"
        );
    };
    Unprivileged { uid, gid, prefix }
}

/// A numeric id printed by `id ARGS`.
fn run_id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `name` on `PATH` or in the sbin directories, which a non-login root shell may lack.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// A port that was free a moment ago. The server binds it shortly after; should another
/// process win it meanwhile, the start fails and is retried on another.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("khoa-pgtest: cannot probe for a free port")
        .port()
}

fn expect_success(what: &str, out: std::io::Result<Output>) {
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "khoa-pgtest: {what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("khoa-pgtest: cannot run {what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn accepts_connections(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    #[test]
    fn version_directories_are_tried_newest_first() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["9.6", "16", "15", "common"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        let found = versioned_bin_dirs(root.path());
        let expected: Vec<_> = ["16", "15", "9.6"]
            .iter()
            .map(|v| root.path().join(v).join("bin"))
            .collect();
        assert_eq!(found, expected, "numeric order, non-versions skipped");
    }

    #[test]
    fn a_cluster_starts_stops_starts_again_and_cleans_up_after_itself() {
        let cluster = PgCluster::start();
        let (port, root) = (cluster.port(), cluster.root.clone());
        assert_eq!(
            cluster.url(),
            format!("postgres://postgres@127.0.0.1:{port}/postgres")
        );
        assert!(accepts_connections(port));
        assert_eq!(
            cluster.create_database("scratch"),
            format!("postgres://postgres@127.0.0.1:{port}/scratch")
        );

        cluster.stop();
        assert!(!accepts_connections(port), "stopped");
        cluster.start_again();
        assert!(accepts_connections(port), "the same port again");

        drop(cluster);
        assert!(!accepts_connections(port), "dropping stops the server");
        assert!(!root.exists(), "and removes its directory");
    }
}
