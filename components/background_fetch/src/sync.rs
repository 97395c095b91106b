//! Small runtime-agnostic synchronisation primitives: a watched value, a fair semaphore and a
//! cooperative yield. They need no executor, timer or thread of their own.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct WatchInner<T> {
    value: T,
    version: u64,
    waiters: Waiters,
}

/// The wakers of the futures waiting on a [`Watch`], keyed so that a future that is dropped
/// (or completes) takes its waker out: the list holds only futures that are waiting now,
/// whatever the number of futures that ever waited.
#[derive(Default)]
struct Waiters {
    wakers: HashMap<u64, Waker>,
    next_key: u64,
}

impl Waiters {
    /// Registers (or refreshes) the waker of the future holding `key`.
    fn register(&mut self, key: &mut Option<u64>, waker: &Waker) {
        let k = *key.get_or_insert_with(|| {
            self.next_key += 1;
            self.next_key
        });
        match self.wakers.get_mut(&k) {
            Some(w) if w.will_wake(waker) => {}
            Some(w) => w.clone_from(waker),
            None => {
                self.wakers.insert(k, waker.clone());
            }
        }
    }

    /// Forgets the waker of the future holding `key`.
    fn remove(&mut self, key: &mut Option<u64>) {
        if let Some(k) = key.take() {
            self.wakers.remove(&k);
        }
    }
}

/// A value that tasks can wait on: every change wakes every waiter, which re-checks its
/// condition.
pub(crate) struct Watch<T> {
    inner: Mutex<WatchInner<T>>,
}

impl<T> Watch<T> {
    pub(crate) fn new(value: T) -> Self {
        Watch {
            inner: Mutex::new(WatchInner {
                value,
                version: 0,
                waiters: Waiters::default(),
            }),
        }
    }

    /// Reads the value.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&lock(&self.inner).value)
    }

    /// Changes the value and wakes every waiter.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let (r, wakers) = {
            let mut inner = lock(&self.inner);
            let r = f(&mut inner.value);
            inner.version += 1;
            (r, std::mem::take(&mut inner.waiters.wakers))
        };
        for (_, w) in wakers {
            w.wake();
        }
        r
    }

    /// The current version (incremented by every update).
    pub(crate) fn version(&self) -> u64 {
        lock(&self.inner).version
    }

    /// How many futures are waiting on the value now.
    pub(crate) fn waiters(&self) -> usize {
        lock(&self.inner).waiters.wakers.len()
    }

    /// Completes once `pred` holds for the value.
    pub(crate) fn wait_until<'a, P: Fn(&T) -> bool + Unpin + 'a>(
        &'a self,
        pred: P,
    ) -> WaitUntil<'a, T, P> {
        WaitUntil {
            watch: self,
            pred,
            key: None,
        }
    }

    /// Completes once the value has been updated after version `since`.
    pub(crate) fn changed_since(&self, since: u64) -> ChangedSince<'_, T> {
        ChangedSince {
            watch: self,
            since,
            key: None,
        }
    }
}

impl<T: Default> Default for Watch<T> {
    fn default() -> Self {
        Watch::new(T::default())
    }
}

impl<T: Clone> Watch<T> {
    /// A copy of the value.
    pub(crate) fn get(&self) -> T {
        self.with(T::clone)
    }
}

pub(crate) struct WaitUntil<'a, T, P> {
    watch: &'a Watch<T>,
    pred: P,
    /// This future's entry in the watch's waiters, while it waits.
    key: Option<u64>,
}

impl<T, P: Fn(&T) -> bool + Unpin> Future for WaitUntil<'_, T, P> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut inner = lock(&this.watch.inner);
        if (this.pred)(&inner.value) {
            inner.waiters.remove(&mut this.key);
            Poll::Ready(())
        } else {
            inner.waiters.register(&mut this.key, cx.waker());
            Poll::Pending
        }
    }
}

impl<T, P> Drop for WaitUntil<'_, T, P> {
    fn drop(&mut self) {
        if self.key.is_some() {
            lock(&self.watch.inner).waiters.remove(&mut self.key);
        }
    }
}

pub(crate) struct ChangedSince<'a, T> {
    watch: &'a Watch<T>,
    since: u64,
    /// This future's entry in the watch's waiters, while it waits.
    key: Option<u64>,
}

impl<T> Future for ChangedSince<'_, T> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut inner = lock(&this.watch.inner);
        if inner.version != this.since {
            inner.waiters.remove(&mut this.key);
            Poll::Ready(())
        } else {
            inner.waiters.register(&mut this.key, cx.waker());
            Poll::Pending
        }
    }
}

impl<T> Drop for ChangedSince<'_, T> {
    fn drop(&mut self) {
        if self.key.is_some() {
            lock(&self.watch.inner).waiters.remove(&mut self.key);
        }
    }
}

struct SemaphoreInner {
    permits: usize,
    next_ticket: u64,
    /// Waiting tickets in arrival order, with their latest waker.
    queue: VecDeque<(u64, Option<Waker>)>,
}

/// A counting semaphore that serves waiters in arrival order.
pub(crate) struct Semaphore {
    inner: Mutex<SemaphoreInner>,
}

impl Semaphore {
    pub(crate) fn new(permits: usize) -> Arc<Self> {
        Arc::new(Semaphore {
            inner: Mutex::new(SemaphoreInner {
                permits,
                next_ticket: 0,
                queue: VecDeque::new(),
            }),
        })
    }

    pub(crate) fn acquire(self: &Arc<Self>) -> Acquire {
        Acquire {
            sem: self.clone(),
            ticket: None,
        }
    }

    fn wake_front(inner: &mut SemaphoreInner) {
        if inner.permits > 0
            && let Some((_, Some(w))) = inner.queue.front()
        {
            w.wake_by_ref();
        }
    }
}

pub(crate) struct Acquire {
    sem: Arc<Semaphore>,
    ticket: Option<u64>,
}

/// A held permit; dropping it gives the permit back.
pub(crate) struct Permit {
    sem: Arc<Semaphore>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut inner = lock(&self.sem.inner);
        inner.permits += 1;
        Semaphore::wake_front(&mut inner);
    }
}

impl Future for Acquire {
    type Output = Permit;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let sem = self.sem.clone();
        let mut inner = lock(&sem.inner);
        match self.ticket {
            None => {
                if inner.permits > 0 && inner.queue.is_empty() {
                    inner.permits -= 1;
                    return Poll::Ready(Permit { sem: sem.clone() });
                }
                let t = inner.next_ticket;
                inner.next_ticket += 1;
                inner.queue.push_back((t, Some(cx.waker().clone())));
                self.ticket = Some(t);
                Poll::Pending
            }
            Some(t) => {
                if inner.permits > 0 && inner.queue.front().map(|(f, _)| *f) == Some(t) {
                    inner.queue.pop_front();
                    inner.permits -= 1;
                    Semaphore::wake_front(&mut inner);
                    drop(inner);
                    self.ticket = None;
                    return Poll::Ready(Permit { sem });
                }
                if let Some(entry) = inner.queue.iter_mut().find(|(q, _)| *q == t) {
                    entry.1 = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let Some(t) = self.ticket {
            let mut inner = lock(&self.sem.inner);
            inner.queue.retain(|(q, _)| *q != t);
            Semaphore::wake_front(&mut inner);
        }
    }
}

/// Returns `Pending` once, waking itself at once: the executor runs its other ready tasks
/// before this one goes on. A loop whose every await may be ready (a network with data always
/// there, a store that never waits) calls it so that it does not keep the thread.
pub(crate) fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

pub(crate) struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use futures::task::noop_waker;

    #[test]
    fn semaphore_is_fifo_and_cancel_safe() {
        let sem = Semaphore::new(1);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let p1 = sem.acquire().now_or_never().unwrap();
        let mut a = Box::pin(sem.acquire());
        let mut b = Box::pin(sem.acquire());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        drop(p1);
        // b cannot jump the queue.
        assert!(b.as_mut().poll(&mut cx).is_pending());
        drop(a); // cancelled while first in line: b becomes first
        let p2 = match b.as_mut().poll(&mut cx) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("b should get the permit"),
        };
        let mut c = Box::pin(sem.acquire());
        assert!(c.as_mut().poll(&mut cx).is_pending());
        drop(p2);
        assert!(c.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn waiters_that_stop_waiting_leave_no_waker_behind() {
        let w = Watch::new(false);
        let v = w.version();
        // 100,000 waits from as many tasks (each record's future has a waker of its own) that
        // end without a change (a record that finished while connectivity held steady) leave
        // nothing behind.
        struct Task;
        impl futures::task::ArcWake for Task {
            fn wake_by_ref(_: &Arc<Self>) {}
        }
        for _ in 0..100_000 {
            let waker = futures::task::waker(Arc::new(Task));
            let mut cx = Context::from_waker(&waker);
            let mut c = Box::pin(w.changed_since(v));
            assert!(c.as_mut().poll(&mut cx).is_pending());
            let mut u = Box::pin(w.wait_until(|x| *x));
            assert!(u.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(w.waiters(), 0);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        // A waiter polled again keeps one entry; one that completes removes it.
        let mut c = Box::pin(w.changed_since(v));
        for _ in 0..3 {
            assert!(c.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(w.waiters(), 1);
        w.update(|x| *x = true);
        assert_eq!(w.waiters(), 0);
        assert!(c.as_mut().poll(&mut cx).is_ready());
        let mut u = Box::pin(w.wait_until(|x| !*x));
        assert!(u.as_mut().poll(&mut cx).is_pending());
        assert_eq!(w.waiters(), 1);
        w.update(|x| *x = false);
        assert!(u.as_mut().poll(&mut cx).is_ready());
        assert_eq!(w.waiters(), 0);
    }

    #[test]
    fn watch_wakes_waiters() {
        let w = Watch::new(0);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut f = Box::pin(w.wait_until(|v| *v >= 2));
        assert!(f.as_mut().poll(&mut cx).is_pending());
        w.update(|v| *v = 1);
        assert!(f.as_mut().poll(&mut cx).is_pending());
        w.update(|v| *v = 2);
        assert!(f.as_mut().poll(&mut cx).is_ready());
        let v = w.version();
        let mut c = Box::pin(w.changed_since(v));
        assert!(c.as_mut().poll(&mut cx).is_pending());
        w.update(|_| ());
        assert!(c.as_mut().poll(&mut cx).is_ready());
    }
}
