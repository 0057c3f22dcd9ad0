//! Driving the real `khoa` binary: a clean environment, a cheap Argon2, a database in a test
//! directory, standard input fed or closed, and the output captured.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

pub const KHOA: &str = env!("CARGO_BIN_EXE_khoa");
/// How long one `khoa` verb (or a `khoa demo` announcing its address) may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// `khoa` with nothing inherited that changes its behaviour or its output: no `KHOA_*`
/// variable, no log filter, no backtraces in error messages.
pub fn khoa() -> Command {
    let mut cmd = Command::new(KHOA);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KHOA_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .kill_on_drop(true);
    cmd
}

/// `khoa` on `dir/khoa.db` (the file [`crate::helpers::spawn_app_in`] serves; the master key
/// defaults to `dir/master.key` on both sides), with a cheap Argon2 set explicitly.
pub fn khoa_on(dir: &Path) -> Command {
    let mut cmd = khoa();
    cmd.env(
        "KHOA_DATABASE_URL",
        format!("sqlite://{}", dir.join("khoa.db").display()),
    )
    .env("KHOA_PASSWORD_HASH__MEMORY_KIB", "64")
    .env("KHOA_PASSWORD_HASH__ITERATIONS", "1")
    .env("KHOA_PASSWORD_HASH__PARALLELISM", "1");
    cmd
}

pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd args` to completion with `stdin` on its standard input (closed at once if
/// `None`).
pub async fn run(mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the khoa binary starts");
    let mut pipe = child.stdin.take().expect("piped stdin");
    if let Some(input) = stdin {
        // A verb that fails before reading closes the pipe; its exit code tells the story.
        let _ = pipe.write_all(input.as_bytes()).await;
    }
    drop(pipe);
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .expect("khoa finishes in time")
        .expect("khoa's output is readable");
    Run {
        status: out.status,
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

/// A fresh temporary directory with a database made by `khoa migrate`, as an operator starts:
/// the admin verbs refuse a database that does not exist.
pub async fn migrated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    ok(dir.path(), &["migrate"], None).await;
    dir
}

/// `khoa args` on `dir`; panics unless it exits 0. Returns its standard output.
pub async fn ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(khoa_on(dir), args, stdin).await;
    // Only stderr in the message: stdout may hold a secret printed once.
    assert!(
        out.status.success(),
        "khoa {args:?} failed ({}): {}",
        out.status,
        out.stderr
    );
    out.stdout
}

/// `khoa args` on `dir`; panics unless it exits non-zero without printing anything on stdout.
/// Returns its standard error.
pub async fn fails(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(khoa_on(dir), args, stdin).await;
    assert!(
        !out.status.success(),
        "khoa {args:?} must fail; stderr: {}",
        out.stderr
    );
    assert_eq!(out.status.code(), Some(1), "an error exit, not a crash");
    assert!(out.stdout.is_empty(), "khoa {args:?} printed on stdout");
    out.stderr
}

/// The value of the one `key: value` line of `output`, e.g. `client_secret`.
pub fn field(output: &str, key: &str) -> String {
    let values: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .collect();
    assert_eq!(values.len(), 1, "expected exactly one `{key}:` line");
    values[0].trim().to_owned()
}

/// A free port on the loopback interface: bound and released, for a process that takes its
/// address from the environment and cannot report the one it got.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// Reads the standard error of a long-running `khoa` (spawned with it piped) in the
/// background, to explain a failure and to check what its log never contains.
pub fn collect_stderr(child: &mut Child) -> JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("piped stderr");
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    })
}

/// A long-running `khoa` (spawned with stdout and stderr piped) once it has announced its
/// address: `base`, the URL after `announcement`; `log`, its whole standard error; `stdout`,
/// everything it printed, announcement included (both complete once it exits).
pub struct Announced {
    pub base: String,
    pub log: JoinHandle<String>,
    pub stdout: JoinHandle<String>,
}

/// Waits (at most [`TIMEOUT`]) for `child` to print `announcement` followed by its URL;
/// panics with its standard error if it does not.
pub async fn announced(child: &mut Child, announcement: &str) -> Announced {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let log = collect_stderr(child);
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut printed = String::new();
    let found = tokio::time::timeout(TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(url) = line.strip_prefix(announcement) {
                return Some(url.trim().to_owned());
            }
        }
        None
    })
    .await;
    let Ok(Some(base)) = found else {
        let _ = child.kill().await;
        panic!(
            "no `{announcement}…` from khoa:\n{}",
            log.await.unwrap_or_default()
        );
    };
    let stdout = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            printed.push_str(&line);
            printed.push('\n');
        }
        printed
    });
    Announced { base, log, stdout }
}
