//! `testharness.js` assertions, as macros so a ported subtest reads like the upstream one:
//! `assert_equals!(registration.id(), registration_id)`,
//! `promise_rejects_js!(TypeError, background_fetch.fetch(...))`. A failed assertion panics with
//! testharness's wording and the line of the subtest.

use background_fetch::DomError;
use std::fmt::Debug;

/// The line of a subtest an assertion is on.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// `file!()`
    pub file: &'static str,
    /// `line!()`
    pub line: u32,
}

fn fail(site: Site, assertion: &str, description: &str, detail: String) -> ! {
    let description = if description.is_empty() {
        String::new()
    } else {
        format!("{description} ")
    };
    panic!(
        "{assertion}: {description}{detail} (at {}:{})",
        site.file, site.line
    )
}

/// `assert_equals(actual, expected, description)`.
pub fn assert_equals<A, E>(actual: &A, expected: &E, description: &str, site: Site)
where
    A: PartialEq<E> + Debug + ?Sized,
    E: Debug + ?Sized,
{
    if actual != expected {
        fail(
            site,
            "assert_equals",
            description,
            format!("expected {expected:?} but got {actual:?}"),
        );
    }
}

/// `assert_not_equals(actual, expected, description)`.
pub fn assert_not_equals<A, E>(actual: &A, expected: &E, description: &str, site: Site)
where
    A: PartialEq<E> + Debug + ?Sized,
    E: Debug + ?Sized,
{
    if actual == expected {
        fail(
            site,
            "assert_not_equals",
            description,
            format!("got disallowed value {actual:?}"),
        );
    }
}

/// `assert_true(actual, description)` / `assert_false(...)`.
pub fn assert_bool(actual: bool, expected: bool, description: &str, site: Site) {
    if actual != expected {
        fail(
            site,
            if expected {
                "assert_true"
            } else {
                "assert_false"
            },
            description,
            format!("expected {expected} got {actual}"),
        );
    }
}

/// `promise_rejects_js(test, constructor, promise, description)` /
/// `promise_rejects_dom(test, name, promise, description)`: the promise rejects with an error
/// named `expected_name`.
pub fn rejects(
    assertion: &str,
    result: Result<(), DomError>,
    expected_name: &str,
    description: &str,
    site: Site,
) -> DomError {
    match result {
        Ok(()) => fail(
            site,
            assertion,
            description,
            format!("expected a {expected_name} rejection but the promise resolved"),
        ),
        Err(e) if e.name() == expected_name => e,
        Err(e) => fail(
            site,
            assertion,
            description,
            format!("expected a {expected_name} rejection but got {e}"),
        ),
    }
}

/// `assert_equals(actual, expected[, description])`.
#[macro_export]
macro_rules! assert_equals {
    ($actual:expr, $expected:expr $(,)?) => {
        $crate::assert_equals!($actual, $expected, "")
    };
    ($actual:expr, $expected:expr, $description:expr $(,)?) => {
        $crate::asserts::assert_equals(
            &$actual,
            &$expected,
            $description,
            $crate::asserts::Site {
                file: file!(),
                line: line!(),
            },
        )
    };
}

/// `assert_array_equals(actual, expected[, description])`.
#[macro_export]
macro_rules! assert_array_equals {
    ($($t:tt)*) => { $crate::assert_equals!($($t)*) };
}

/// `assert_not_equals(actual, expected[, description])`.
#[macro_export]
macro_rules! assert_not_equals {
    ($actual:expr, $expected:expr $(,)?) => {
        $crate::assert_not_equals!($actual, $expected, "")
    };
    ($actual:expr, $expected:expr, $description:expr $(,)?) => {
        $crate::asserts::assert_not_equals(
            &$actual,
            &$expected,
            $description,
            $crate::asserts::Site {
                file: file!(),
                line: line!(),
            },
        )
    };
}

/// `assert_true(actual[, description])`.
#[macro_export]
macro_rules! assert_true {
    ($actual:expr $(,)?) => {
        $crate::assert_true!($actual, "")
    };
    ($actual:expr, $description:expr $(,)?) => {
        $crate::asserts::assert_bool(
            $actual,
            true,
            $description,
            $crate::asserts::Site {
                file: file!(),
                line: line!(),
            },
        )
    };
}

/// `assert_false(actual[, description])`.
#[macro_export]
macro_rules! assert_false {
    ($actual:expr $(,)?) => {
        $crate::assert_false!($actual, "")
    };
    ($actual:expr, $description:expr $(,)?) => {
        $crate::asserts::assert_bool(
            $actual,
            false,
            $description,
            $crate::asserts::Site {
                file: file!(),
                line: line!(),
            },
        )
    };
}

/// `await promise_rejects_js(test, TypeError, promise[, description])`: awaits the future (a
/// `Result<_, DomError>`) and checks that it failed with a JavaScript error of that name.
/// Evaluates to the error.
#[macro_export]
macro_rules! promise_rejects_js {
    ($constructor:ident, $promise:expr $(,)?) => {
        $crate::promise_rejects_js!($constructor, $promise, "")
    };
    ($constructor:ident, $promise:expr, $description:expr $(,)?) => {
        $crate::asserts::rejects(
            "promise_rejects_js",
            $promise.await.map(|_| ()),
            stringify!($constructor),
            $description,
            $crate::asserts::Site {
                file: file!(),
                line: line!(),
            },
        )
    };
}

/// `await promise_rejects_dom(test, 'AbortError', promise[, description])`.
#[macro_export]
macro_rules! promise_rejects_dom {
    ($name:expr, $promise:expr $(,)?) => {
        $crate::promise_rejects_dom!($name, $promise, "")
    };
    ($name:expr, $promise:expr, $description:expr $(,)?) => {
        $crate::asserts::rejects(
            "promise_rejects_dom",
            $promise.await.map(|_| ()),
            $name,
            $description,
            $crate::asserts::Site {
                file: file!(),
                line: line!(),
            },
        )
    };
}

/// `await promise_rejects_quotaexceedederror(test, promise, quota, requested)`: rejects with a
/// `QuotaExceededError` whose `quota` and `requested` are the given values (`None` is null).
#[macro_export]
macro_rules! promise_rejects_quotaexceedederror {
    ($promise:expr, $quota:expr, $requested:expr $(,)?) => {{
        let site = $crate::asserts::Site {
            file: file!(),
            line: line!(),
        };
        let error = $crate::asserts::rejects(
            "promise_rejects_quotaexceedederror",
            $promise.await.map(|_| ()),
            "QuotaExceededError",
            "",
            site,
        );
        $crate::asserts::assert_equals(&error.quota, &$quota, "quota", site);
        $crate::asserts::assert_equals(&error.requested, &$requested, "requested", site);
    }};
}
