//! The reference model: what one fetch may look like in the store's memory and on its disk.
//!
//! Without faults a fetch has exactly one [`Cand`] (candidate). An I/O error makes the store
//! reopen the file and return some fetches to their durable state (poisoning records that lost
//! bytes), and which ones depends on which write failed, so after a fault a fetch has a few
//! candidates; every later observation (a read, an append's result, `load()`) must fit one of
//! them, and keeps only those it fits. Bodies are never stored in the model: the byte at offset
//! `o` of a body is a function of (uid, record, generation, `o`), so a length says it all.

use background_fetch::store::{FetchMeta, RecordState, StoredFetch, StoredFlags, StoredRecord};
use background_fetch::testing::store_contract::head;
use background_fetch::{BackgroundFetchFailureReason, BackgroundFetchResult, ImageResource};

/// A record, as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecM {
    pub state: RecordState,
    pub generation: u32,
    /// Status code of the stored response head.
    pub head: Option<u16>,
    /// Response body length (of `generation`).
    pub body: u64,
    /// Request body length.
    pub req: u64,
    /// `mark_request_sent` ran.
    pub sent: bool,
}

impl RecM {
    pub fn pending() -> RecM {
        RecM {
            state: RecordState::Pending,
            generation: 0,
            head: None,
            body: 0,
            req: 0,
            sent: false,
        }
    }
}

/// Everything about a fetch that `load()` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snap {
    pub committed: bool,
    pub flags: StoredFlags,
    pub settled: Option<(BackgroundFetchResult, BackgroundFetchFailureReason)>,
    /// `set_ui` was called with this title number (None: the title it was created with).
    pub ui: Option<u8>,
    pub records: Vec<RecM>,
}

impl Snap {
    pub fn new(records: usize) -> Snap {
        Snap {
            committed: false,
            flags: StoredFlags::default(),
            settled: None,
            ui: None,
            records: vec![RecM::pending(); records],
        }
    }

    /// Request and response bytes (what `usage()` and the quota count).
    pub fn bytes(&self) -> u64 {
        self.records.iter().map(|r| r.body + r.req).sum()
    }

    /// What `load()` returns for it.
    pub fn stored(&self, created: &FetchMeta) -> StoredFetch {
        let mut meta = created.clone();
        if let Some(n) = self.ui {
            meta.title = ui_title(n);
            meta.icons = ui_icons(n);
        }
        StoredFetch {
            meta,
            upload_total: self.records.iter().map(|r| r.req).sum(),
            flags: self.flags,
            settled: self.settled,
            records: self
                .records
                .iter()
                .map(|r| StoredRecord {
                    state: r.state,
                    response: r.head.map(head),
                    generation: r.generation,
                    body_length: r.body,
                    request_sent: r.sent,
                })
                .collect(),
        }
    }
}

/// The title `set_ui` number `n` sets.
pub(crate) fn ui_title(n: u8) -> String {
    format!("title #{n}")
}

/// The icons `set_ui` number `n` sets.
pub(crate) fn ui_icons(n: u8) -> Vec<ImageResource> {
    if n.is_multiple_of(2) {
        return Vec::new();
    }
    vec![ImageResource {
        src: format!("https://a.example/icon{n}.png"),
        sizes: Some("64x64".into()),
        r#type: Some("image/png".into()),
        label: None,
    }]
}

/// Whether a record's next append (or successful completion) fails with the error that lost
/// its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Poison {
    No,
    /// The store may or may not have poisoned it (it reverted the record, whose visible state
    /// did not change, but which may have had changes in flight).
    Maybe,
    Yes,
}

/// A fetch in the store's memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Live {
    pub snap: Snap,
    pub poison: Vec<Poison>,
    /// The record was written to since the fetch's last durable commit (so the store may hold
    /// changes of it that a revert loses, even if its visible state is the durable one).
    pub touched: Vec<bool>,
}

/// A fetch in the store's memory, or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mem {
    Live(Live),
    /// Not there: never created, deleted, or discarded (uncommitted at a load or reopen).
    Absent,
    /// Its creation could not be written and the store dropped it: every operation on it fails
    /// with the I/O error (until it is deleted).
    Lost,
}

/// One possible truth about a fetch: the store's memory and its durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cand {
    pub mem: Mem,
    /// What a crash now would leave (None: nothing).
    pub disk: Option<Snap>,
}

impl Cand {
    pub fn created(records: usize) -> Cand {
        Cand {
            mem: Mem::Live(Live {
                snap: Snap::new(records),
                poison: vec![Poison::No; records],
                touched: vec![true; records],
            }),
            disk: None,
        }
    }

    pub fn absent() -> Cand {
        Cand {
            mem: Mem::Absent,
            disk: None,
        }
    }

    pub fn live(&self) -> Option<&Live> {
        match &self.mem {
            Mem::Live(l) => Some(l),
            _ => None,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.live().map_or(0, |l| l.snap.bytes())
    }

    /// A durable commit of this fetch landed: the disk holds what memory holds.
    pub fn landed(&self) -> Cand {
        match &self.mem {
            Mem::Live(l) => Cand {
                mem: Mem::Live(Live {
                    snap: l.snap.clone(),
                    poison: l.poison.clone(),
                    touched: vec![false; l.touched.len()],
                }),
                disk: Some(l.snap.clone()),
            },
            // A pending delete landed.
            Mem::Absent => Cand::absent(),
            Mem::Lost => self.clone(),
        }
    }

    /// A durable commit of this fetch reached the disk, but the store saw it fail (a later
    /// write or the sync failed) and kept its changes marked unwritten: the disk holds what
    /// memory holds, yet a revert (at once or at a later reopen) may still poison the records
    /// written to since the last acknowledged commit (`Actor::revert` poisons dirty rows even
    /// when the disk has them). Unlike [`Cand::landed`], `touched` is kept.
    pub fn landed_unacked(&self) -> Cand {
        match &self.mem {
            Mem::Live(l) => Cand {
                mem: self.mem.clone(),
                disk: Some(l.snap.clone()),
            },
            _ => self.landed(),
        }
    }

    /// What a fault during an operation may leave of this fetch: unchanged (or left for a later
    /// reopen to revert), reverted, and if the operation commits durably, landed (acknowledged
    /// or not) and landed but reverted all the same.
    pub fn faulted(&self, durable: bool) -> Vec<Cand> {
        let mut v = vec![self.clone(), self.reverted()];
        if durable {
            let unacked = self.landed_unacked();
            v.push(self.landed());
            v.push(unacked.reverted());
            v.push(unacked);
        }
        v
    }

    /// The store reverted this fetch to what its disk holds (`Actor::revert`): records whose
    /// bytes, state or generation differ are poisoned; records written to since the last
    /// durable commit may be. A fetch that is not on disk is lost.
    pub fn reverted(&self) -> Cand {
        let Mem::Live(l) = &self.mem else {
            // A pending delete stays pending; a lost fetch stays lost.
            return self.clone();
        };
        let Some(d) = &self.disk else {
            return Cand {
                mem: Mem::Lost,
                disk: None,
            };
        };
        let poison = l
            .snap
            .records
            .iter()
            .zip(&d.records)
            .enumerate()
            .map(|(i, (o, r))| {
                let lost = o.body != r.body
                    || o.req != r.req
                    || o.state != r.state
                    || o.generation != r.generation;
                if lost || l.poison[i] == Poison::Yes {
                    Poison::Yes
                } else if l.touched[i] || o.head != r.head {
                    Poison::Maybe
                } else {
                    l.poison[i]
                }
            })
            .collect();
        Cand {
            mem: Mem::Live(Live {
                snap: d.clone(),
                poison,
                touched: vec![false; d.records.len()],
            }),
            disk: Some(d.clone()),
        }
    }

    /// After a restart: memory is what the disk holds, less uncommitted fetches.
    pub fn restarted(disk: &Option<Snap>) -> Cand {
        match disk {
            Some(s) if s.committed => Cand {
                mem: Mem::Live(Live {
                    snap: s.clone(),
                    poison: vec![Poison::No; s.records.len()],
                    touched: vec![false; s.records.len()],
                }),
                disk: Some(s.clone()),
            },
            _ => Cand::absent(),
        }
    }
}

/// splitmix64.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Seed of a response body.
pub(crate) fn body_seed(uid: u64, record: usize, generation: u32) -> u64 {
    mix(mix(uid ^ 0x5245_5350) ^ ((record as u64) << 40) ^ u64::from(generation))
}

/// Seed of a request body.
pub(crate) fn request_seed(uid: u64, record: usize) -> u64 {
    mix(mix(uid ^ 0x5245_5155) ^ ((record as u64) << 40))
}

/// Bytes `[start, start + len)` of the body with `seed`: every byte depends on its offset, so
/// misplaced, repeated or stale bytes show.
pub(crate) fn pattern(seed: u64, start: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut o = start;
    let end = start + len as u64;
    while o < end {
        let word = mix(seed ^ (o >> 3)).to_le_bytes();
        let from = (o & 7) as usize;
        let take = (8 - from).min((end - o) as usize);
        out.extend_from_slice(&word[from..from + take]);
        o += take as u64;
    }
    out
}
