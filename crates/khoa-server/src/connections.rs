//! The connections the accept loop serves: how many each client address holds, capped by
//! `http.max_connections_per_ip`, and which of them are idle, so that when every slot of
//! `http.max_connections` is taken the connection idle longest can be closed for a newcomer.
//!
//! Without the two, one client could take every slot with sockets it never uses: 1,100 idle
//! sockets from one address pushed other clients' `/healthz` to 9 s, 2,100 to connect
//! timeouts. An idle keep-alive connection may be closed at any time (RFC 9112 §9.3); a client
//! opens a new one, or retries an idempotent request the close cut short (RFC 9110 §9.2.2).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::Notify;

/// Every connection being served. One lock, taken per connection (admit, close) and when the
/// slots run out, never per request: a request only touches its connection's `Activity`.
pub struct Connections {
    per_ip_cap: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
    /// Set while the accept loop waits for a slot with nothing idle to close: a connection that
    /// turns idle then wakes it through `turned_idle`.
    starved: AtomicBool,
    turned_idle: Notify,
}

#[derive(Default)]
struct Inner {
    per_ip: HashMap<IpAddr, usize>,
    open: HashMap<u64, Arc<Activity>>,
    next_id: u64,
}

/// What one connection is doing, shared by its task and the registry.
struct Activity {
    /// Requests being answered: from the handler's call to its response.
    in_flight: AtomicUsize,
    /// When it last turned idle, in microseconds since `Connections::epoch`.
    idle_since: AtomicU64,
    /// Asked to close already: not to be chosen twice.
    closing: AtomicBool,
    close: Notify,
}

impl Connections {
    pub fn new(per_ip_cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            per_ip_cap,
            epoch: Instant::now(),
            inner: Mutex::default(),
            starved: AtomicBool::new(false),
            turned_idle: Notify::new(),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Registers a connection from `ip`, or `None` when that address holds its cap already.
    /// The registration ends when the returned [`Tracker`]'s last clone is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Tracker> {
        // An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d: one address, one count.
        let ip = ip.to_canonical();
        let mut inner = self.inner();
        let count = inner.per_ip.entry(ip).or_insert(0);
        if *count >= self.per_ip_cap {
            return None;
        }
        *count += 1;
        let id = inner.next_id;
        inner.next_id += 1;
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now_us()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        inner.open.insert(id, activity.clone());
        Some(Tracker(Arc::new(Registration {
            connections: self.clone(),
            id,
            ip,
            activity,
        })))
    }

    /// Asks the connection idle longest to close, other than `newcomer` (registered, not yet
    /// served: it has sent nothing because it has not been read); `false` when none is idle.
    pub fn close_longest_idle(&self, newcomer: &Tracker) -> bool {
        let inner = self.inner();
        let idle = inner
            .open
            .iter()
            .filter(|(_, a)| {
                !Arc::ptr_eq(a, &newcomer.0.activity)
                    && a.in_flight.load(Ordering::Acquire) == 0
                    && !a.closing.load(Ordering::Acquire)
            })
            // Of two idle since the same microsecond, the one admitted first.
            .min_by_key(|(id, a)| (a.idle_since.load(Ordering::Relaxed), **id));
        match idle {
            Some((_, a)) => {
                a.closing.store(true, Ordering::Release);
                // A stored permit if the connection is not waiting right now: never lost.
                a.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Whether the accept loop waits for a connection to turn idle.
    pub fn set_starved(&self, starved: bool) {
        self.starved.store(starved, Ordering::Release);
    }

    /// Resolves when a connection turned idle while [starved](Self::set_starved) (or did so
    /// since the last call).
    pub async fn turned_idle(&self) {
        self.turned_idle.notified().await;
    }

    /// Connections `ip` holds now.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.inner()
            .per_ip
            .get(&ip.to_canonical())
            .copied()
            .unwrap_or(0)
    }
}

struct Registration {
    connections: Arc<Connections>,
    id: u64,
    ip: IpAddr,
    activity: Arc<Activity>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.connections.inner();
        inner.open.remove(&self.id);
        if let Some(count) = inner.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                inner.per_ip.remove(&self.ip);
            }
        }
    }
}

/// One admitted connection: held by its task, and by each request in it.
#[derive(Clone)]
pub struct Tracker(Arc<Registration>);

impl Tracker {
    /// Marks a request in flight until the returned guard is dropped: a busy connection is
    /// never chosen by [`Connections::close_longest_idle`].
    pub fn busy(&self) -> Busy {
        self.0.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Resolves once the accept loop asks this connection to close.
    pub async fn close_requested(&self) {
        self.0.activity.close.notified().await;
    }
}

/// A request in flight on a connection; see [`Tracker::busy`].
pub struct Busy(Tracker);

impl Drop for Busy {
    fn drop(&mut self) {
        let reg = &self.0.0;
        reg.activity
            .idle_since
            .store(reg.connections.now_us(), Ordering::Relaxed);
        if reg.activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1
            && reg.connections.starved.load(Ordering::Acquire)
        {
            reg.connections.turned_idle.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    #[test]
    fn an_address_at_its_cap_is_refused_and_admitted_again_when_one_closes() {
        let c = Connections::new(2);
        let first = c.admit(A).unwrap();
        let _second = c.admit(A).unwrap();
        assert!(c.admit(A).is_none(), "a third from one address");
        // Another address is counted on its own, an IPv4-mapped one as its IPv4 self.
        let _other = c.admit(B).unwrap();
        assert!(c.admit("::ffff:127.0.0.2".parse().unwrap()).is_none());
        assert_eq!(c.count(A), 2);
        drop(first);
        assert_eq!(c.count(A), 1);
        assert!(c.admit(A).is_some());
    }

    #[tokio::test]
    async fn the_connection_idle_longest_is_asked_to_close_and_a_busy_one_never() {
        let c = Connections::new(8);
        let oldest = c.admit(A).unwrap();
        let busy = c.admit(A).unwrap();
        let newest = c.admit(B).unwrap();
        let newcomer = c.admit(B).unwrap();
        // `oldest` has been idle since admission; make `newest` idle later.
        let guard = busy.busy();
        oldest.0.activity.idle_since.store(1, Ordering::Relaxed);
        newest.0.activity.idle_since.store(5, Ordering::Relaxed);
        assert!(c.close_longest_idle(&newcomer));
        tokio::time::timeout(std::time::Duration::from_secs(1), oldest.close_requested())
            .await
            .expect("the longest idle is asked first");
        assert!(c.close_longest_idle(&newcomer));
        tokio::time::timeout(std::time::Duration::from_secs(1), newest.close_requested())
            .await
            .expect("then the next idle one");
        // Only the busy one and the newcomer are left, and neither is taken.
        assert!(!c.close_longest_idle(&newcomer));
        // Once its request ends, a starved accept loop hears of it, and may close it.
        c.set_starved(true);
        drop(guard);
        tokio::time::timeout(std::time::Duration::from_secs(1), c.turned_idle())
            .await
            .expect("turning idle wakes the starved loop");
        assert!(c.close_longest_idle(&newcomer));
    }
}
