//! `ids`, `get`, `abort`, `match`: forwarded to the process running fetches on the store, or
//! answered from the store when no process runs.

use crate::app::App;
use crate::commands::running::{NotOpened, open_waiting};
use crate::control::client::{self, AnswerError, AskError, BodyError, Frames};
use crate::control::server::{self, Reply};
use crate::control::wire::{Message, Query};
use crate::delivery::{FetchData, OutDelivery, remove_journal};
use crate::exit;
use crate::network::NetSetup;
use crate::output::{Mode, Reporter};
use crate::paths;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncRead;

/// Prints a line on stdout; false if stdout is gone (a closed pipe: the reader wants no more).
fn print_line(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// Runs a query.
pub async fn query(path: &Path, q: Query, output: Option<&Path>, json_mode: bool) -> i32 {
    let mut warned = false;
    let mut told = false;
    for _ in 0..3 {
        if let Ok(sock) = paths::socket_path(path) {
            match client::ask(&sock, &q).await {
                Ok(mut asked) => {
                    let message = client::answer(&mut asked.frames, |reason| {
                        if !told {
                            eprintln!("waiting: {reason}");
                            told = true;
                        }
                    })
                    .await;
                    match message {
                        Ok(m) => {
                            return print_answer(m, &mut asked.frames, &q, output, json_mode).await;
                        }
                        // The process went away (its fetches ended): the store answers now.
                        Err(AnswerError::Gone(why)) => {
                            tracing::debug!(%why, "the running process went away; asking the store");
                        }
                        Err(AnswerError::Bad(e)) => {
                            eprintln!("error: {e}");
                            return exit::ERROR;
                        }
                    }
                }
                Err(AskError::NotRunning) => {}
                Err(AskError::Unusable(m)) => {
                    if !warned {
                        eprintln!("warning: {m}");
                        warned = true;
                    }
                }
            }
        }
        if !path.exists() {
            // Nothing was ever stored here: there is nothing to ask about.
            return match q {
                Query::Ids | Query::Ls => {
                    if json_mode {
                        print_line("[]");
                    } else if matches!(q, Query::Ls) {
                        print_line(&ls_table(&[]));
                    }
                    exit::SUCCESS
                }
                Query::Abort { .. } => {
                    print_line("false");
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
        match open_waiting(path).await {
            Ok(store) => return answer_locally(path, store, q, output, json_mode).await,
            // A process running fetches started meanwhile: ask it.
            Err(NotOpened::Running) => continue,
            Err(NotOpened::Exit(code)) => return code,
        }
    }
    eprintln!(
        "error: the process running fetches on {} answers, but not this query",
        path.display()
    );
    exit::ERROR
}

async fn answer_locally(
    path: &Path,
    store: background_fetch_redb::RedbStore,
    q: Query,
    output: Option<&Path>,
    json_mode: bool,
) -> i32 {
    let reporter = Arc::new(Reporter::new(Mode::Quiet));
    let delivery = OutDelivery::new(reporter.clone(), path);
    let app = match App::start(store, reporter, delivery, false, NetSetup::offline()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let aborting = match &q {
        Query::Abort { id } => app.find(id),
        _ => None,
    };
    let reply = server::answer(&app, q.clone(), false).await;
    let aborted = matches!(&reply, Reply::Json(v) if v == &json!(true));
    let mut frames = server::local(reply);
    let code = match client::answer(&mut frames, |_| {}).await {
        Ok(m) => print_answer(m, &mut frames, &q, output, json_mode).await,
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    };
    if aborted && let Some(f) = aborting {
        // No process runs the fetch: settle it here (it ends with backgroundfetchabort, which
        // also removes the temporary files it left in --out).
        app.engine.resume_restored(Some(f.uid));
        app.wait_settled(f.uid).await;
        app.engine.finished(f.uid).await;
        remove_journal(
            path,
            &FetchData::parse(f.embedder_data.as_deref()).token(f.uid),
        );
    }
    app.close().await;
    code
}

/// `ls` as a table for people: id, title, state, downloaded / total, rate, records done.
pub fn ls_table(rows: &[serde_json::Value]) -> String {
    use crate::output::human;
    let mut table = vec![[
        "ID".to_owned(),
        "TITLE".to_owned(),
        "STATE".to_owned(),
        "DOWNLOADED / TOTAL".to_owned(),
        "RATE".to_owned(),
        "RECORDS DONE".to_owned(),
    ]];
    for r in rows {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        let total = if n("downloadTotal") > 0 {
            human(n("downloadTotal"))
        } else {
            "?".to_owned()
        };
        let rate = if n("rate") > 0 {
            format!("{}/s", human(n("rate")))
        } else {
            "-".to_owned()
        };
        let records = if n("records") > 0 {
            format!("{}/{}", n("recordsDone"), n("records"))
        } else {
            "-".to_owned()
        };
        let mut state = s("state");
        if state == "failed" {
            state = format!("failed ({})", s("failureReason"));
        }
        table.push([
            s("id"),
            s("title"),
            state,
            format!("{} / {total}", human(n("downloaded"))),
            rate,
            records,
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    table
        .iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints the answer `message` (and the body that follows it in `frames`, if it is one).
async fn print_answer<R: AsyncRead + Unpin>(
    message: Message,
    frames: &mut Frames<R>,
    q: &Query,
    output: Option<&Path>,
    json_mode: bool,
) -> i32 {
    match message {
        Message::Json { value } => {
            let printed = match (&value, json_mode) {
                (serde_json::Value::Array(rows), false) if matches!(q, Query::Ls) => {
                    print_line(&ls_table(rows))
                }
                (serde_json::Value::Array(ids), false) => ids
                    .iter()
                    .all(|id| print_line(id.as_str().unwrap_or_default())),
                (v, _) => print_line(&v.to_string()),
            };
            // A closed stdout (`| head`) is the reader's choice, not a failure.
            let _ = printed;
            exit::SUCCESS
        }
        Message::Body { .. } => match client::receive_body(frames, output).await {
            Ok(_) => exit::SUCCESS,
            Err(BodyError::Failed { bytes, message }) => {
                eprintln!(
                    "error: {}: the body ended after {bytes} bytes: {message}{}",
                    match q {
                        Query::Match { url, .. } => url.as_str(),
                        _ => "",
                    },
                    if output.is_some() {
                        " (no file written)"
                    } else {
                        ""
                    }
                );
                exit::FAILED
            }
            Err(BodyError::Truncated { bytes }) => {
                eprintln!(
                    "error: the process running fetches stopped sending after {bytes} bytes, before the end of the body{}",
                    if output.is_some() {
                        " (no file written)"
                    } else {
                        ""
                    }
                );
                exit::FAILED
            }
            Err(BodyError::Io(e)) => {
                eprintln!("error: writing the body: {e}");
                exit::ERROR
            }
        },
        Message::NotFound { message } => {
            eprintln!("{message}");
            exit::FAILED
        }
        Message::Error { message } => {
            eprintln!("error: {message}");
            exit::FAILED
        }
        other => {
            eprintln!("error: unexpected answer {other:?}");
            exit::ERROR
        }
    }
}
