//! Not written yet: see the issue tracker.
