//! The native functions the JavaScript bindings are written over (`native.*` in `src/js/`):
//! tasks and timers, text encoding, script loading, the harness's report, and the engine's
//! operations, each answering with a promise created in the caller's realm and settled by the
//! event loop from the browser side's [`crate::engine_host::Inbound`] messages.

use crate::bootstrap::bootstrap_realm;
use crate::engine_host::{EnvId, registration_json};
use crate::state::{Env, Report, Task, with_state};
use background_fetch::service::client::{BackgroundFetchRecord, Response};
use background_fetch::{
    BackgroundFetchOptions, BackgroundFetchUiOptions, CacheMode, CacheQueryOptions,
    CredentialsMode, DispatchOutcome, DomError, DomErrorKind, ImageResource, PermissionState,
    RedirectMode, Request, RequestBody, RequestInfo, RequestInit, RequestMode, ResponseHead,
    ServiceWorkerRegistrationId, construct_request,
};
use background_fetch::{
    ClientSnapshot, FetchUid, NetworkEvent, NetworkHost, NetworkRequest, PolicyContainer,
    PolicyHost, RequestBodySource, RequestObject, SimpleCsp, Validators,
};
use background_fetch_wpt::cors::CorsNetwork;
use boa_engine::object::ObjectInitializer;
use boa_engine::object::builtins::{JsArrayBuffer, JsPromise, JsUint8Array};
use boa_engine::property::Attribute;
use boa_engine::{
    Context, JsArgs, JsError, JsNativeError, JsObject, JsResult, JsValue, NativeFunction, js_string,
};
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

type NativeFn = fn(&JsValue, &[JsValue], &mut Context) -> JsResult<JsValue>;

/// The `native` object given to a realm's bootstrap.
pub fn native_object(context: &mut Context) -> JsObject {
    let functions: [(&str, NativeFn, usize); 14] = [
        ("queueTask", queue_task, 1),
        ("setTimer", set_timer, 2),
        ("clearTimer", clear_timer, 1),
        ("now", now, 0),
        ("print", print, 2),
        ("loadScript", load_script, 1),
        ("utf8Decode", utf8_decode, 1),
        ("utf8Encode", utf8_encode, 1),
        ("report", report, 1),
        ("setCallback", set_callback, 2),
        ("createWorker", create_worker, 3),
        ("op", op, 3),
        ("sync", sync, 3),
        ("settings", settings, 2),
    ];
    let mut init = ObjectInitializer::new(context);
    for (name, f, len) in functions {
        init.function(NativeFunction::from_fn_ptr(f), js_string!(name), len);
    }
    init.property(js_string!("version"), 1, Attribute::all());
    init.build()
}

fn type_error(message: impl Into<String>) -> JsError {
    JsNativeError::typ().with_message(message.into()).into()
}

fn string_arg(args: &[JsValue], i: usize, context: &mut Context) -> JsResult<String> {
    Ok(args
        .get_or_undefined(i)
        .to_string(context)?
        .to_std_string_escaped())
}

fn json_arg(args: &[JsValue], i: usize, context: &mut Context) -> JsResult<Value> {
    Ok(args
        .get_or_undefined(i)
        .to_json(context)?
        .unwrap_or(Value::Null))
}

fn callback_arg(args: &[JsValue], i: usize) -> JsResult<JsObject> {
    args.get_or_undefined(i)
        .as_callable()
        .ok_or_else(|| type_error("not a function"))
}

/// `native.queueTask(callback, ...args)`: queues a task.
fn queue_task(_: &JsValue, args: &[JsValue], _: &mut Context) -> JsResult<JsValue> {
    let callback = callback_arg(args, 0)?;
    let args = args.iter().skip(1).cloned().collect();
    with_state(|s| s.tasks.push_back(Task { callback, args }));
    Ok(JsValue::undefined())
}

/// `native.setTimer(callback, ms, ...args)`: a timer on the engine's clock; returns its id.
fn set_timer(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let callback = callback_arg(args, 0)?;
    let ms = args.get_or_undefined(1).to_number(context)?;
    let ms = if ms.is_finite() && ms > 0.0 { ms } else { 0.0 };
    let args = args.iter().skip(2).cloned().collect();
    let id = with_state(|s| {
        s.next_timer += 1;
        let id = s.next_timer;
        let deadline = s.browser.clock.now_duration() + Duration::from_micros((ms * 1000.0) as u64);
        s.timers.insert((deadline, id), Task { callback, args });
        s.timer_ids.insert(id, deadline);
        id
    });
    Ok(JsValue::from(id as f64))
}

/// `native.clearTimer(id)`.
fn clear_timer(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let id = args.get_or_undefined(0).to_number(context)? as u64;
    with_state(|s| {
        if let Some(deadline) = s.timer_ids.remove(&id) {
            s.timers.remove(&(deadline, id));
        }
    });
    Ok(JsValue::undefined())
}

/// `native.now()`: milliseconds on the engine's clock.
fn now(_: &JsValue, _: &[JsValue], _: &mut Context) -> JsResult<JsValue> {
    Ok(JsValue::from(with_state(|s| {
        s.browser.clock.now_duration().as_secs_f64() * 1000.0
    })))
}

/// `native.print(level, text)`: console output.
fn print(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let level = string_arg(args, 0, context)?;
    let text = string_arg(args, 1, context)?;
    with_state(|s| {
        if s.verbose {
            eprintln!("console.{level}: {text}");
        }
        s.console.push(format!("{level}: {text}"));
    });
    Ok(JsValue::undefined())
}

/// `native.loadScript(url, scope)`: fetches a script synchronously (`importScripts`, a
/// worker's script, the page's scripts): `{status, text}`, the text decoded as UTF-8. With
/// `scope`, the script is the service worker's of that registration: on an app's store it
/// comes from the stored worker's scripts when the run resumes one, and is kept with the
/// registration otherwise (see [`crate::registrations`]).
fn load_script(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let url = string_arg(args, 0, context)?;
    let scope = match args.get(1) {
        Some(v) if v.is_string() => Some(v.to_string(context)?.to_std_string_escaped()),
        _ => None,
    };
    let url = Url::parse(&url).map_err(|e| type_error(format!("{url}: {e}")))?;
    let stored = match &scope {
        Some(_) => with_state(|s| {
            s.registrations
                .as_ref()
                .and_then(|r| r.stored_source(url.as_str()).map(str::to_owned))
        }),
        None => None,
    };
    let (status, text) = match stored {
        Some(text) => (200, text),
        None => {
            let network = with_state(|s| s.browser.network.clone());
            let response = network.get_blocking(&url).map_err(type_error)?;
            let (text, _) = encoding_rs::UTF_8.decode_with_bom_removal(&response.body);
            (response.status, text.into_owned())
        }
    };
    // Kept (again, for a resumed worker: its registration was written anew) with the
    // registration.
    if let Some(scope) = &scope
        && (200..300).contains(&status)
        && let Some(Err(e)) = with_state(|s| {
            s.registrations
                .as_ref()
                .map(|r| r.keep_source(scope, url.as_str(), &text))
        })
    {
        return Err(type_error(e));
    }
    JsValue::from_json(&json!({"status": status, "text": text}), context)
}

fn bytes_of(value: &JsValue) -> JsResult<Vec<u8>> {
    let object = value
        .as_object()
        .ok_or_else(|| type_error("not an ArrayBuffer"))?;
    let buffer = JsArrayBuffer::from_object(object.clone())?;
    Ok(buffer.data().map(|d| d.to_vec()).unwrap_or_default())
}

fn array_buffer(bytes: Vec<u8>, context: &mut Context) -> JsResult<JsValue> {
    let array = JsUint8Array::from_iter(bytes, context)?;
    array.buffer(context)
}

/// `native.utf8Decode(buffer)`: UTF-8 decode (a BOM removed, errors replaced).
fn utf8_decode(_: &JsValue, args: &[JsValue], _: &mut Context) -> JsResult<JsValue> {
    let bytes = bytes_of(args.get_or_undefined(0))?;
    let (text, _) = encoding_rs::UTF_8.decode_with_bom_removal(&bytes);
    Ok(JsValue::from(js_string!(text.as_ref())))
}

/// `native.utf8Encode(string)`: an ArrayBuffer of the string's UTF-8 (lone surrogates
/// replaced).
fn utf8_encode(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let s = args.get_or_undefined(0).to_string(context)?;
    let text = String::from_utf16_lossy(&s.to_vec());
    array_buffer(text.into_bytes(), context)
}

/// `native.report({name, status, message})` (a subtest) or `{done: true, status, message}`.
fn report(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let v = json_arg(args, 0, context)?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let entry = Report {
        name: field("name"),
        status: field("status"),
        message: field("message"),
    };
    let done = v.get("done").and_then(Value::as_bool).unwrap_or(false);
    with_state(|s| {
        if done {
            s.done = true;
            s.harness = Some(entry);
        } else {
            s.reports.push(entry);
        }
    });
    Ok(JsValue::undefined())
}

/// `native.setCallback(env, callback)`: where environment `env` receives the browser side's
/// messages.
fn set_callback(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let env = args.get_or_undefined(0).to_number(context)? as EnvId;
    let callback = callback_arg(args, 1)?;
    with_state(|s| {
        if let Some(e) = s.envs.get_mut(&env) {
            e.callback = Some(callback);
        }
    });
    Ok(JsValue::undefined())
}

/// `native.settings(name, value)`: `permission` (`test_driver.set_permission`), `csp` (the
/// page's `<meta http-equiv=Content-Security-Policy>`), `active` (`[scope, bool]`: whether
/// a registration has an active worker), `unregister` (scope).
fn settings(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let name = string_arg(args, 0, context)?;
    let value = json_arg(args, 1, context)?;
    match name.as_str() {
        "permission" => {
            let state = match value.as_str() {
                Some("granted") => PermissionState::Granted,
                Some("denied") => PermissionState::Denied,
                _ => PermissionState::Prompt,
            };
            with_state(|s| s.browser.permission.set(state));
        }
        "csp" => {
            if let Some(p) = value.as_str() {
                with_state(|s| s.page_csp.push(p.to_owned()));
            }
        }
        "active" => {
            let scope = value[0].as_str().unwrap_or_default();
            let active = value[1].as_bool().unwrap_or(false);
            let id = registration_id(scope)?;
            with_state(|s| {
                s.browser.bridge.set_active_worker(&id, active);
                if active {
                    // A service worker is active: the fetches restored from the store resume
                    // (and those that settled before fire their event again).
                    s.browser.engine.resume_restored(None);
                }
            });
        }
        "unregister" => {
            let scope = value.as_str().unwrap_or_default();
            let id = registration_id(scope)?;
            if let Some(Err(e)) =
                with_state(|s| s.registrations.as_ref().map(|r| r.unregister(scope)))
            {
                return Err(type_error(e));
            }
            with_state(|s| {
                let engine = s.browser.engine.clone();
                s.browser.executor.spawn_boxed(Box::pin(async move {
                    engine.unregister(&id).await;
                }));
            });
        }
        other => return Err(type_error(format!("unknown setting {other}"))),
    }
    Ok(JsValue::undefined())
}

fn registration_id(scope: &str) -> JsResult<ServiceWorkerRegistrationId> {
    let url = Url::parse(scope).map_err(|e| type_error(format!("{scope}: {e}")))?;
    Ok(ServiceWorkerRegistrationId::for_scope(&url))
}

/// `native.createWorker(scriptURL, scope, kind)`: a new worker global (a realm with the
/// bindings, connected to the engine): a service worker global of the registration of
/// `scope`, or, when `kind` is `dedicatedworker` or `sharedworker`, a worker global (`scope`
/// unused); returns `{env, global}`. Its script is not run yet.
fn create_worker(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let script = string_arg(args, 0, context)?;
    let scope = string_arg(args, 1, context)?;
    let script_url = Url::parse(&script).map_err(|e| type_error(e.to_string()))?;
    let kind = match args.get(2) {
        Some(k) if !k.is_undefined() => k.to_string(context)?.to_std_string_escaped(),
        _ => "serviceworker".to_owned(),
    };
    let worker_kind = crate::workers::WORKER_KINDS.contains(&kind.as_str());
    let id = if worker_kind {
        None
    } else {
        Some(registration_id(&scope)?)
    };
    // An app on a store keeps the registration with its fetches (see crate::registrations).
    if !worker_kind
        && let Some(Err(e)) = with_state(|s| {
            s.registrations
                .as_ref()
                .map(|r| r.register(&scope, &script))
        })
    {
        return Err(type_error(e));
    }
    let realm = context.create_realm()?;
    let env = with_state(|s| {
        s.next_env += 1;
        let env = s.next_env;
        s.envs.insert(
            env,
            Env {
                realm: realm.clone(),
                url: script_url.clone(),
                callback: None,
            },
        );
        if let Some(id) = &id {
            s.browser.worker_connection(env, &script_url, id);
        } else {
            crate::workers::worker_connection(&s.browser, env, &script_url);
        }
        env
    });
    let old = context.enter_realm(realm.clone());
    let native = native_object(context);
    let result = bootstrap_realm(context, native, env, &kind);
    let global = context.global_object();
    context.enter_realm(old);
    result.map_err(type_error)?;
    let out = ObjectInitializer::new(context)
        .property(js_string!("env"), env, Attribute::all())
        .property(js_string!("global"), global, Attribute::all())
        .build();
    Ok(out.into())
}

fn mode_of(s: &str) -> Option<RequestMode> {
    Some(match s {
        "same-origin" => RequestMode::SameOrigin,
        "cors" => RequestMode::Cors,
        "no-cors" => RequestMode::NoCors,
        "navigate" => RequestMode::Navigate,
        _ => return None,
    })
}

fn mode_str(m: RequestMode) -> &'static str {
    match m {
        RequestMode::SameOrigin => "same-origin",
        RequestMode::Cors => "cors",
        RequestMode::NoCors => "no-cors",
        RequestMode::Navigate => "navigate",
    }
}

fn credentials_of(s: &str) -> Option<CredentialsMode> {
    Some(match s {
        "omit" => CredentialsMode::Omit,
        "same-origin" => CredentialsMode::SameOrigin,
        "include" => CredentialsMode::Include,
        _ => return None,
    })
}

fn credentials_str(c: CredentialsMode) -> &'static str {
    match c {
        CredentialsMode::Omit => "omit",
        CredentialsMode::SameOrigin => "same-origin",
        CredentialsMode::Include => "include",
    }
}

fn redirect_of(s: &str) -> Option<RedirectMode> {
    Some(match s {
        "follow" => RedirectMode::Follow,
        "error" => RedirectMode::Error,
        "manual" => RedirectMode::Manual,
        _ => return None,
    })
}

fn redirect_str(r: RedirectMode) -> &'static str {
    match r {
        RedirectMode::Follow => "follow",
        RedirectMode::Error => "error",
        RedirectMode::Manual => "manual",
    }
}

fn cache_of(s: &str) -> Option<CacheMode> {
    Some(match s {
        "default" => CacheMode::Default,
        "no-store" => CacheMode::NoStore,
        "reload" => CacheMode::Reload,
        "no-cache" => CacheMode::NoCache,
        "force-cache" => CacheMode::ForceCache,
        "only-if-cached" => CacheMode::OnlyIfCached,
        _ => return None,
    })
}

fn cache_str(c: CacheMode) -> &'static str {
    match c {
        CacheMode::Default => "default",
        CacheMode::NoStore => "no-store",
        CacheMode::Reload => "reload",
        CacheMode::NoCache => "no-cache",
        CacheMode::ForceCache => "force-cache",
        CacheMode::OnlyIfCached => "only-if-cached",
    }
}

/// A request as script sees it.
pub fn request_json(r: &Request) -> Value {
    json!({
        "url": r.url.as_str(),
        "method": r.method,
        "headers": r.headers.iter().map(|(n, v)| vec![n.to_owned(), String::from_utf8_lossy(v).into_owned()]).collect::<Vec<_>>(),
        "mode": mode_str(r.mode),
        "credentials": credentials_str(r.credentials),
        "redirect": redirect_str(r.redirect),
        "cache": cache_str(r.cache),
        "integrity": r.integrity,
        "referrer": r.referrer.as_ref().map(|u| u.as_str().to_owned()).unwrap_or_else(|| "about:client".into()),
    })
}

/// A JS request (`{url, method, headers, mode, credentials, ...}`, its body in `buffers`)
/// through the `Request` constructor (run in the caller's realm by the bindings; here again,
/// so that the engine gets its own checked copy).
fn request_info(v: &Value, buffers: &[Vec<u8>], base: &Url) -> Result<RequestInfo, DomError> {
    let url = v["url"].as_str().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = v["headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or_default().to_owned(),
                        p[1].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let body = v["body"]
        .as_u64()
        .and_then(|i| buffers.get(i as usize))
        .map(|b| RequestBody::Bytes(bytes::Bytes::from(b.clone())));
    let init = RequestInit {
        method: v["method"].as_str().map(str::to_owned),
        headers: Some(headers),
        body,
        content_type: None,
        mode: v["mode"].as_str().and_then(mode_of),
        credentials: v["credentials"].as_str().and_then(credentials_of),
        redirect: v["redirect"].as_str().and_then(redirect_of),
        cache: v["cache"].as_str().and_then(cache_of),
        integrity: v["integrity"].as_str().map(str::to_owned),
    };
    let object = construct_request(RequestInfo::Url(url), init, base)?;
    Ok(RequestInfo::Request(Box::new(object)))
}

fn ui_options(v: &Value) -> (Option<String>, Option<Vec<ImageResource>>) {
    let title = v["title"].as_str().map(str::to_owned);
    let icons = v["icons"].as_array().map(|a| {
        a.iter()
            .map(|i| ImageResource {
                src: i["src"].as_str().unwrap_or_default().to_owned(),
                sizes: i["sizes"].as_str().map(str::to_owned),
                r#type: i["type"].as_str().map(str::to_owned),
                label: i["label"].as_str().map(str::to_owned),
            })
            .collect()
    });
    (title, icons)
}

fn response_json(handle: u64, head: &ResponseHead) -> Value {
    json!({
        "response": handle,
        "status": head.status,
        "statusText": head.status_text,
        "headers": head.headers.iter().map(|(n, v)| vec![n.to_owned(), String::from_utf8_lossy(v).into_owned()]).collect::<Vec<_>>(),
        "url": head.url_list.last().map(|u| u.as_str().to_owned()).unwrap_or_default(),
        "urlList": head.url_list.iter().map(|u| u.as_str().to_owned()).collect::<Vec<_>>(),
        "type": head.response_type.as_str(),
    })
}

fn records_json(env: EnvId, records: Vec<BackgroundFetchRecord>) -> Value {
    let _ = env;
    with_state(|s| {
        let mut h = s.browser.handles.lock().unwrap();
        Value::Array(
            records
                .into_iter()
                .map(|r| {
                    let n = h.fresh();
                    let v = json!({"record": n, "request": request_json(r.request()), "hasBody": r.request().body_length.unwrap_or(0) > 0});
                    h.records.insert(n, r);
                    v
                })
                .collect(),
        )
    })
}

/// `native.op(name, env, args, ...buffers)`: an engine operation; returns a promise.
fn op(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let name = string_arg(args, 0, context)?;
    let env = args.get_or_undefined(1).to_number(context)? as EnvId;
    let v = json_arg(args, 2, context)?;
    let buffers: Vec<Vec<u8>> = args.iter().skip(3).map(bytes_of).collect::<JsResult<_>>()?;
    let (promise, resolvers) = JsPromise::new_pending(context);
    let op = with_state(|s| {
        s.next_op += 1;
        s.ops.insert(s.next_op, resolvers);
        s.next_op
    });
    let (browser, base, csp) = with_state(|s| {
        let base = s.envs.get(&env).map(|e| e.url.clone());
        (s.browser.clone(), base, s.page_csp.clone())
    });
    let base = base.ok_or_else(|| type_error("no such environment"))?;
    let conn = if env == 0 {
        browser.page_connection(0, &base, csp.clone())
    } else {
        browser
            .connections
            .lock()
            .unwrap()
            .get(&env)
            .cloned()
            .ok_or_else(|| type_error("the service worker's connection is closed"))?
    };
    let reg_of = |uid: &Value| {
        let uid = uid.as_str().unwrap_or_default().to_owned();
        browser
            .handles
            .lock()
            .unwrap()
            .registrations
            .get(&(env, uid))
            .cloned()
    };
    let b = browser.clone();
    match name.as_str() {
        "fetch" => {
            let id = registration_id(v["scope"].as_str().unwrap_or_default())?;
            let manager = conn.background_fetch_with(&id, v["active"].as_bool().unwrap_or(false));
            let requests: Result<Vec<RequestInfo>, DomError> = v["requests"]
                .as_array()
                .map(|a| a.iter().map(|r| request_info(r, &buffers, &base)).collect())
                .unwrap_or_else(|| Ok(Vec::new()));
            let (title, icons) = ui_options(&v["options"]);
            let options = BackgroundFetchOptions {
                icons,
                title,
                download_total: v["options"]["downloadTotal"].as_f64().unwrap_or(0.0) as u64,
                ..BackgroundFetchOptions::default()
            };
            let fetch_id = v["id"].as_str().unwrap_or_default().to_owned();
            let events = browser.events.clone();
            browser.settle_with(op, async move {
                let registration = match manager.fetch(&fetch_id, requests?, options).await {
                    Ok(r) => r,
                    Err(e) => {
                        // The embedder's log: an app run's exit code says a fetch() rejected.
                        events
                            .lock()
                            .unwrap()
                            .push(format!("rejected {fetch_id}: {}", e.message));
                        return Err(e);
                    }
                };
                Ok((b.keep_registration(env, registration), None))
            });
        }
        "get" => {
            let id = registration_id(v["scope"].as_str().unwrap_or_default())?;
            let manager = conn.background_fetch_with(&id, true);
            let fetch_id = v["id"].as_str().unwrap_or_default().to_owned();
            browser.settle_with(op, async move {
                Ok((
                    match manager.get(&fetch_id).await? {
                        Some(r) => b.keep_registration(env, r),
                        None => Value::Null,
                    },
                    None,
                ))
            });
        }
        "getIds" => {
            let id = registration_id(v["scope"].as_str().unwrap_or_default())?;
            let manager = conn.background_fetch_with(&id, true);
            browser.settle_with(
                op,
                async move { Ok((json!(manager.get_ids().await?), None)) },
            );
        }
        "abort" => {
            let reg = reg_of(&v["uid"]).ok_or_else(|| type_error("unknown registration"))?;
            browser.settle_with(op, async move { Ok((json!(reg.abort().await?), None)) });
        }
        "matchAll" => {
            let reg = reg_of(&v["uid"]).ok_or_else(|| type_error("unknown registration"))?;
            let request = if v["request"].is_null() {
                None
            } else {
                Some(request_info(&v["request"], &buffers, &base))
            };
            let options = CacheQueryOptions {
                ignore_search: v["options"]["ignoreSearch"].as_bool().unwrap_or(false),
                ignore_method: v["options"]["ignoreMethod"].as_bool().unwrap_or(false),
                ignore_vary: v["options"]["ignoreVary"].as_bool().unwrap_or(false),
            };
            browser.settle_with(op, async move {
                let request = request.transpose()?;
                let records = reg.match_all(request, options).await?;
                Ok((records_json(env, records), None))
            });
        }
        "responseReady" => {
            let record = handle_of(&v["record"], |h, n| h.records.get(&n).cloned())?;
            browser.settle_with(op, async move {
                let response: Response = record.response_ready().await?;
                let n = with_handles(&b, |h| {
                    let n = h.fresh();
                    h.responses.insert(n, response.clone());
                    n
                });
                Ok((response_json(n, response.head()), None))
            });
        }
        "body" => {
            let response = handle_of(&v["response"], |h, n| h.responses.remove(&n))?;
            browser.settle_with(op, async move {
                let bytes = response.bytes().await?;
                Ok((Value::Null, Some(bytes)))
            });
        }
        "bodyChunk" => {
            // The next chunk of a response body as it downloads (null at the end).
            let n = v["response"]
                .as_u64()
                .ok_or_else(|| type_error("not a handle"))?;
            let stream = with_handles(&browser, |h| {
                if let Some(s) = h.streams.get(&n) {
                    return Some(s.clone());
                }
                let response = h.responses.remove(&n)?;
                let s = std::sync::Arc::new(futures::lock::Mutex::new(response.into_body()));
                h.streams.insert(n, s.clone());
                Some(s)
            })
            .ok_or_else(|| type_error("an object that is gone"))?;
            browser.settle_with(op, async move {
                let next = stream.lock().await.next().await;
                match next {
                    Some(chunk) => Ok((Value::Null, Some(chunk?.to_vec()))),
                    None => {
                        with_handles(&b, |h| h.streams.remove(&n));
                        Ok((json!({"end": true}), None))
                    }
                }
            });
        }
        "requestBody" => {
            let record = handle_of(&v["record"], |h, n| h.records.get(&n).cloned())?;
            browser.settle_with(op, async move {
                let mut out = Vec::new();
                if let Some(mut stream) = record.request_body() {
                    while let Some(chunk) = stream.next().await {
                        out.extend_from_slice(&chunk?);
                    }
                }
                Ok((Value::Null, Some(out)))
            });
        }
        "updateUI" => {
            let event = handle_of(&v["event"], |h, n| h.events.get(&n).map(|e| e.0.clone()))?;
            let (title, icons) = ui_options(&v["options"]);
            browser.settle_with(op, async move {
                event
                    .update_ui(BackgroundFetchUiOptions { icons, title })
                    .await?;
                Ok((Value::Null, None))
            });
        }
        "pageFetch" => {
            // https://fetch.spec.whatwg.org/#fetch-method, for the page: the request (through
            // the Request constructor), the policy checks of main fetch (bad port, mixed
            // content, CSP), then the network with the CORS protocol.
            let client = ClientSnapshot {
                origin: base.origin().ascii_serialization(),
                base_url: base.clone(),
                secure_context: true,
                policy: PolicyContainer {
                    csp: csp.clone(),
                    referrer_policy: String::new(),
                    csp_report_only: Vec::new(),
                },
                embedder: None,
            };
            let prepared = request_info(&v, &buffers, &base).and_then(|info| {
                let RequestInfo::Request(object) = info else {
                    return Err(DomError::type_error("not a request"));
                };
                let RequestObject { request, body } = *object;
                if let Err(reason) =
                    background_fetch::fetch::policy::check_request_url(&client, &request.url)
                        .and_then(|()| SimpleCsp.check(&client, &request))
                {
                    return Err(DomError::type_error(format!(
                        "Failed to fetch: blocked ({reason:?})"
                    )));
                }
                let body = match body {
                    Some(RequestBody::Bytes(b)) => Some(RequestBodySource::once(
                        b.len() as u64,
                        futures::stream::iter([Ok(b)]).boxed(),
                    )),
                    Some(RequestBody::Stream(_)) => {
                        return Err(DomError::type_error("FIXME: streamed page fetch() bodies"));
                    }
                    None => None,
                };
                Ok((request, body))
            });
            let page_network: Arc<dyn NetworkHost> = browser.network.clone();
            let network: Arc<dyn NetworkHost> = if browser.network.needs_cors() {
                Arc::new(CorsNetwork::new(page_network))
            } else {
                page_network
            };
            browser.settle_with(op, async move {
                let (request, body) = prepared?;
                let url = request.url.clone();
                let mut events = network.fetch(NetworkRequest {
                    request,
                    body,
                    range_start: None,
                    validators: Validators::default(),
                    client,
                    fetch: FetchUid(0),
                    record: 0,
                });
                let mut head = None;
                let mut bytes = Vec::new();
                while let Some(event) = events.next().await {
                    match event {
                        NetworkEvent::Response(h) => head = Some(h),
                        NetworkEvent::Data(d) => bytes.extend_from_slice(&d),
                        NetworkEvent::UploadProgress(_) => {}
                        NetworkEvent::Error(e) => {
                            return Err(DomError::type_error(format!("Failed to fetch: {e:?}")));
                        }
                    }
                }
                let head = head.ok_or_else(|| DomError::type_error("Failed to fetch"))?;
                let mut v = response_json(0, &head);
                v["url"] = json!(head.url_list.last().unwrap_or(&url).as_str());
                Ok((v, Some(bytes)))
            });
        }
        other => return Err(type_error(format!("unknown operation {other}"))),
    }
    Ok(promise.into())
}

fn with_handles<R>(
    browser: &crate::engine_host::BrowserSide,
    f: impl FnOnce(&mut crate::engine_host::Handles) -> R,
) -> R {
    f(&mut browser.handles.lock().unwrap())
}

fn handle_of<T>(
    v: &Value,
    f: impl FnOnce(&mut crate::engine_host::Handles, u64) -> Option<T>,
) -> JsResult<T> {
    let n = v.as_u64().ok_or_else(|| type_error("not a handle"))?;
    with_state(|s| f(&mut s.browser.handles.lock().unwrap(), n))
        .ok_or_else(|| type_error("an object that is gone"))
}

/// `native.sync(name, env, args)`: `regData` (a registration's current values), `eventDone`
/// (a functional event is no longer active: `{event, outcome}`), `release` (record objects).
fn sync(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let name = string_arg(args, 0, context)?;
    let env = args.get_or_undefined(1).to_number(context)? as EnvId;
    let v = json_arg(args, 2, context)?;
    let out = match name.as_str() {
        "cacheNames" => with_state(|s| json!(s.caches.names())),
        // A failed write of the caches comes back as {storageError} (the bindings reject).
        "cacheOpen" => match with_state(|s| s.caches.open(v.as_str().unwrap_or_default())) {
            Ok(()) => Value::Null,
            Err(e) => json!({ "storageError": e }),
        },
        "cacheDelete" => match with_state(|s| s.caches.delete(v.as_str().unwrap_or_default())) {
            Ok(existed) => json!(existed),
            Err(e) => json!({ "storageError": e }),
        },
        "cacheEntries" => with_state(|s| {
            s.caches
                .entries(v.as_str().unwrap_or_default())
                .map(Value::Array)
                .unwrap_or(Value::Null)
        }),
        "cacheWrite" => {
            let entries = v["entries"].as_array().cloned().unwrap_or_default();
            match with_state(|s| {
                s.caches
                    .write(v["name"].as_str().unwrap_or_default(), entries)
            }) {
                Ok(()) => Value::Null,
                Err(e) => json!({ "storageError": e }),
            }
        }
        "cacheAddBody" => {
            let body = bytes_of(args.get_or_undefined(3))?;
            with_state(|s| json!(s.caches.add_body(body)))
        }
        "cacheBody" => {
            let body = with_state(|s| s.caches.body(v.as_u64().unwrap_or_default()))
                .ok_or_else(|| type_error("the cached body is gone"))?;
            return array_buffer(body, context);
        }
        "regData" => {
            let uid = v.as_str().unwrap_or_default().to_owned();
            with_state(|s| {
                let h = s.browser.handles.lock().unwrap();
                h.registrations
                    .get(&(env, uid.clone()))
                    .map(|r| registration_json(&uid, &r.data()))
                    .unwrap_or(Value::Null)
            })
        }
        "eventDone" => {
            let n = v["event"].as_u64().unwrap_or_default();
            let outcome = match v["outcome"].as_str() {
                Some("rejected") => DispatchOutcome::Failed("a waitUntil promise rejected".into()),
                _ => DispatchOutcome::Completed,
            };
            let sender = with_state(|s| {
                let mut h = s.browser.handles.lock().unwrap();
                h.events.get_mut(&n).and_then(|e| e.1.take())
            });
            if let Some(tx) = sender {
                let _ = tx.send(outcome);
            }
            Value::Null
        }
        "baseUrl" => with_state(|s| {
            s.envs
                .get(&env)
                .map(|e| Value::String(e.url.as_str().to_owned()))
                .unwrap_or(Value::Null)
        }),
        "parseUrl" => {
            let input = v["input"].as_str().unwrap_or_default();
            let parsed = match v["base"].as_str() {
                Some(base) => Url::parse(base).ok().and_then(|b| b.join(input).ok()),
                None => Url::parse(input).ok(),
            };
            parsed.map(|u| url_json(&u)).unwrap_or(Value::Null)
        }
        other => return Err(type_error(format!("unknown operation {other}"))),
    };
    JsValue::from_json(&out, context)
}

/// <https://url.spec.whatwg.org/#url-class>: a URL's components.
fn url_json(u: &Url) -> Value {
    let port = u.port().map(|p| p.to_string()).unwrap_or_default();
    let hostname = u.host_str().unwrap_or_default().to_owned();
    let host = if port.is_empty() {
        hostname.clone()
    } else {
        format!("{hostname}:{port}")
    };
    let origin = u.origin().ascii_serialization();
    json!({
        "href": u.as_str(),
        "origin": origin,
        "protocol": format!("{}:", u.scheme()),
        "username": u.username(),
        "password": u.password().unwrap_or_default(),
        "host": host,
        "hostname": hostname,
        "port": port,
        "pathname": u.path(),
        "search": u.query().filter(|q| !q.is_empty()).map(|q| format!("?{q}")).unwrap_or_default(),
        "hash": u.fragment().filter(|f| !f.is_empty()).map(|f| format!("#{f}")).unwrap_or_default(),
    })
}

/// A settled operation's value in script: JSON, or an ArrayBuffer when bytes came with it.
pub fn json_to_js(
    value: &Value,
    bytes: Option<Vec<u8>>,
    context: &mut Context,
) -> JsResult<JsValue> {
    match bytes {
        Some(b) if value.is_null() => array_buffer(b, context),
        Some(b) => {
            let v = JsValue::from_json(value, context)?;
            let buffer = array_buffer(b, context)?;
            if let Some(o) = v.as_object() {
                o.set(js_string!("body"), buffer, false, context)?;
            }
            Ok(v)
        }
        None => JsValue::from_json(value, context),
    }
}

/// An engine exception as data for the bindings (`{name, message, quota, requested}`), which
/// create the exception object in the caller's realm.
pub fn dom_error_to_js(e: &DomError, context: &mut Context) -> JsResult<JsValue> {
    let v = json!({
        "__domError": true,
        "name": e.kind.name(),
        "message": e.message,
        "quota": e.quota,
        "requested": e.requested,
        "isTypeError": e.kind == DomErrorKind::TypeError,
    });
    JsValue::from_json(&v, context)
}

/// An exception no script caught: reported to the page (its `error` event), as HTML's
/// "report an exception" does.
pub fn report_exception(context: &mut Context, error: JsError) {
    let message = error.to_string();
    let verbose = with_state(|s| s.verbose);
    if verbose {
        eprintln!("uncaught: {message}");
    }
    let callback = with_state(|s| s.envs.get(&0).and_then(|e| e.callback.clone()));
    if let Some(cb) = callback
        && let Ok(v) = JsValue::from_json(&json!({"type": "error", "message": message}), context)
    {
        let _ = cb.call(&JsValue::undefined(), &[v], context);
    }
}
