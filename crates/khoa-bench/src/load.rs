//! The load loop. Every virtual client owns one connection and one [`Session`]; all share a
//! [`Schedule`]: the warm-up and measured window, the bound on requests, and — at a fixed
//! arrival rate — the due time of request `i`, `start + i / rate`.
//!
//! At a fixed rate, latency counts from the due time, not from when a client got round to
//! sending: when every connection is busy, the wait is part of what a caller would see
//! (otherwise the generator would quietly slow down with the server and hide its queue). A
//! closed loop never waits.

use anyhow::{Context, Result};
use hyper::header::HeaderValue;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::{Load, Settings};
use crate::creds::Credentials;
use crate::http::{Conn, TransportError};
use crate::scenario::{self, Session};
use crate::stats::{Outcome, Recorder, Report};

/// The pause after a failed connection attempt.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// How long after the window's end a request still in flight may take before it is abandoned.
const GRACE: Duration = Duration::from_secs(5);

struct Schedule {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    load: Load,
    max_requests: u64,
    /// Requests claimed so far; at a fixed rate also the index of the next due time.
    issued: AtomicU64,
}

impl Schedule {
    /// Claims the next request: `None` when the run is over, else when it is due.
    fn claim(&self) -> Option<Instant> {
        let now = Instant::now();
        if now >= self.end {
            return None;
        }
        let i = self.issued.fetch_add(1, Ordering::Relaxed);
        if i >= self.max_requests {
            return None;
        }
        match self.load {
            Load::Closed => Some(now),
            Load::Rate(r) => {
                let due = self.start + Duration::from_secs_f64(i as f64 / r);
                (due < self.end).then_some(due)
            }
        }
    }

    fn in_window(&self, t: Instant) -> bool {
        t >= self.measure_from && t <= self.end
    }
}

/// Live counters for the progress line.
#[derive(Default)]
struct Live {
    done: AtomicU64,
    errors: AtomicU64,
    finished: AtomicBool,
}

pub async fn run(settings: &Settings, creds: &Credentials, addr: SocketAddr) -> Result<Report> {
    let host = HeaderValue::from_str(&settings.target.authority)
        .context("the target's host is not a valid Host header")?;
    let mut setup_conn = Conn::new(addr, host.clone());
    setup_conn
        .connect()
        .await
        .with_context(|| format!("cannot reach {}", settings.target.url))?;
    let plan = Arc::new(scenario::prepare(settings.scenario, creds, &mut setup_conn).await?);
    drop(setup_conn);

    // Every client connects (and a chain logs in) before the clock starts.
    let mut setup = JoinSet::new();
    for _ in 0..settings.concurrency {
        let (plan, host) = (plan.clone(), host.clone());
        setup.spawn(async move {
            let mut conn = Conn::new(addr, host);
            conn.connect().await?;
            let session = Session::start(plan, &mut conn).await?;
            anyhow::Ok((conn, session))
        });
    }
    let mut clients = Vec::with_capacity(settings.concurrency);
    while let Some(joined) = setup.join_next().await {
        clients.push(joined.context("a virtual client panicked")??);
    }

    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let schedule = Arc::new(Schedule {
        start,
        measure_from,
        end: measure_from + settings.duration,
        load: settings.load,
        max_requests: settings.max_requests,
        issued: AtomicU64::new(0),
    });
    let live = Arc::new(Live::default());
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(progress(schedule.clone(), live.clone())));

    let mut running = JoinSet::new();
    for (conn, session) in clients {
        running.spawn(client(conn, session, schedule.clone(), live.clone()));
    }
    let mut total = Recorder::default();
    while let Some(joined) = running.join_next().await {
        total.merge(joined.context("a virtual client panicked")?);
    }
    let finished = Instant::now().min(schedule.end);
    live.finished.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let window = finished.saturating_duration_since(measure_from);
    Ok(Report::new(settings, window, total))
}

/// One virtual client: claim, send, judge, record — until the schedule says stop.
async fn client(
    mut conn: Conn,
    mut session: Session,
    schedule: Arc<Schedule>,
    live: Arc<Live>,
) -> Recorder {
    let mut rec = Recorder::default();
    let deadline = schedule.end + GRACE;
    while let Some(due) = schedule.claim() {
        wait_until(due).await;
        let result = conn.send(session.request(), deadline).await;
        let done = Instant::now();
        let outcome = match &result {
            Ok(answer) => Outcome::Answered {
                status: answer.status.as_u16(),
                ok: session.accept(answer),
            },
            Err(e) => {
                // A server that went away is not hammered with connection attempts.
                if matches!(e, TransportError::Connect(_)) {
                    tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
                }
                Outcome::Transport
            }
        };
        rec.record(outcome, done - due, schedule.in_window(done));
        live.done.fetch_add(1, Ordering::Relaxed);
        if outcome.is_ok() {
            continue;
        }
        live.errors.fetch_add(1, Ordering::Relaxed);
        // A broken rotation chain starts over with a fresh login (not itself measured).
        if session.is_chain()
            && let Err(e) = session.log_in(&mut conn, deadline).await
        {
            rec.stopped(format!("{e:#}"));
            break;
        }
    }
    rec
}

/// Waits for a fixed-rate request's due time. tokio's timer rounds up to the next millisecond,
/// and the runtime's sleep overshoots by a little more, which would add up to a millisecond or
/// two to every latency counted from the due time: it is used only to within two milliseconds,
/// and the rest is spent yielding to the other clients.
async fn wait_until(due: Instant) {
    let coarse = due.checked_sub(Duration::from_millis(2)).unwrap_or(due);
    if coarse > Instant::now() {
        tokio::time::sleep_until(coarse).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// A one-line progress report on stderr, rewritten every second.
async fn progress(schedule: Arc<Schedule>, live: Arc<Live>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    let mut err = std::io::stderr();
    while !live.finished.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = Instant::now();
        let done = live.done.load(Ordering::Relaxed);
        let phase = if now < schedule.measure_from {
            "warm-up  "
        } else {
            "measuring"
        };
        let _ = write!(
            err,
            "\r\x1b[K{phase} {:6.1} s  {done} requests  {}/s  {} errors",
            (now - schedule.start).as_secs_f64(),
            done - last,
            live.errors.load(Ordering::Relaxed)
        );
        let _ = err.flush();
        last = done;
    }
    let _ = write!(err, "\r\x1b[K");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(load: Load, max_requests: u64) -> Schedule {
        let start = Instant::now();
        Schedule {
            start,
            measure_from: start,
            end: start + Duration::from_secs(60),
            load,
            max_requests,
            issued: AtomicU64::new(0),
        }
    }

    #[test]
    fn claims_stop_at_the_request_bound() {
        let s = schedule(Load::Closed, 3);
        assert_eq!((0..5).filter_map(|_| s.claim()).count(), 3);
    }

    #[test]
    fn a_fixed_rate_spaces_due_times_evenly() {
        let s = schedule(Load::Rate(100.0), u64::MAX);
        let due: Vec<Instant> = (0..3).map(|_| s.claim().unwrap()).collect();
        assert_eq!(due[0], s.start);
        assert_eq!(due[2] - due[1], Duration::from_millis(10));
    }

    #[test]
    fn nothing_is_due_after_the_end() {
        // At 1/s over 60 s, request 60 would be due exactly at the end.
        let s = schedule(Load::Rate(1.0), u64::MAX);
        assert_eq!((0..100).filter_map(|_| s.claim()).count(), 60);
    }
}
