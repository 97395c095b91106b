//! The command line (a contract scripts rely on) and its exit codes.

use crate::app::{App, FetchData, Role, StoreOpen, open_store, socket_path, store_path};
use crate::control::{self, AskError, Query, Reply};
use crate::output::Mode;
use background_fetch::{
    BackgroundFetchOptions, DomError, FunctionalEventKind, ImageResource, RequestBody, RequestInfo,
    RequestInit, construct_request,
};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use url::Url;

/// Exit codes.
pub mod exit {
    /// The fetch succeeded (or the query answered).
    pub const SUCCESS: i32 = 0;
    /// The fetch settled as a failure or abort (or nothing matched).
    pub const FAILED: i32 = 1;
    /// `fetch()` rejected.
    pub const REJECTED: i32 = 2;
    /// Usage, store or I/O error.
    pub const ERROR: i32 = 3;
    /// Interrupted by SIGINT or SIGTERM.
    pub const INTERRUPTED: i32 = 130;
}

/// bgfetch: a resumable, crash-safe multi-file downloader that follows the Background Fetch
/// spec, and the reference embedder of the background-fetch engine.
#[derive(Parser, Debug)]
#[command(name = "bgfetch", version, about, long_about = None)]
pub struct Cli {
    /// The store (default: $BGFETCH_STORE, else the platform's data directory).
    #[arg(long, global = true, value_name = "PATH")]
    store: Option<PathBuf>,
    /// One JSON object per line on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Calls BackgroundFetchManager.fetch() with the URLs (GET, in order) and the uploads, then
    /// runs until the fetch settles.
    Fetch {
        /// The background fetch's id.
        id: String,
        /// URLs to download.
        urls: Vec<String>,
        /// The title shown while it runs.
        #[arg(long, value_name = "T")]
        title: Option<String>,
        /// downloadTotal: the download fails as soon as more bytes than this arrive.
        #[arg(long = "download-total", value_name = "BYTES")]
        download_total: Option<u64>,
        /// An icon URL (repeatable).
        #[arg(long = "icon", value_name = "URL")]
        icons: Vec<String>,
        /// The origin of the service worker registration (default: the first URL's origin).
        #[arg(long, value_name = "ORIGIN")]
        origin: Option<String>,
        /// An upload: METHOD URL FILE (repeatable).
        #[arg(long = "upload", num_args = 3, value_names = ["METHOD", "URL", "FILE"], action = clap::ArgAction::Append)]
        uploads: Vec<String>,
        /// On success, write each record's body into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Register and exit; `bgfetch run` continues it.
        #[arg(long)]
        detach: bool,
    },
    /// Resumes every unsettled fetch in the store and runs them until they settle.
    Run,
    /// Prints the active ids, one per line.
    Ids,
    /// Prints a registration as one JSON object.
    Get {
        /// The id.
        id: String,
    },
    /// Calls abort() and prints its value.
    Abort {
        /// The id.
        id: String,
    },
    /// Writes the body of the record matching URL to stdout or FILE.
    Match {
        /// The id.
        id: String,
        /// The URL to match.
        url: String,
        /// Ignore the query string.
        #[arg(long = "ignore-search")]
        ignore_search: bool,
        /// Ignore the method.
        #[arg(long = "ignore-method")]
        ignore_method: bool,
        /// Ignore Vary.
        #[arg(long = "ignore-vary")]
        ignore_vary: bool,
        /// Write to FILE instead of stdout.
        #[arg(short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Downloads a generated podcast episode from a local server, explaining each step.
    Demo,
}

/// Runs the program; returns the exit code.
pub fn main() -> i32 {
    // Bad input never panics with a backtrace: a bug still gets a one-line report.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("bgfetch: internal error: {info}");
    }));
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::SUCCESS
                }
                _ => exit::ERROR,
            };
            let _ = e.print();
            return code;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return exit::ERROR;
        }
    };
    let code = rt.block_on(run(cli));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

fn output_mode(json: bool) -> Mode {
    if json {
        Mode::Json
    } else if std::io::stdout().is_terminal() {
        Mode::Terminal
    } else {
        Mode::Plain
    }
}

async fn run(cli: Cli) -> i32 {
    let mode = output_mode(cli.json);
    if matches!(cli.command, Command::Demo) {
        return crate::demo::run(cli.store, mode).await;
    }
    let path = match store_path(cli.store) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    match cli.command {
        Command::Fetch {
            id,
            urls,
            title,
            download_total,
            icons,
            origin,
            uploads,
            out,
            detach,
        } => {
            let args = FetchArgs {
                id,
                urls,
                title,
                download_total,
                icons,
                origin,
                uploads,
                out,
                detach,
            };
            fetch(&path, mode, args).await
        }
        Command::Run => run_all(&path, mode).await,
        Command::Ids => query(&path, Query::Ids, None).await,
        Command::Get { id } => query(&path, Query::Get { id }, None).await,
        Command::Abort { id } => query(&path, Query::Abort { id }, None).await,
        Command::Match {
            id,
            url,
            ignore_search,
            ignore_method,
            ignore_vary,
            output,
        } => {
            query(
                &path,
                Query::Match {
                    id,
                    url,
                    ignore_search,
                    ignore_method,
                    ignore_vary,
                },
                output.as_deref(),
            )
            .await
        }
        Command::Demo => unreachable!("handled above"),
    }
}

/// Opens the store for a process that runs fetches, or explains why not.
async fn open_for_running(path: &Path) -> Result<background_fetch_redb::RedbStore, i32> {
    match open_store(path) {
        Ok(s) => Ok(s),
        Err(StoreOpen::Locked) => {
            let who = match control::ask(&socket_path(path), &Query::Ids).await {
                Ok(_) => "another bgfetch process is running fetches on it (use `bgfetch ids`, `get`, `abort`, `match`, or wait for it)".to_owned(),
                Err(AskError::Unresponsive(m)) => format!("it is locked by a process that does not answer ({m})"),
                Err(AskError::NotRunning) => "it is locked by another process".to_owned(),
            };
            eprintln!("error: cannot use the store {}: {who}", path.display());
            Err(exit::ERROR)
        }
        Err(StoreOpen::Failed(m)) => {
            eprintln!("error: {m}");
            Err(exit::ERROR)
        }
    }
}

/// Opens the store, starts the engine (restored fetches idle until resumed) and serves the
/// control socket, for a process that runs fetches.
async fn start_running(
    path: &Path,
    mode: Mode,
) -> Result<(Arc<App>, Option<control::ServerGuard>), i32> {
    let store = open_for_running(path).await?;
    let app = match App::start(store, mode, Role::Cli, false).await {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("error: {e}");
            return Err(exit::ERROR);
        }
    };
    let server = control::serve(app.clone(), &socket_path(path));
    Ok((app, server))
}

struct FetchArgs {
    id: String,
    urls: Vec<String>,
    title: Option<String>,
    download_total: Option<u64>,
    icons: Vec<String>,
    origin: Option<String>,
    uploads: Vec<String>,
    out: Option<PathBuf>,
    detach: bool,
}

/// A file's bytes as a request body stream.
async fn file_body(path: &Path) -> Result<RequestBody, String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let stream = futures::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(DomError::type_error(e.to_string())), None)),
        }
    });
    Ok(RequestBody::Stream(Box::pin(stream)))
}

async fn fetch(path: &Path, mode: Mode, a: FetchArgs) -> i32 {
    // The registration's origin: --origin, else the first URL's.
    let first = a.urls.first().or_else(|| a.uploads.get(1));
    let origin = match (&a.origin, first) {
        (Some(o), _) => match Url::parse(o) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                eprintln!("error: --origin {o:?} is not an http(s) origin");
                return exit::ERROR;
            }
        },
        (None, Some(u)) => match Url::parse(u) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            // fetch() itself rejects what cannot be a request URL; the origin does not matter.
            _ => Url::parse("http://localhost/").expect("static URL"),
        },
        (None, None) => Url::parse("http://localhost/").expect("static URL"),
    };
    let out = match &a.out {
        Some(d) => match std::path::absolute(d) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("error: --out {}: {e}", d.display());
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
    let (app, _server) = match start_running(path, mode).await {
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
        embedder_data: Some(serde_json::to_string(&FetchData { out }).expect("serialisable")),
    };
    let reg = match manager.fetch(&a.id, requests, options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            app.close().await;
            return exit::REJECTED;
        }
    };
    let uid = reg.uid();
    if !a.detach {
        app.start_delivery(&reg);
    }
    if a.detach {
        app.close().await;
        app.reporter.note(&format!(
            "{} is registered; `bgfetch run` continues it",
            a.id
        ));
        return exit::SUCCESS;
    }
    tokio::select! {
        settled = app.wait_settled(uid) => {
            app.engine.finished(uid).await;
            app.close().await;
            outcome(&app, &a.id, &settled)
        }
        signal = interrupted() => {
            app.engine.pause(uid).await;
            app.close().await;
            eprintln!("{signal}: {} is paused in the store; `bgfetch run` continues it", a.id);
            exit::INTERRUPTED
        }
    }
}

fn outcome(app: &App, id: &str, s: &crate::app::Settled) -> i32 {
    match (s.kind, &s.delivery_error) {
        (FunctionalEventKind::Success, None) => exit::SUCCESS,
        (FunctionalEventKind::Success, Some(_)) => exit::ERROR,
        _ => {
            if app.reporter.mode() != Mode::Json {
                eprintln!("{id} failed: {}", s.failure_reason);
            }
            exit::FAILED
        }
    }
}

/// Completes on SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return "interrupted";
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = term.recv() => "terminated",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupted"
    }
}

async fn run_all(path: &Path, mode: Mode) -> i32 {
    let (app, _server) = match start_running(path, mode).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let fetches = app.engine.fetches();
    if fetches.is_empty() {
        app.reporter
            .note("nothing to run: the store holds no unsettled fetch");
        app.close().await;
        return exit::SUCCESS;
    }
    // A fetch left paused by an interrupted `fetch` or `run` continues.
    for f in &fetches {
        if f.ui.paused {
            app.engine.resume(f.uid).await;
        }
    }
    for f in &fetches {
        if f.active
            && let Some(reg) = app.registration(&f.id).await
        {
            app.start_delivery(&reg);
        }
    }
    app.engine.resume_restored(None);
    let mut pending: std::collections::HashMap<_, _> =
        fetches.iter().map(|f| (f.uid, f.id.clone())).collect();
    let mut code = exit::SUCCESS;
    while !pending.is_empty() {
        let next = async {
            let mut rx = app.settled.lock().await;
            rx.recv().await
        };
        tokio::select! {
            s = next => {
                let Some(s) = s else { break };
                if s.kind == FunctionalEventKind::Click {
                    continue;
                }
                if let Some(id) = pending.remove(&s.uid) {
                    app.engine.finished(s.uid).await;
                    let c = outcome(&app, &id, &s);
                    if c != exit::SUCCESS && code == exit::SUCCESS {
                        code = c;
                    }
                }
            }
            signal = interrupted() => {
                for uid in pending.keys() {
                    app.engine.pause(*uid).await;
                }
                app.close().await;
                eprintln!("{signal}: {} fetch(es) paused in the store; `bgfetch run` continues them", pending.len());
                return exit::INTERRUPTED;
            }
        }
    }
    app.close().await;
    code
}

/// `ids`, `get`, `abort`, `match`: forwarded to the process running fetches on the store, or
/// answered from the store when no process runs.
async fn query(path: &Path, q: Query, output: Option<&Path>) -> i32 {
    let sock = socket_path(path);
    match control::ask(&sock, &q).await {
        Ok((answer, body)) => return print_answer(answer, body, output).await,
        Err(AskError::Unresponsive(m)) if !path.exists() => {
            eprintln!("error: {m}");
            return exit::ERROR;
        }
        Err(_) => {}
    }
    if !path.exists() {
        // Nothing was ever stored here: there is nothing to ask about.
        return match q {
            Query::Ids => exit::SUCCESS,
            Query::Abort { .. } => {
                println!("false");
                exit::SUCCESS
            }
            _ => {
                eprintln!(
                    "no active background fetch (the store {} does not exist)",
                    path.display()
                );
                exit::FAILED
            }
        };
    }
    let store = match open_store(path) {
        Ok(s) => s,
        Err(StoreOpen::Locked) => {
            eprintln!(
                "error: the store {} is locked by a process that does not answer on {}",
                path.display(),
                sock.display()
            );
            return exit::ERROR;
        }
        Err(StoreOpen::Failed(m)) => {
            eprintln!("error: {m}");
            return exit::ERROR;
        }
    };
    let app = match App::start(store, Mode::Quiet, Role::Cli, false).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let abort_uid = match &q {
        Query::Abort { id } => app.find(id).map(|f| f.uid),
        _ => None,
    };
    let reply = control::answer(&app, q).await;
    let aborted = matches!(&reply, Reply::Json(v) if v == &serde_json::json!(true));
    let (answer, body) = control::local(reply).await;
    let code = print_answer(answer, body, output).await;
    if aborted && let Some(uid) = abort_uid {
        // No process runs the fetch: settle it here (it ends with backgroundfetchabort).
        app.engine.resume_restored(Some(uid));
        app.wait_settled(uid).await;
        app.engine.finished(uid).await;
    }
    app.close().await;
    code
}

async fn print_answer(
    answer: control::Answer,
    body: impl tokio::io::AsyncRead + Unpin,
    output: Option<&Path>,
) -> i32 {
    match answer.kind.as_str() {
        "json" => {
            match &answer.value {
                serde_json::Value::Array(ids) => {
                    for id in ids {
                        println!("{}", id.as_str().unwrap_or_default());
                    }
                }
                serde_json::Value::Bool(b) => println!("{b}"),
                v => println!("{v}"),
            }
            exit::SUCCESS
        }
        "body" => match control::copy_body(body, output).await {
            Ok(_) => exit::SUCCESS,
            Err(e) => {
                eprintln!("error: writing the body: {e}");
                exit::ERROR
            }
        },
        "notfound" => {
            eprintln!("{}", answer.value.as_str().unwrap_or("not found"));
            exit::FAILED
        }
        _ => {
            eprintln!(
                "error: {}",
                answer.value.as_str().unwrap_or("unknown error")
            );
            exit::FAILED
        }
    }
}
