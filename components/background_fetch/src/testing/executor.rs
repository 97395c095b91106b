//! A deterministic single-threaded executor driven together with a [`VirtualClock`]: it runs
//! every ready task until none is left, then advances virtual time to the next timer. Nothing
//! sleeps for real, and the same test gives the same interleaving every run.

use super::clock::VirtualClock;
use crate::hosts::Spawn;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

#[derive(Default)]
struct Inner {
    tasks: Mutex<HashMap<u64, Option<BoxFuture<'static, ()>>>>,
    ready: Mutex<VecDeque<u64>>,
    next_id: Mutex<u64>,
    /// Futures from [`Executor::idle`] waiting for every other task to stall.
    idle: Mutex<Vec<Arc<Mutex<IdleState>>>>,
}

#[derive(Default)]
struct IdleState {
    done: bool,
    waker: Option<Waker>,
}

/// Completes once every other task is waiting and no timer is pending.
struct Idle {
    state: Option<Arc<Mutex<IdleState>>>,
    exec: Arc<Inner>,
}

impl Future for Idle {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.state {
            None => {
                let st = Arc::new(Mutex::new(IdleState {
                    done: false,
                    waker: Some(cx.waker().clone()),
                }));
                self.exec.idle.lock().unwrap().push(st.clone());
                self.state = Some(st);
                Poll::Pending
            }
            Some(st) => {
                let mut st = st.lock().unwrap();
                if st.done {
                    Poll::Ready(())
                } else {
                    st.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        }
    }
}

struct TaskWaker {
    id: u64,
    exec: Weak<Inner>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(exec) = self.exec.upgrade() {
            let mut ready = exec.ready.lock().unwrap();
            if !ready.contains(&self.id) {
                ready.push_back(self.id);
            }
        }
    }
}

/// A deterministic executor. Cloning gives another handle to the same executor.
#[derive(Clone, Default)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl Executor {
    /// A new, empty executor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a task.
    pub fn spawn_boxed(&self, future: BoxFuture<'static, ()>) {
        let id = {
            let mut n = self.inner.next_id.lock().unwrap();
            *n += 1;
            *n
        };
        self.inner.tasks.lock().unwrap().insert(id, Some(future));
        self.inner.ready.lock().unwrap().push_back(id);
    }

    /// Polls ready tasks until none is ready. Returns how many polls ran.
    pub fn run_until_stalled(&self) -> usize {
        let mut polls = 0;
        loop {
            let Some(id) = self.inner.ready.lock().unwrap().pop_front() else {
                return polls;
            };
            let fut = match self.inner.tasks.lock().unwrap().get_mut(&id) {
                Some(slot) => slot.take(),
                None => continue,
            };
            let Some(mut fut) = fut else { continue };
            let waker = Waker::from(Arc::new(TaskWaker {
                id,
                exec: Arc::downgrade(&self.inner),
            }));
            let mut cx = Context::from_waker(&waker);
            polls += 1;
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(()) => {
                    self.inner.tasks.lock().unwrap().remove(&id);
                }
                Poll::Pending => {
                    if let Some(slot) = self.inner.tasks.lock().unwrap().get_mut(&id) {
                        *slot = Some(fut);
                    }
                }
            }
        }
    }

    /// A future that completes once every other task is waiting and no timer is pending (the
    /// background work has settled). Only meaningful under [`Executor::block_on`].
    pub fn idle(&self) -> impl Future<Output = ()> + Send + 'static {
        Idle {
            state: None,
            exec: self.inner.clone(),
        }
    }

    /// Wakes every idle waiter; returns false if there was none.
    fn wake_idle(&self) -> bool {
        let waiters: Vec<_> = self.inner.idle.lock().unwrap().drain(..).collect();
        if waiters.is_empty() {
            return false;
        }
        for w in waiters {
            let mut st = w.lock().unwrap();
            st.done = true;
            if let Some(waker) = st.waker.take() {
                waker.wake();
            }
        }
        true
    }

    /// Number of tasks not yet finished.
    pub fn pending_tasks(&self) -> usize {
        self.inner.tasks.lock().unwrap().len()
    }

    /// Drops every task without finishing it (what a crash does to in-flight work).
    pub fn drop_all_tasks(&self) {
        let tasks: Vec<_> = self.inner.tasks.lock().unwrap().drain().collect();
        self.inner.ready.lock().unwrap().clear();
        self.inner.idle.lock().unwrap().clear();
        drop(tasks);
    }

    /// Runs `future` to completion on this executor, advancing `clock` whenever every task is
    /// stalled. Panics if the future cannot finish (every task stalled and no timer pending):
    /// that is a deadlock in the code under test.
    ///
    /// Only for hosts that answer on this executor (the in-memory store, the scripted network):
    /// a host whose work finishes on a thread of its own (the redb store's storage thread, a
    /// real socket) wakes a task from outside, and a moment with nothing ready here looks like
    /// a deadlock. Such embeddings wait for that wake instead (as `background-fetch-js` does).
    pub fn block_on<T: Send + 'static>(
        &self,
        clock: &VirtualClock,
        future: impl Future<Output = T> + Send + 'static,
    ) -> T {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.spawn_boxed(
            async move {
                let v = future.await;
                *out.lock().unwrap() = Some(v);
            }
            .boxed(),
        );
        loop {
            self.run_until_stalled();
            if let Some(v) = slot.lock().unwrap().take() {
                return v;
            }
            if !clock.advance_to_next_timer() && !self.wake_idle() {
                panic!(
                    "deadlock: the future cannot finish (every task is waiting and no timer is pending; {} tasks)",
                    self.pending_tasks()
                );
            }
        }
    }

    /// Runs tasks and advances time until every task has finished or is waiting with no timer
    /// pending. Returns the virtual time that passed.
    pub fn run_until_idle(&self, clock: &VirtualClock) -> std::time::Duration {
        let start = clock.now_duration();
        loop {
            self.run_until_stalled();
            if !clock.advance_to_next_timer() && !self.wake_idle() {
                return clock.now_duration() - start;
            }
        }
    }
}

impl Spawn for Executor {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        self.spawn_boxed(future);
    }
}
