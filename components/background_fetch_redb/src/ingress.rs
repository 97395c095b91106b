//! The append fast path: response body appends that the storage thread has already validated
//! in advance are taken on the caller's thread, so the engine keeps receiving while the storage
//! thread runs a group commit.
//!
//! The storage thread publishes, for every record that may be appended to, the generation and
//! offset the next append must have. An append that matches, while the ingress holds less than
//! its high-water mark, is queued here and resolves at once (a lock, a push, no I/O); anything
//! else goes through the storage thread's channel as before (and gets the precise error, or
//! waits: backpressure). The storage thread drains the queue into its buffers before handling
//! every operation, so every operation sees every append that resolved before it was made, and
//! refreshes the expectations after it.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// What the next append to a record must say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expect {
    pub generation: u32,
    pub next: u64,
}

/// An append taken by the fast path, waiting for the storage thread.
#[derive(Debug)]
pub(crate) struct Pending {
    pub uid: u64,
    pub record: usize,
    pub generation: u32,
    pub offset: u64,
    pub bytes: Bytes,
}

#[derive(Debug, Default)]
pub(crate) struct IngressState {
    /// The fast path is off (quotas are checked by the storage thread, or the store closed).
    pub enabled: bool,
    /// Bytes the queue may hold.
    pub high_water: u64,
    pub expect: HashMap<(u64, usize), Expect>,
    pub pending: Vec<Pending>,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Ingress {
    state: Mutex<IngressState>,
}

impl Ingress {
    pub(crate) fn new(enabled: bool, high_water: u64) -> Ingress {
        Ingress {
            state: Mutex::new(IngressState {
                enabled,
                high_water,
                ..IngressState::default()
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, IngressState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the append if it is the one expected and there is room. `Some(true)` if the queue
    /// was empty (the storage thread must be woken), `None` if the append must take the slow
    /// path.
    pub(crate) fn try_append(
        &self,
        uid: u64,
        record: usize,
        generation: u32,
        offset: u64,
        bytes: &Bytes,
    ) -> Option<bool> {
        let n = bytes.len() as u64;
        let mut st = self.lock();
        if !st.enabled || n == 0 || st.bytes + n > st.high_water {
            return None;
        }
        let expect = st.expect.get_mut(&(uid, record))?;
        if expect.generation != generation || expect.next != offset {
            return None;
        }
        expect.next += n;
        let was_empty = st.pending.is_empty();
        st.bytes += n;
        st.pending.push(Pending {
            uid,
            record,
            generation,
            offset,
            bytes: bytes.clone(),
        });
        Some(was_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_expected_appends_with_room_take_the_fast_path() {
        let ing = Ingress::new(true, 10);
        let b = Bytes::from_static(b"abcd");
        assert_eq!(ing.try_append(1, 0, 0, 0, &b), None, "no expectation");
        ing.lock().expect.insert(
            (1, 0),
            Expect {
                generation: 2,
                next: 5,
            },
        );
        assert_eq!(ing.try_append(1, 0, 1, 5, &b), None, "wrong generation");
        assert_eq!(ing.try_append(1, 0, 2, 4, &b), None, "wrong offset");
        assert_eq!(ing.try_append(1, 0, 2, 5, &b), Some(true));
        assert_eq!(ing.try_append(1, 0, 2, 9, &b), Some(false));
        assert_eq!(
            ing.try_append(1, 0, 2, 13, &b),
            None,
            "over the high-water mark"
        );
        assert_eq!(ing.lock().pending.len(), 2);
        ing.lock().enabled = false;
        ing.lock().bytes = 0;
        assert_eq!(ing.try_append(1, 0, 2, 13, &b), None, "disabled");
    }
}
