//! The command line (a contract scripts rely on; exit codes in [`crate::exit`]).

use crate::commands::fetch::{FetchArgs, fetch};
use crate::commands::js::{JsArgs, js};
use crate::commands::query::query;
use crate::commands::run::run_all;
use crate::control::wire::Query;
use crate::exit;
use crate::network::NetArgs;
use crate::output::{Reporter, choose_mode};
use crate::paths::store_path;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// What `--out` promises (shown by `bgfetch --help` and `bgfetch fetch --help`; README says the
/// same).
const AFTER_HELP: &str = "\
Delivery with --out DIR:
  DIR is made if it is missing and checked before the fetch is registered (a
  regular file or an unwritable directory is an error, exit 3, and nothing is
  fetched).
  While the fetch downloads, nothing is written to DIR: the bodies are in the
  store. At success the store hands each body to a temporary file in DIR named
  .bgfetch-TOKEN-XXXXXX.part (created new, never through a symlink, readable
  only by you): on the store's file system a large body's file is hard-linked,
  not copied; elsewhere it is reflinked or copied by the kernel. No file
  appears under its own name before the fetch succeeds; temporary files a
  killed process left are removed by the next `bgfetch run` or `abort`.
  On success each body is named after the last segment of its URL, shortened
  to fit 255 bytes. A name already taken, by another record or by any file in
  DIR (even one created while the fetch ran), gets -1, -2, ... before its
  extension: an existing file is never replaced.
  Exit 0 means every file is complete, synced and renamed into place and DIR
  itself synced; only then does the store drop its copy. If the process dies
  after delivering, `bgfetch run` fires the success event again and finds the
  files already in place: no second copy. If delivery fails (exit 3), every
  byte stays in the store: fix the cause and `bgfetch run` delivers it.

Exit codes:
  0    success: the fetch succeeded (with --out, its files are in place), or
       the query answered
  1    the fetch failed or was aborted, nothing matched, or a matched body
       ended short (match -o then writes no file)
  2    fetch() rejected (QuotaExceededError, TypeError...), or a URL argument
       is not an absolute http(s) URL
  3    usage, store or I/O error (a failed delivery keeps the download)
  130, 143, 129
       interrupted by SIGINT, SIGTERM, SIGHUP: the fetch is left paused;
       `bgfetch run` continues it

Environment:
  BGFETCH_STORE
       the store, when --store is not given (default:
       $XDG_DATA_HOME/bgfetch/store.redb, else ~/.local/share/bgfetch/store.redb)
  HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY (or in lower case)
       proxies, read as curl reads them: http://[USER:PASSWORD@]HOST[:PORT];
       https goes through a CONNECT tunnel; --proxy overrides the first three
  SSL_CERT_FILE, SSL_CERT_DIR
       the trusted CA certificates (PEM) instead of the system's store;
       --cacert overrides both
  XDG_RUNTIME_DIR
       where the control socket lives (else bgfetch-UID in the temporary
       directory)
  RUST_LOG
       diagnostics on stderr (a tracing filter, e.g. RUST_LOG=debug)

Shell completions and the man page: `bgfetch completions bash` (zsh, fish,
elvish, powershell), `bgfetch man`.";

/// bgfetch: a resumable, crash-safe multi-file downloader that follows the Background Fetch
/// spec, and the reference embedder of the background-fetch engine.
#[derive(Parser, Debug)]
#[command(name = "bgfetch", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// The store (default: $BGFETCH_STORE, else the platform's data directory).
    #[arg(long, global = true, value_name = "PATH")]
    store: Option<PathBuf>,
    /// One JSON object per line on stdout (events, a `record` event as each record settles
    /// with its URL, status, bytes and, for a failure, its cause, and a `saved` event per file
    /// delivered to --out); queries print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of `Fetch` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Calls BackgroundFetchManager.fetch() with the URLs (GET, in order) and the uploads, then
    /// runs until the fetch settles.
    #[command(after_help = AFTER_HELP)]
    Fetch {
        /// The background fetch's id.
        id: String,
        /// URLs to download: absolute http(s) URLs (relative ones only with --origin, resolved
        /// against it).
        urls: Vec<String>,
        /// Read more URLs from FILE ("-": standard input), one per line after the URL
        /// arguments: `URL [NAME] [INTEGRITY]`, NAME being the file name under --out and
        /// INTEGRITY a `sha256-...` (or sha384, sha512) value; blank lines and lines starting
        /// with # are skipped.
        #[arg(short = 'i', long = "input-file", value_name = "FILE")]
        input_file: Option<PathBuf>,
        /// A request header for every URL, 'Name: value' (repeatable). Headers a page may
        /// not set (the Request constructor's forbidden headers: Cookie, Host, Origin,
        /// Proxy-*, Sec-*, ...) are refused.
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// Subresource Integrity for one URL: the body must match METADATA
        /// (sha256-BASE64, sha384-..., sha512-...) or the record fails (repeatable).
        #[arg(long = "integrity", num_args = 2, value_names = ["URL", "METADATA"], action = clap::ArgAction::Append)]
        integrity: Vec<String>,
        /// Download the fetch's records together at most RATE bytes per second, as curl's
        /// --limit-rate: a number with an optional k, M or G suffix (500k, 2M). Kept with
        /// the fetch: `bgfetch run` honours it too.
        #[arg(long = "limit-rate", value_name = "RATE")]
        limit_rate: Option<String>,
        /// The title shown while it runs.
        #[arg(long, value_name = "T")]
        title: Option<String>,
        /// downloadTotal: the download fails as soon as more bytes than this arrive. More than the
        /// store's disk can hold (its free space less 256 MiB) is a QuotaExceededError.
        #[arg(long = "download-total", value_name = "BYTES")]
        download_total: Option<u64>,
        /// An icon URL (repeatable).
        #[arg(long = "icon", value_name = "URL")]
        icons: Vec<String>,
        /// The origin of the service worker registration (default: the first URL's origin).
        /// With it, URLs may be relative to the page, as in a web page's fetch().
        #[arg(long, value_name = "ORIGIN")]
        origin: Option<String>,
        /// An upload: METHOD URL FILE (repeatable).
        #[arg(long = "upload", num_args = 3, value_names = ["METHOD", "URL", "FILE"], action = clap::ArgAction::Append)]
        uploads: Vec<String>,
        /// On success, deliver each record's body into DIR as a file (see "Delivery" below).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Register and exit; `bgfetch run` continues it.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Resumes every unsettled fetch in the store and runs them until they settle.
    Run {
        #[command(flatten)]
        net: NetArgs,
    },
    /// Runs a web app headless: serves DIR on loopback as the app's origin (or uses a live
    /// --origin), runs PAGE.js in a page of that origin (its navigator.serviceWorker.register()
    /// loads the worker from the origin; background-fetch is granted), prints console output,
    /// the background-fetch events its workers receive, the UI and its caches, and exits when
    /// nothing is pending (or after --timeout) with the exit codes of `fetch` (with --json,
    /// one JSON object per line). Fetches, caches and the worker's registration (with its
    /// scripts) live in the store: a fetch cut off by a kill is resumed by `bgfetch run`, which
    /// starts the app's worker again for its events. SIGINT, SIGTERM or SIGHUP pause the
    /// app's fetches in the store and exit 130, 143 or 129; `bgfetch run` continues them.
    Js {
        /// The app's directory, served on loopback as https://web-platform.test.
        #[arg(
            long,
            value_name = "DIR",
            conflicts_with = "origin",
            required_unless_present = "origin"
        )]
        root: Option<PathBuf>,
        /// A live origin (http or https URL) instead of --root, reached through the network.
        #[arg(long, value_name = "URL")]
        origin: Option<String>,
        /// Register this service worker script before PAGE.js runs (for apps that register it
        /// in a page this command does not run).
        #[arg(long, value_name = "SW.js")]
        register: Option<String>,
        /// Stop after this long even if something is pending (30, 90s, 500ms, 5m); a fetch
        /// still running stays in the store for `bgfetch run`.
        #[arg(long, value_name = "D", default_value = "10m", value_parser = crate::commands::js::parse_timeout)]
        timeout: std::time::Duration,
        /// The page script: a path under the origin.
        #[arg(value_name = "PAGE.js")]
        page: String,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Lists every fetch in the store: id, title, state, downloaded / total, rate, records
    /// done (with --json, one JSON array). States: running, paused, offline, waiting (for
    /// permission), stopped (no bgfetch process runs it: `bgfetch run` continues it),
    /// succeeded, failed, aborted (settled, its event not finished yet).
    Ls,
    /// Pauses a fetch (the user's pause: its records stop, their bytes are kept); prints
    /// whether it was paused.
    Pause {
        /// The id.
        id: String,
    },
    /// Resumes a paused fetch; prints whether it was resumed. If no process runs it,
    /// `bgfetch run` continues it.
    Resume {
        /// The id.
        id: String,
    },
    /// Prints the active ids, one per line (with --json, one JSON array).
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
        /// Write to FILE instead of stdout: FILE appears (replacing any file of that name) only
        /// once the whole body has arrived.
        #[arg(short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Downloads a generated podcast episode from a local server, explaining each step.
    Demo,
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff) to stdout: `bgfetch man > bgfetch.1`, or a command's:
    /// `bgfetch man fetch > bgfetch-fetch.1`.
    Man {
        /// The command whose page to print (default: bgfetch's own).
        command: Option<String>,
    },
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

async fn run(cli: Cli) -> i32 {
    let mode = choose_mode(cli.json, std::io::stderr().is_terminal());
    if matches!(cli.command, Command::Demo) {
        return crate::demo::run(cli.store, mode).await;
    }
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "bgfetch",
                &mut std::io::stdout(),
            );
            return exit::SUCCESS;
        }
        Command::Man { command } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Built first, so that the global options appear in each command's page too.
            cmd.build();
            let page = match command {
                None => cmd,
                Some(name) => match cmd.find_subcommand(name) {
                    Some(sub) => sub.clone().name(format!("bgfetch-{name}")),
                    None => {
                        eprintln!("error: bgfetch has no command {name:?}");
                        return exit::ERROR;
                    }
                },
            };
            let man = clap_mangen::Man::new(page);
            return match man.render(&mut std::io::stdout()) {
                Ok(()) => exit::SUCCESS,
                // `bgfetch man | head`: the reader wants no more.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing the man page: {e}");
                    exit::ERROR
                }
            };
        }
        _ => {}
    }
    let path = match store_path(cli.store) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let json = cli.json;
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
            input_file,
            headers,
            integrity,
            limit_rate,
            net,
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
                input_file,
                headers,
                integrity,
                limit_rate,
                net,
            };
            fetch(&path, Arc::new(Reporter::new(mode)), args).await
        }
        Command::Run { net } => run_all(&path, Arc::new(Reporter::new(mode)), &net).await,
        Command::Js {
            root,
            origin,
            register,
            timeout,
            page,
            net,
        } => {
            let args = JsArgs {
                root,
                origin,
                register,
                page,
                timeout,
                net,
            };
            js(&path, Arc::new(Reporter::new(mode)), args).await
        }
        Command::Ls => query(&path, Query::Ls, None, json).await,
        Command::Pause { id } => query(&path, Query::Pause { id }, None, json).await,
        Command::Resume { id } => query(&path, Query::Resume { id }, None, json).await,
        Command::Ids => query(&path, Query::Ids, None, json).await,
        Command::Get { id } => query(&path, Query::Get { id }, None, json).await,
        Command::Abort { id } => query(&path, Query::Abort { id }, None, json).await,
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
                json,
            )
            .await
        }
        Command::Demo | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled above")
        }
    }
}
