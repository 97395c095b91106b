//! A virtual clock: time moves only when the test (or [`super::Executor::block_on`]) advances
//! it.

use crate::hosts::Clock;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[derive(Default)]
struct TimerShared {
    fired: bool,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Inner {
    now: Duration,
    seq: u64,
    timers: BTreeMap<(Duration, u64), Weak<Mutex<TimerShared>>>,
}

/// A clock whose time only moves when advanced. Cloning gives another handle to the same clock.
#[derive(Clone, Default)]
pub struct VirtualClock {
    inner: Arc<Mutex<Inner>>,
}

impl VirtualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current virtual time.
    pub fn now_duration(&self) -> Duration {
        self.inner.lock().unwrap().now
    }

    /// Moves time to the earliest pending timer and fires every timer due then. Returns false
    /// if no timer is pending.
    pub fn advance_to_next_timer(&self) -> bool {
        let mut inner = self.inner.lock().unwrap();
        // Forget timers whose future was dropped.
        inner.timers.retain(|_, w| w.strong_count() > 0);
        let Some((&(deadline, _), _)) = inner.timers.iter().next() else {
            return false;
        };
        if deadline > inner.now {
            inner.now = deadline;
        }
        Self::fire_due(&mut inner);
        true
    }

    /// The deadline of the earliest pending timer.
    pub fn next_deadline(&self) -> Option<Duration> {
        let mut inner = self.inner.lock().unwrap();
        inner.timers.retain(|_, w| w.strong_count() > 0);
        inner.timers.keys().next().map(|(d, _)| *d)
    }

    /// Advances time by `d`, firing every timer due.
    pub fn advance(&self, d: Duration) {
        let mut inner = self.inner.lock().unwrap();
        inner.now += d;
        Self::fire_due(&mut inner);
    }

    /// Number of timers pending.
    pub fn pending_timers(&self) -> usize {
        let inner = self.inner.lock().unwrap();
        inner
            .timers
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    fn fire_due(inner: &mut Inner) {
        let now = inner.now;
        let due: Vec<_> = inner
            .timers
            .range(..=(now, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            if let Some(shared) = inner.timers.remove(&k).and_then(|w| w.upgrade()) {
                let mut s = shared.lock().unwrap();
                s.fired = true;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
    }
}

struct Sleep {
    shared: Arc<Mutex<TimerShared>>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.shared.lock().unwrap();
        if s.fired {
            Poll::Ready(())
        } else {
            s.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        self.now_duration()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let shared = Arc::new(Mutex::new(TimerShared::default()));
        {
            let mut inner = self.inner.lock().unwrap();
            if duration.is_zero() {
                shared.lock().unwrap().fired = true;
            } else {
                inner.seq += 1;
                let key = (inner.now + duration, inner.seq);
                inner.timers.insert(key, Arc::downgrade(&shared));
            }
        }
        Sleep { shared }.boxed()
    }
}
