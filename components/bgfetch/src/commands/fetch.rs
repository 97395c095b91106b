//! `bgfetch fetch`: `BackgroundFetchManager.fetch()`, then run until the fetch settles.

use crate::commands::running::{outcome, start_running};
use crate::delivery::{FetchData, OutDelivery, prepare_out_dir, remove_journal};
use crate::exit;
use crate::output::Reporter;
use crate::signals::Signals;
use background_fetch::{
    BackgroundFetchOptions, DomError, ImageResource, RequestBody, RequestInfo, RequestInit,
    construct_request,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use url::Url;

/// `fetch`'s arguments.
pub struct FetchArgs {
    /// The id.
    pub id: String,
    /// URLs to download.
    pub urls: Vec<String>,
    /// `--title`
    pub title: Option<String>,
    /// `--download-total`
    pub download_total: Option<u64>,
    /// `--icon`s
    pub icons: Vec<String>,
    /// `--origin`
    pub origin: Option<String>,
    /// `--upload METHOD URL FILE`, flattened.
    pub uploads: Vec<String>,
    /// `--out`
    pub out: Option<PathBuf>,
    /// `--detach`
    pub detach: bool,
}

/// A file's bytes as a request body stream.
async fn file_body(path: &Path) -> Result<RequestBody, String> {
    use futures::TryStreamExt;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
        .map_err(|e| DomError::type_error(e.to_string()));
    Ok(RequestBody::Stream(Box::pin(stream)))
}

/// A URL argument without `--origin` must be an absolute http(s) URL; the message says what is
/// wrong with it, naming it.
pub fn check_url_argument(arg: &str) -> Result<Url, String> {
    match Url::parse(arg) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
        Err(url::ParseError::RelativeUrlWithoutBase) => Err(format!(
            "{arg:?} is not an absolute URL: write https://{arg} (or http://); a URL relative to \
             the page needs --origin"
        )),
        Ok(u) if !arg.contains("://") => Err(format!(
            "{arg:?} is not an http(s) URL (its scheme reads as {:?}): write https://{arg} (or http://)",
            u.scheme()
        )),
        Ok(u) => Err(format!(
            "{arg:?} is not an http(s) URL (scheme {:?})",
            u.scheme()
        )),
        Err(e) => Err(format!("{arg:?} is not a valid URL: {e}")),
    }
}

/// Runs `fetch`.
pub async fn fetch(path: &Path, reporter: Arc<Reporter>, a: FetchArgs) -> i32 {
    // The registration's origin: --origin, else the first URL's; without --origin every URL is
    // absolute.
    let origin = match &a.origin {
        Some(o) => match Url::parse(o) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                eprintln!("error: --origin {o:?} is not an http(s) origin");
                return exit::ERROR;
            }
        },
        None => {
            let mut first = None;
            let upload_urls = a.uploads.iter().skip(1).step_by(3);
            for arg in a.urls.iter().chain(upload_urls) {
                match check_url_argument(arg) {
                    Ok(u) => {
                        first.get_or_insert(u);
                    }
                    Err(e) => {
                        eprintln!("TypeError: {e}");
                        return exit::REJECTED;
                    }
                }
            }
            // No URL at all: fetch() rejects the empty list.
            first.unwrap_or_else(|| Url::parse("http://localhost/").expect("static URL"))
        }
    };
    let out = match &a.out {
        Some(d) => match prepare_out_dir(d) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ERROR;
            }
        },
        None => None,
    };
    let mut upload_bodies = Vec::new();
    for u in a.uploads.chunks(3) {
        match file_body(Path::new(&u[2])).await {
            Ok(b) => upload_bodies.push((u[0].clone(), u[1].clone(), b)),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ERROR;
            }
        }
    }
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen for signals: {e}");
            return exit::ERROR;
        }
    };
    let delivery = OutDelivery::new(reporter.clone(), path);
    let (app, _server) = match start_running(path, reporter, delivery.clone()).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (manager, registration) = app.manager(&origin);
    let base = Url::parse(&registration.scope).expect("a scope URL");
    let mut requests: Vec<RequestInfo> = a
        .urls
        .iter()
        .map(|u| RequestInfo::from(u.as_str()))
        .collect();
    for (method, url, body) in upload_bodies {
        let init = RequestInit {
            method: Some(method),
            body: Some(body),
            ..Default::default()
        };
        match construct_request(url.as_str().into(), init, &base) {
            Ok(r) => requests.push(r.into()),
            Err(e) => {
                eprintln!("{e}");
                app.close().await;
                return exit::REJECTED;
            }
        }
    }
    let data = FetchData::new(out);
    let options = BackgroundFetchOptions {
        title: a.title.clone(),
        icons: (!a.icons.is_empty()).then(|| {
            a.icons
                .iter()
                .map(|src| ImageResource {
                    src: src.clone(),
                    ..Default::default()
                })
                .collect()
        }),
        download_total: a.download_total.unwrap_or(0),
        embedder_data: Some(data.to_json()),
    };
    if a.detach {
        // Registered only: nothing is downloaded in this process, which exits at once (while
        // offline the engine starts no record); `bgfetch run` does the work.
        app.engine.set_online(false);
    }
    let reg = match manager.fetch(&a.id, requests, options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            app.close().await;
            return exit::REJECTED;
        }
    };
    let uid = reg.uid();
    if a.detach {
        app.close().await;
        app.reporter.note(&format!(
            "{} is registered; `bgfetch run` continues it",
            a.id
        ));
        return exit::SUCCESS;
    }
    delivery.start(&reg, Some(&data.to_json()));
    let settled = tokio::select! {
        s = app.wait_settled(uid) => s,
        stop = signals.stopped() => {
            app.engine.pause(uid).await;
            app.close().await;
            app.reporter.error(&format!(
                "{}: {} is paused in the store; `bgfetch run` continues it",
                stop.describe(),
                a.id
            ));
            return stop.exit_code();
        }
    };
    let code = outcome(&app, &a.id, &settled);
    if settled.handler_error.is_none() {
        // The event is over: wait until the store has dropped the records (a reader of a
        // matched body may hold them a little longer), unless a signal says stop.
        tokio::select! {
            _ = app.engine.finished(uid) => {
                remove_journal(path, &data.token(uid));
            }
            stop = signals.stopped() => {
                app.close().await;
                app.reporter.error(&format!(
                    "{}: {} had settled; its records are dropped from the store at the next `bgfetch run`",
                    stop.describe(),
                    a.id
                ));
                return if code == exit::SUCCESS { stop.exit_code() } else { code };
            }
        }
    }
    app.close().await;
    code
}
