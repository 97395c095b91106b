//! Unhandled promise rejections: the host's HostPromiseRejectionTracker keeps the
//! about-to-be-notified rejected promises, and after each microtask checkpoint the event loop
//! fires `unhandledrejection` at their global.
//!
//! <https://html.spec.whatwg.org/multipage/webappapis.html#the-hostpromiserejectiontracker-implementation>
//! <https://html.spec.whatwg.org/multipage/webappapis.html#notify-about-rejected-promises>
//!
//! FIXME: `rejectionhandled` (a handler added after the notification) is not fired.

use boa_engine::builtins::promise::{OperationType, Promise};
use boa_engine::context::HostHooks;
use boa_engine::{Context, JsObject};
use std::cell::RefCell;

thread_local! {
    static PENDING: RefCell<Vec<JsObject>> = const { RefCell::new(Vec::new()) };
}

/// The host hooks of the runner's context.
#[derive(Default)]
pub struct Hooks;

impl HostHooks for Hooks {
    fn promise_rejection_tracker(
        &self,
        promise: &JsObject<Promise>,
        operation: OperationType,
        _context: &mut Context,
    ) {
        let promise = promise.clone().upcast();
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            match operation {
                // 1. If operation is "reject", append promise to the about-to-be-notified
                //    rejected promises list.
                OperationType::Reject => p.push(promise),
                // 2. If operation is "handle": if the list contains promise, remove it.
                OperationType::Handle => p.retain(|q| q != &promise),
            }
        });
    }
}

/// Takes the about-to-be-notified rejected promises.
pub fn take() -> Vec<JsObject> {
    PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()))
}
