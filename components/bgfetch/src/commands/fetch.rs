//! `bgfetch fetch`: `BackgroundFetchManager.fetch()`, then run until the fetch settles.

use crate::commands::running::{outcome, start_running};
use crate::delivery::{FetchData, OutDelivery, prepare_out_dir, remove_journal};
use crate::exit;
use crate::network::{NetArgs, parse_rate};
use crate::output::Reporter;
use crate::signals::Signals;
use background_fetch::{
    BackgroundFetchOptions, DomError, ImageResource, OperationError, RequestBody, RequestInfo,
    RequestInit, construct_request,
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
    /// `-i/--input-file`
    pub input_file: Option<PathBuf>,
    /// `-H/--header`s
    pub headers: Vec<String>,
    /// `--integrity URL METADATA`, flattened.
    pub integrity: Vec<String>,
    /// `--limit-rate`
    pub limit_rate: Option<String>,
    /// The network options.
    pub net: NetArgs,
}

/// One URL to fetch, with what the input file or `--integrity` said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL, as given.
    pub url: String,
    /// The file name under `--out`.
    pub name: Option<String>,
    /// Subresource Integrity metadata.
    pub integrity: Option<String>,
}

/// Whether `s` looks like Subresource Integrity metadata this program accepts
/// (`sha256-`, `sha384-` or `sha512-` and base64), possibly several separated by spaces.
pub fn check_integrity(s: &str) -> Result<(), String> {
    let ok = !s.trim().is_empty()
        && s.split_ascii_whitespace().all(|m| {
            let m = m.split('?').next().unwrap_or("");
            match m.split_once('-') {
                Some(("sha256" | "sha384" | "sha512", b64)) => {
                    !b64.is_empty()
                        && b64.bytes().all(|c| {
                            c.is_ascii_alphanumeric()
                                || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_')
                        })
                }
                _ => false,
            }
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not integrity metadata: write sha256-BASE64 (or sha384-, sha512-), as in \
             <script integrity>"
        ))
    }
}

/// A file name under `--out` given in an input file: one plain name.
fn check_name(name: &str) -> Result<(), String> {
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') || name.len() > 255
    {
        return Err(format!(
            "{name:?} is not a file name (one name of at most 255 bytes, without /)"
        ));
    }
    Ok(())
}

/// Reads `-i FILE` ("-": `stdin`): `URL [NAME] [INTEGRITY]` per line; blank lines and `#`
/// comments are skipped. An error names the line.
pub fn parse_input(text: &str, source: &str) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: String| format!("{source} line {}: {e}", n + 1);
        let mut words = line.split_ascii_whitespace();
        let url = words.next().expect("a non-empty line").to_owned();
        let mut t = Target {
            url,
            name: None,
            integrity: None,
        };
        for w in words {
            if w.starts_with("sha256-") || w.starts_with("sha384-") || w.starts_with("sha512-") {
                if t.integrity.is_some() {
                    return Err(at("two integrity values".into()));
                }
                check_integrity(w).map_err(at)?;
                t.integrity = Some(w.to_owned());
            } else if t.name.is_none() && t.integrity.is_none() {
                check_name(w).map_err(at)?;
                t.name = Some(w.to_owned());
            } else {
                return Err(at(format!(
                    "{w:?} is unexpected: a line is URL [NAME] [INTEGRITY]"
                )));
            }
        }
        targets.push(t);
    }
    Ok(targets)
}

/// Parses `-H 'Name: value'` as curl does; the name must be a header a page may set (the
/// `Request` constructor's forbidden-header rules, which a page's script would meet silently,
/// are a clear error here).
pub fn parse_header(h: &str) -> Result<(String, String), String> {
    let Some((name, value)) = h.split_once(':') else {
        return Err(format!("-H {h:?}: write 'Name: value'"));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("-H {h:?}: the header has no name"));
    }
    if background_fetch::is_forbidden_request_header(name) {
        return Err(format!(
            "-H {h:?}: {name} is a forbidden request header (the Request constructor does not \
             let a page set it; the browser does)"
        ));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
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

/// Reads `-i FILE` ("-": standard input).
fn read_input(file: &Path) -> Result<Vec<Target>, String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("--input-file -: cannot read standard input: {e}"))?;
        return parse_input(&text, "standard input");
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("--input-file {}: {e}", file.display()))?;
    parse_input(&text, &file.display().to_string())
}

/// Runs `fetch`.
pub async fn fetch(path: &Path, reporter: Arc<Reporter>, mut a: FetchArgs) -> i32 {
    // Options first: bad input is an error before anything is registered.
    let net = match a.net.setup(|k| std::env::var(k).ok()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let limit_rate = match a.limit_rate.as_deref().map(parse_rate).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --limit-rate {e}");
            return exit::ERROR;
        }
    };
    let mut headers = Vec::new();
    for h in &a.headers {
        match parse_header(h) {
            Ok(h) => headers.push(h),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ERROR;
            }
        }
    }
    let mut targets: Vec<Target> = a
        .urls
        .iter()
        .map(|u| Target {
            url: u.clone(),
            name: None,
            integrity: None,
        })
        .collect();
    if let Some(file) = &a.input_file {
        match read_input(file) {
            Ok(t) => targets.extend(t),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ERROR;
            }
        }
    }
    for pair in a.integrity.chunks(2) {
        let (url, metadata) = (&pair[0], &pair[1]);
        if let Err(e) = check_integrity(metadata) {
            eprintln!("error: --integrity {url}: {e}");
            return exit::ERROR;
        }
        let mut found = false;
        for t in targets.iter_mut().filter(|t| &t.url == url) {
            t.integrity = Some(metadata.clone());
            found = true;
        }
        if !found {
            eprintln!("error: --integrity {url:?}: not one of the URLs to fetch");
            return exit::ERROR;
        }
    }
    a.urls = targets.iter().map(|t| t.url.clone()).collect();
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
    let (app, _server) = match start_running(path, reporter, delivery.clone(), net).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (manager, registration) = app.manager(&origin);
    let base = Url::parse(&registration.scope).expect("a scope URL");
    let mut requests: Vec<RequestInfo> = Vec::new();
    for t in &targets {
        if headers.is_empty() && t.integrity.is_none() {
            requests.push(RequestInfo::from(t.url.as_str()));
            continue;
        }
        // new Request(url, {headers, integrity}), as a page would build it.
        let init = RequestInit {
            headers: (!headers.is_empty()).then(|| headers.clone()),
            integrity: t.integrity.clone(),
            ..Default::default()
        };
        match construct_request(t.url.as_str().into(), init, &base) {
            Ok(r) => requests.push(r.into()),
            Err(e) => {
                eprintln!("{e}");
                app.close().await;
                return exit::REJECTED;
            }
        }
    }
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
    let mut data = FetchData::new(out);
    data.limit_rate = limit_rate;
    if targets.iter().any(|t| t.name.is_some()) {
        data.names = targets.iter().map(|t| t.name.clone()).collect();
    }
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
    delivery.start(uid, Some(&data.to_json()));
    let settled = tokio::select! {
        s = app.wait_settled(uid) => s,
        stop = signals.stopped() => {
            if let Err(OperationError::NotDurable(e)) = app.engine.pause(uid).await {
                app.reporter.error(&format!("{}: the pause could not be stored: {e}", a.id));
            }
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
