//! The command line and its validation: what to load, how hard, for how long, and where. The
//! generator only ever targets the address it is given, and that address must be loopback
//! unless `--allow-remote` says otherwise — a load generator pointed at someone else's server
//! by a typo is an attack.

use clap::{Parser, ValueEnum};
use hyper::Uri;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "khoa-bench",
    version,
    about = "Load generator for khoa: keep-alive HTTP/1.1 clients, one scenario per token endpoint"
)]
pub struct Args {
    /// Base URL of the server under test (http only; loopback unless --allow-remote).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// What each request does.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Virtual clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Fixed arrival rate in requests/s, spread over the virtual clients; latency then counts
    /// from each request's scheduled start. Default: closed loop, each client sends its next
    /// request when the previous one is answered.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Upper bound on requests sent in total, warm-up included.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// The demo's `DATA_DIR/demo.json` (default: the demo's fixed credentials).
    #[arg(long)]
    pub demo_json: Option<PathBuf>,
}

/// The scenarios, named on the command line exactly as here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `GET /healthz`: the plain-HTTP reference.
    #[value(name = "healthz")]
    Healthz,
    /// `client_credentials` as `demo-service` (JWT access token).
    #[value(name = "client-credentials-jwt")]
    ClientCredentialsJwt,
    /// `client_credentials` as `bench-opaque` (opaque access token; registered by `bench/run.sh`).
    #[value(name = "client-credentials-opaque")]
    ClientCredentialsOpaque,
    /// Seed 004's password request (one Argon2id verification each).
    #[value(name = "password")]
    Password,
    /// Each virtual client redeems its own latest refresh token and keeps the successor.
    #[value(name = "refresh")]
    Refresh,
    /// `GET /api/protected-resource` with a client-credentials JWT.
    #[value(name = "protected-resource-jwt")]
    ProtectedResourceJwt,
    /// `GET /api/protected-resource` with seed 004's opaque access token.
    #[value(name = "protected-resource-opaque")]
    ProtectedResourceOpaque,
    /// RFC 7662 introspection of a client-credentials JWT by the confidential demo client.
    #[value(name = "introspect")]
    Introspect,
    /// Seed 000's derivative login.
    #[value(name = "derivative")]
    Derivative,
    /// Seed 001's bank-hub token.
    #[value(name = "bankhub")]
    Bankhub,
    /// Seed 002's encrypted login.
    #[value(name = "partner-login")]
    PartnerLogin,
    /// Seed 002's encrypted refresh, one rotation chain per virtual client.
    #[value(name = "partner-refresh")]
    PartnerRefresh,
    /// Seed 003's `token_generate`.
    #[value(name = "vietqr")]
    Vietqr,
    /// In-process: Argon2id hashes per second on one core at the OWASP parameters.
    #[value(name = "argon2-bound")]
    Argon2Bound,
    /// In-process: Ed25519 signatures per second on one core (the JWT signing bound).
    #[value(name = "sign-bound")]
    SignBound,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Healthz => "healthz",
            Scenario::ClientCredentialsJwt => "client-credentials-jwt",
            Scenario::ClientCredentialsOpaque => "client-credentials-opaque",
            Scenario::Password => "password",
            Scenario::Refresh => "refresh",
            Scenario::ProtectedResourceJwt => "protected-resource-jwt",
            Scenario::ProtectedResourceOpaque => "protected-resource-opaque",
            Scenario::Introspect => "introspect",
            Scenario::Derivative => "derivative",
            Scenario::Bankhub => "bankhub",
            Scenario::PartnerLogin => "partner-login",
            Scenario::PartnerRefresh => "partner-refresh",
            Scenario::Vietqr => "vietqr",
            Scenario::Argon2Bound => "argon2-bound",
            Scenario::SignBound => "sign-bound",
        }
    }

    /// Measured in this process, without a server.
    pub fn is_in_process(self) -> bool {
        matches!(self, Scenario::Argon2Bound | Scenario::SignBound)
    }
}

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Each virtual client sends its next request as soon as the previous one is answered.
    Closed,
    /// Request `i` is due at `start + i / rate`, whichever virtual client is free takes it.
    Rate(f64),
}

/// The server under test, as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// The `Host` header every request carries (`host[:port]` as written in the URL).
    pub authority: String,
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scenario: Scenario,
    pub target: Target,
    pub allow_remote: bool,
    pub concurrency: usize,
    pub load: Load,
    pub duration: Duration,
    pub warmup: Duration,
    pub max_requests: u64,
    pub json: bool,
    pub demo_json: Option<PathBuf>,
}

const MAX_CONCURRENCY: usize = 10_000;
const MAX_RATE: f64 = 10_000_000.0;
const MAX_DURATION_SECS: f64 = 3600.0;
const MAX_WARMUP_SECS: f64 = 600.0;

impl Args {
    /// Checks every argument; the error names the offending flag.
    pub fn validate(self) -> Result<Settings, String> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(format!(
                "--concurrency must be between 1 and {MAX_CONCURRENCY}, not {}",
                self.concurrency
            ));
        }
        let load = match self.rate {
            None => Load::Closed,
            Some(r) if r.is_finite() && r > 0.0 && r <= MAX_RATE => Load::Rate(r),
            Some(r) => {
                return Err(format!(
                    "--rate must be a number of requests/s above 0 and at most {MAX_RATE}, not {r}"
                ));
            }
        };
        let duration = seconds("--duration", self.duration, MAX_DURATION_SECS)?;
        if duration.is_zero() {
            return Err("--duration must be above 0".into());
        }
        let warmup = seconds("--warmup", self.warmup, MAX_WARMUP_SECS)?;
        let max_requests = match self.max_requests {
            Some(0) => return Err("--max-requests must be at least 1".into()),
            Some(n) => n,
            None => u64::MAX,
        };
        let target = parse_target(&self.target, self.allow_remote)?;
        Ok(Settings {
            scenario: self.scenario,
            target,
            allow_remote: self.allow_remote,
            concurrency: self.concurrency,
            load,
            duration,
            warmup,
            max_requests,
            json: self.json,
            demo_json: self.demo_json,
        })
    }
}

fn seconds(flag: &str, secs: f64, max: f64) -> Result<Duration, String> {
    if !secs.is_finite() || !(0.0..=max).contains(&secs) {
        return Err(format!(
            "{flag} must be between 0 and {max} seconds, not {secs}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a base URL (`http://host[:port]`, no path) and applies the loopback rule.
pub fn parse_target(url: &str, allow_remote: bool) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("--target {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "--target must be an http:// URL (khoa-bench speaks plain HTTP/1.1), not {other}://"
            ));
        }
        None => return Err(format!("--target {url:?} needs a scheme: http://HOST:PORT")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--target {url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err("--target must not carry user information".into());
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "--target is the server's base URL, without a path: not {url:?}"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if !allow_remote && !is_loopback_host(&host) {
        return Err(format!(
            "--target {host} is not a loopback address (127.0.0.0/8, ::1, localhost); \
             pass --allow-remote to load another host"
        ));
    }
    Ok(Target {
        url: url.trim_end_matches('/').to_owned(),
        host,
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_owned(),
    })
}

/// 127.0.0.0/8, ::1 or the name `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Resolves the target once. Without `--allow-remote` every address the name resolves to must
/// be loopback too, so a doctored `localhost` entry cannot send the load elsewhere.
pub fn resolve(target: &Target, allow_remote: bool) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .collect();
    if !allow_remote && let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "{} resolves to {a}, which is not loopback; pass --allow-remote to use it",
            target.host
        ));
    }
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| format!("{} resolves to no address", target.host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["khoa-bench", "--scenario", "healthz"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LocalHost"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "example.com",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn a_remote_target_is_refused_without_allow_remote() {
        let err = parse_target("http://10.1.2.3:8080", false).unwrap_err();
        assert!(err.contains("--allow-remote"), "{err}");
        let t = parse_target("http://10.1.2.3:8080", true).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.1.2.3", 8080));
    }

    #[test]
    fn loopback_targets_parse_with_their_host_header() {
        let t = parse_target("http://[::1]:9000/", false).unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 9000);
        assert_eq!(t.authority, "[::1]:9000");
        assert_eq!(t.url, "http://[::1]:9000");
        let t = parse_target("http://localhost", false).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 80));
    }

    #[test]
    fn targets_other_than_a_plain_http_base_url_are_refused() {
        for url in [
            "https://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/connect/token",
            "http://user:pw@127.0.0.1:8080",
            "not a url",
        ] {
            assert!(parse_target(url, false).is_err(), "{url}");
        }
    }

    #[test]
    fn localhost_resolves_to_loopback_only() {
        let t = parse_target("http://127.0.0.1:1", false).unwrap();
        assert!(resolve(&t, false).unwrap().ip().is_loopback());
    }

    #[test]
    fn defaults_are_a_closed_loop_of_32_for_10_seconds() {
        let s = args(&[]).unwrap();
        assert_eq!(s.concurrency, 32);
        assert_eq!(s.load, Load::Closed);
        assert_eq!(s.duration, Duration::from_secs(10));
        assert_eq!(s.warmup, Duration::from_secs(2));
        assert_eq!(s.max_requests, u64::MAX);
        assert_eq!(s.target.port, 8080);
    }

    #[test]
    fn out_of_range_arguments_are_refused_by_name() {
        for (extra, flag) in [
            (&["--concurrency", "0"][..], "--concurrency"),
            (&["--concurrency", "100000"][..], "--concurrency"),
            (&["--rate", "0"][..], "--rate"),
            (&["--rate=-5"][..], "--rate"),
            (&["--rate", "NaN"][..], "--rate"),
            (&["--duration", "0"][..], "--duration"),
            (&["--duration=-1"][..], "--duration"),
            (&["--duration", "inf"][..], "--duration"),
            (&["--warmup=-1"][..], "--warmup"),
            (&["--max-requests", "0"][..], "--max-requests"),
            (&["--target", "http://192.0.2.1"][..], "--allow-remote"),
        ] {
            let err = args(extra).unwrap_err();
            assert!(err.contains(flag), "{extra:?}: {err}");
        }
    }

    #[test]
    fn rate_and_bounds_are_taken_as_given() {
        let s = args(&[
            "--rate",
            "2500",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--max-requests",
            "100",
        ])
        .unwrap();
        assert_eq!(s.load, Load::Rate(2500.0));
        assert_eq!(s.duration, Duration::from_millis(500));
        assert!(s.warmup.is_zero());
        assert_eq!(s.max_requests, 100);
    }

    #[test]
    fn scenario_names_are_the_documented_ones() {
        for s in Scenario::value_variants() {
            let parsed = Scenario::from_str(s.name(), false).unwrap();
            assert_eq!(parsed, *s);
        }
        assert!(Scenario::from_str("client-credentials", false).is_err());
    }
}
