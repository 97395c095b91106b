//! The command line (a contract scripts rely on; exit codes in [`crate::exit`]).

use crate::commands::fetch::{FetchArgs, fetch};
use crate::commands::query::query;
use crate::commands::run::run_all;
use crate::control::wire::Query;
use crate::exit;
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
  While the fetch downloads, each record is written to a temporary file in DIR
  named .bgfetch-TOKEN-XXXXXX.part (created new, never through a symlink,
  readable only by you). No file appears under its own name before the fetch
  succeeds; after a failure or an abort the temporary files are removed.
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
       `bgfetch run` continues it";

/// bgfetch: a resumable, crash-safe multi-file downloader that follows the Background Fetch
/// spec, and the reference embedder of the background-fetch engine.
#[derive(Parser, Debug)]
#[command(name = "bgfetch", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// The store (default: $BGFETCH_STORE, else the platform's data directory).
    #[arg(long, global = true, value_name = "PATH")]
    store: Option<PathBuf>,
    /// One JSON object per line on stdout (events, and a `saved` event per file delivered to
    /// --out); queries print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

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
    },
    /// Resumes every unsettled fetch in the store and runs them until they settle.
    Run,
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
            fetch(&path, Arc::new(Reporter::new(mode)), args).await
        }
        Command::Run => run_all(&path, Arc::new(Reporter::new(mode))).await,
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
        Command::Demo => unreachable!("handled above"),
    }
}
