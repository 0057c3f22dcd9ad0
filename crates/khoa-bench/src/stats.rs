//! What a run measured: every latency of the measured window (microseconds, exact
//! percentiles by sorting — a run of minutes holds a few million `u32`s, far less memory than
//! the server under test), counts by status, and the report printed as a table or JSON.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::cli::{Load, Settings};

/// What one request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer; `ok` when the scenario counts it a success.
    Answered { status: u16, ok: bool },
    /// No HTTP answer: connection refused or reset, malformed response, or a timeout.
    Transport,
}

impl Outcome {
    pub fn is_ok(self) -> bool {
        matches!(self, Outcome::Answered { ok: true, .. })
    }
}

/// One virtual client's tally; merged into the run's at the end.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Latency of each answered request of the measured window, in µs; and of the successful
    /// ones alone (when the server sheds, the quick refusals would hide the accepted requests'
    /// wait).
    latencies_us: Vec<u32>,
    ok_latencies_us: Vec<u32>,
    status: BTreeMap<u16, u64>,
    transport_errors: u64,
    /// Requests of the window that succeeded, and those that did not (any status but the
    /// scenario's success, and transport errors).
    ok: u64,
    errors: u64,
    /// Every request sent, warm-up and window alike, and how many succeeded.
    total: u64,
    total_ok: u64,
    /// Why virtual clients stopped before the end, if any did.
    stopped: Vec<String>,
}

impl Recorder {
    /// Counts a finished request; `measured` when it finished inside the measured window.
    pub fn record(&mut self, outcome: Outcome, latency: Duration, measured: bool) {
        self.total += 1;
        self.total_ok += u64::from(outcome.is_ok());
        if !measured {
            return;
        }
        match outcome {
            Outcome::Answered { status, ok } => {
                let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
                self.latencies_us.push(us);
                if ok {
                    self.ok_latencies_us.push(us);
                }
                *self.status.entry(status).or_default() += 1;
                self.ok += u64::from(ok);
                self.errors += u64::from(!ok);
            }
            Outcome::Transport => {
                self.transport_errors += 1;
                self.errors += 1;
            }
        }
    }

    pub fn stopped(&mut self, why: String) {
        self.stopped.push(why);
    }

    pub fn merge(&mut self, other: Recorder) {
        self.latencies_us.extend(other.latencies_us);
        self.ok_latencies_us.extend(other.ok_latencies_us);
        for (s, n) in other.status {
            *self.status.entry(s).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.ok += other.ok;
        self.errors += other.errors;
        self.total += other.total;
        self.total_ok += other.total_ok;
        self.stopped.extend(other.stopped);
    }
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: u32,
    pub p90: u32,
    pub p99: u32,
    pub max: u32,
}

impl Percentiles {
    /// Sorts `latencies` in place.
    pub fn of(latencies: &mut [u32]) -> Self {
        latencies.sort_unstable();
        Percentiles {
            p50: percentile(latencies, 50.0),
            p90: percentile(latencies, 90.0),
            p99: percentile(latencies, 99.0),
            max: latencies.last().copied().unwrap_or(0),
        }
    }
}

impl Percentiles {
    fn to_json(self) -> Value {
        json!({ "p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max })
    }

    fn to_text(self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  max {}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Nearest-rank percentile of an ascending slice: the smallest value with at least `p` % of
/// the values at or below it. 0 for an empty slice.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The result of a load run.
#[derive(Debug)]
pub struct Report {
    pub scenario: &'static str,
    pub target: String,
    pub concurrency: usize,
    pub load: Load,
    pub warmup: Duration,
    /// The measured window as it really was (shorter when --max-requests ended the run).
    pub window: Duration,
    pub requests: u64,
    /// Requests of the window the scenario counts a success.
    pub ok: u64,
    pub latency: Percentiles,
    pub ok_latency: Percentiles,
    pub status: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub errors: u64,
    pub total: u64,
    pub total_ok: u64,
    pub stopped: Vec<String>,
}

impl Report {
    pub fn new(settings: &Settings, window: Duration, mut r: Recorder) -> Self {
        let latency = Percentiles::of(&mut r.latencies_us);
        let ok_latency = Percentiles::of(&mut r.ok_latencies_us);
        Report {
            scenario: settings.scenario.name(),
            target: settings.target.url.clone(),
            concurrency: settings.concurrency,
            load: settings.load,
            warmup: settings.warmup,
            window,
            requests: r.latencies_us.len() as u64 + r.transport_errors,
            ok: r.ok,
            latency,
            ok_latency,
            status: r.status,
            transport_errors: r.transport_errors,
            errors: r.errors,
            total: r.total,
            total_ok: r.total_ok,
            stopped: r.stopped,
        }
    }

    pub fn rps(&self) -> f64 {
        self.per_second(self.requests)
    }

    /// Successful requests per second: below `rps` when the server refuses or sheds.
    pub fn ok_rps(&self) -> f64 {
        self.per_second(self.ok)
    }

    fn per_second(&self, n: u64) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 { n as f64 / secs } else { 0.0 }
    }

    pub fn to_json(&self) -> Value {
        let status: serde_json::Map<String, Value> = self
            .status
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        json!({
            "scenario": self.scenario,
            "target": self.target,
            "concurrency": self.concurrency,
            "rate": match self.load { Load::Closed => Value::Null, Load::Rate(r) => json!(r) },
            "duration_s": round3(self.window.as_secs_f64()),
            "warmup_s": round3(self.warmup.as_secs_f64()),
            "requests": self.requests,
            "rps": round3(self.rps()),
            "ok": self.ok,
            "ok_rps": round3(self.ok_rps()),
            "latency_us": self.latency.to_json(),
            "latency_ok_us": self.ok_latency.to_json(),
            "status": status,
            "transport_errors": self.transport_errors,
            "errors": self.errors,
            "total": { "requests": self.total, "ok": self.total_ok },
            "stopped_clients": self.stopped.len(),
        })
    }

    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let load = match self.load {
            Load::Closed => format!("closed loop, {} connections", self.concurrency),
            Load::Rate(r) => format!("fixed rate {r}/s over {} connections", self.concurrency),
        };
        let status = if self.status.is_empty() {
            "-".to_owned()
        } else {
            self.status
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(s, "scenario   {}", self.scenario);
        let _ = writeln!(s, "target     {}", self.target);
        let _ = writeln!(s, "load       {load}");
        let _ = writeln!(
            s,
            "window     {:.2} s after {:.2} s warm-up",
            self.window.as_secs_f64(),
            self.warmup.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "requests   {} ({:.1}/s), {} ok ({:.1}/s)",
            self.requests,
            self.rps(),
            self.ok,
            self.ok_rps()
        );
        let _ = writeln!(s, "latency    {}", self.latency.to_text());
        if self.ok > 0 && self.ok != self.requests {
            let _ = writeln!(s, "  of ok    {}", self.ok_latency.to_text());
        }
        let _ = writeln!(s, "status     {status}");
        let _ = writeln!(
            s,
            "errors     {} (transport {})",
            self.errors, self.transport_errors
        );
        if !self.stopped.is_empty() {
            let _ = writeln!(
                s,
                "stopped    {} virtual clients: {}",
                self.stopped.len(),
                self.stopped[0]
            );
        }
        s
    }
}

fn ms(us: u32) -> String {
    format!("{:.3} ms", f64::from(us) / 1000.0)
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 90.0), 90);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
    }

    #[test]
    fn percentiles_of_few_samples_are_samples() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 99.0), 7);
        // Two samples: the median is the lower, p90 and p99 the upper.
        assert_eq!(percentile(&[3, 9], 50.0), 3);
        assert_eq!(percentile(&[3, 9], 90.0), 9);
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1000];
        assert_eq!(percentile(&v, 90.0), 9);
        assert_eq!(percentile(&v, 99.0), 1000);
    }

    #[test]
    fn percentiles_sort_their_input() {
        let mut v = vec![5, 1, 4, 2, 3];
        let p = Percentiles::of(&mut v);
        assert_eq!(
            p,
            Percentiles {
                p50: 3,
                p90: 5,
                p99: 5,
                max: 5
            }
        );
    }

    #[test]
    fn only_the_window_is_measured_but_everything_is_counted() {
        let mut r = Recorder::default();
        let ok = Outcome::Answered {
            status: 200,
            ok: true,
        };
        let refused = Outcome::Answered {
            status: 400,
            ok: false,
        };
        r.record(ok, Duration::from_micros(10), false);
        r.record(ok, Duration::from_micros(20), true);
        r.record(refused, Duration::from_micros(30), true);
        r.record(Outcome::Transport, Duration::ZERO, true);
        let mut other = Recorder::default();
        other.record(ok, Duration::from_micros(40), true);
        r.merge(other);
        assert_eq!(r.latencies_us.len(), 3);
        assert_eq!(r.ok_latencies_us, [20, 40]);
        assert_eq!(r.status.get(&200), Some(&2));
        assert_eq!(r.status.get(&400), Some(&1));
        assert_eq!((r.ok, r.errors, r.transport_errors), (2, 2, 1));
        assert_eq!((r.total, r.total_ok), (5, 3));
    }
}
