//! Idle keep-alive connections to one backend, kept for the next request.
//!
//! Opening a backend connection per request costs a TCP handshake over the overlay and, at a
//! few hundred requests a second, fills the endpoint namespace with `TIME_WAIT` sockets (one
//! source address, one backend address and port: the ephemeral ports are the only thing that
//! varies), until every `connect` walks thousands of used ports. Reusing connections avoids
//! both. The pool only decides which connection to hand out and when one is too old; the
//! connections themselves are the caller's.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// Idle connections of one backend, newest last.
#[derive(Debug)]
pub struct IdlePool<T> {
    max_idle: usize,
    idle_timeout: Duration,
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    idle: Vec<(T, Instant)>,
    /// Once closed (the gateway stopped), nothing is kept any more.
    closed: bool,
}

impl<T> IdlePool<T> {
    /// A pool keeping at most `max_idle` connections, none idle for longer than
    /// `idle_timeout`.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            max_idle,
            idle_timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                closed: false,
            }),
        }
    }

    /// The most recently parked connection that is still fresh and `usable`; the stale and
    /// unusable ones met on the way are dropped. Newest first, so under light load a few
    /// connections stay busy and the rest age out.
    pub fn take(&self, now: Instant, usable: impl Fn(&T) -> bool) -> Option<T> {
        let mut dropped = Vec::new();
        let found = {
            let mut state = self.lock();
            let mut found = None;
            while let Some((item, since)) = state.idle.pop() {
                if now.saturating_duration_since(since) < self.idle_timeout && usable(&item) {
                    found = Some(item);
                    break;
                }
                dropped.push(item);
            }
            found
        };
        // Closing connections happens outside the lock.
        drop(dropped);
        found
    }

    /// Parks an idle connection. The oldest one makes room if the pool is full; in a closed
    /// pool the connection is dropped.
    pub fn put(&self, item: T, now: Instant) {
        let evicted = {
            let mut state = self.lock();
            if state.closed || self.max_idle == 0 {
                Some(item)
            } else {
                state.idle.push((item, now));
                (state.idle.len() > self.max_idle).then(|| state.idle.remove(0).0)
            }
        };
        drop(evicted);
    }

    /// Drops the connections idle for `idle_timeout` or longer; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let stale: Vec<(T, Instant)> = {
            let mut state = self.lock();
            let fresh_from = state
                .idle
                .iter()
                .position(|(_, since)| now.saturating_duration_since(*since) < self.idle_timeout)
                .unwrap_or(state.idle.len());
            state.idle.drain(..fresh_from).collect()
        };
        stale.len()
    }

    /// Drops every idle connection and keeps none from now on.
    pub fn close(&self) {
        let idle = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        drop(idle);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().idle.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(4);

    #[test]
    fn the_newest_fresh_usable_connection_is_taken() {
        let pool = IdlePool::new(8, TIMEOUT);
        let start = Instant::now();
        pool.put(1, start);
        pool.put(2, start + Duration::from_secs(1));
        pool.put(3, start + Duration::from_secs(2));
        let now = start + Duration::from_secs(3);
        assert_eq!(pool.take(now, |_| true), Some(3));
        // An unusable one (closed by the backend) is passed over and dropped.
        assert_eq!(pool.take(now, |&n| n != 2), Some(1));
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.take(now, |_| true), None);
    }

    #[test]
    fn connections_idle_for_the_timeout_are_never_handed_out() {
        let pool = IdlePool::new(8, TIMEOUT);
        let start = Instant::now();
        pool.put("old", start);
        pool.put("new", start + Duration::from_secs(3));
        assert_eq!(pool.take(start + TIMEOUT, |_| true), Some("new"));
        pool.put("new", start + Duration::from_secs(3));
        assert_eq!(
            pool.take(start + Duration::from_secs(7), |_| true),
            None,
            "exactly the timeout is too old"
        );
        assert_eq!(pool.len(), 0, "the stale ones are dropped on the way");
    }

    #[test]
    fn a_sweep_drops_the_stale_and_keeps_the_fresh() {
        let pool = IdlePool::new(8, TIMEOUT);
        let start = Instant::now();
        for second in 0..4 {
            pool.put(second, start + Duration::from_secs(second));
        }
        assert_eq!(pool.sweep(start + Duration::from_secs(5)), 2);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.sweep(start + Duration::from_secs(5)), 0);
        assert_eq!(pool.sweep(start + Duration::from_secs(60)), 2);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn a_full_pool_lets_the_oldest_go() {
        let pool = IdlePool::new(2, TIMEOUT);
        let now = Instant::now();
        for n in 1..=3 {
            pool.put(n, now);
        }
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.take(now, |_| true), Some(3));
        assert_eq!(pool.take(now, |_| true), Some(2));
        assert_eq!(pool.take(now, |_| true), None);
    }

    #[test]
    fn a_closed_pool_keeps_nothing() {
        let pool = IdlePool::new(8, TIMEOUT);
        let now = Instant::now();
        pool.put(1, now);
        pool.close();
        assert_eq!(pool.len(), 0);
        pool.put(2, now);
        assert_eq!(pool.take(now, |_| true), None);
        let none = IdlePool::new(0, TIMEOUT);
        none.put(1, now);
        assert_eq!(none.len(), 0, "a pool of size 0 keeps nothing");
    }
}
