//! A realm's bindings: the scripts of `src/js/`, joined into one function
//! `(native, envId, kind) => {...}` and called with the realm's native functions.

use boa_engine::object::builtins::JsFunction;
use boa_engine::{Context, JsObject, JsValue, Source};

/// The bootstrap scripts of every realm, in order, joined into one function
/// `(native, env, kind) => {...}` so that their helpers stay out of the global scope.
pub const BOOTSTRAP: [&str; 9] = [
    include_str!("js/webidl.js"),
    include_str!("js/dom.js"),
    include_str!("js/streams.js"),
    include_str!("js/fetch.js"),
    include_str!("js/background_fetch.js"),
    include_str!("js/workers.js"),
    include_str!("js/service_worker.js"),
    include_str!("js/cache.js"),
    include_str!("js/globals.js"),
];

/// Installs the bindings in the current realm as environment `env` of kind `kind`
/// (`"window"`, `"serviceworker"`, `"dedicatedworker"` or `"sharedworker"`).
pub fn bootstrap_realm(
    context: &mut Context,
    native: JsObject,
    env: u32,
    kind: &str,
) -> Result<(), String> {
    let mut source = String::from("(function (native, envId, kind) {\n'use strict';\n");
    for part in BOOTSTRAP {
        source.push_str(part);
        source.push('\n');
    }
    source.push_str("})");
    let f = context
        .eval(Source::from_bytes(&source))
        .map_err(|e| format!("bootstrap: {e}"))?;
    let f = f
        .as_object()
        .and_then(|o| JsFunction::from_object(o.clone()))
        .ok_or("bootstrap: not a function")?;
    f.call(
        &JsValue::undefined(),
        &[
            native.into(),
            JsValue::from(env),
            JsValue::from(boa_engine::js_string!(kind)),
        ],
        context,
    )
    .map_err(|e| format!("bootstrap: {e}"))?;
    Ok(())
}
