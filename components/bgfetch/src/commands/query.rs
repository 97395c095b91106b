//! `ids`, `get`, `abort`, `match`, `pause`, `resume`, `ls`: asked of the process running
//! fetches on the store through its control socket (the engine's protocol, see
//! [`crate::control::wire`]), or of an engine started here on the store when no process runs.
//! Either way `get`, `abort` and `match` are calls of the engine's protocol made by this
//! process's client objects; the rest are bgfetch's extension queries.

use crate::app::{App, TokioSpawn};
use crate::commands::running::{NotOpened, open_waiting};
use crate::control::client::{self, AskError, BodyError, Ended, Remote, query_environment};
use crate::control::server;
use crate::control::wire::{Control, ControlAnswer, Query};
use crate::delivery::{FetchData, OutDelivery, remove_journal};
use crate::exit;
use crate::network::NetSetup;
use crate::output::{Mode, Reporter};
use crate::paths;
use background_fetch::service::client::BackgroundFetchRegistration;
use background_fetch::service::{Connection, in_process};
use background_fetch::{CacheQueryOptions, DomError, RecordResult};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Prints a line on stdout; false if stdout is gone (a closed pipe: the reader wants no more).
fn print_line(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// Runs a query.
pub async fn query(path: &Path, q: Query, output: Option<&Path>, json_mode: bool) -> i32 {
    let mut warned = false;
    for _ in 0..3 {
        if let Ok(sock) = paths::socket_path(path) {
            match Remote::connect(&sock).await {
                Ok(remote) => match ask(&Peer::Remote(&remote), &q, output, json_mode).await {
                    Ok(outcome) => return outcome.code,
                    // The process went away (its fetches ended): the store answers now.
                    Err(Unanswered::Gone(why)) => {
                        tracing::debug!(%why, "the running process went away; asking the store");
                    }
                    Err(Unanswered::Error(e)) => {
                        eprintln!("error: {e}");
                        return exit::ERROR;
                    }
                },
                Err(AskError::NotRunning) => {}
                Err(AskError::Gone(why)) => {
                    tracing::debug!(%why, "the running process went away; asking the store");
                }
                Err(AskError::Refused(why)) => {
                    eprintln!(
                        "error: the process running fetches on {} refused this bgfetch (another \
                         version of it?): {why}",
                        path.display()
                    );
                    return exit::ERROR;
                }
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
    let conn = in_process::connect(
        app.service(),
        query_environment(),
        Arc::new(TokioSpawn(tokio::runtime::Handle::current())),
    );
    let outcome = match ask(&Peer::Local(&app, conn), &q, output, json_mode).await {
        Ok(o) => o,
        Err(Unanswered::Gone(e) | Unanswered::Error(e)) => {
            eprintln!("error: {e}");
            Outcome {
                code: exit::ERROR,
                aborted: false,
            }
        }
    };
    if outcome.aborted
        && let Some(f) = aborting
    {
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
    outcome.code
}

/// Where a query is answered: the process running fetches, or an engine started here.
enum Peer<'a> {
    /// Over the control socket.
    Remote(&'a Remote),
    /// In this process, over an in-process connection of its service.
    Local(&'a App, Connection),
}

/// Why a peer gave no answer.
enum Unanswered {
    /// The process went away before answering: the store can answer instead.
    Gone(String),
    /// Anything else (in words).
    Error(String),
}

/// What a query printed: its exit code, and whether it aborted a fetch.
struct Outcome {
    code: i32,
    aborted: bool,
}

impl From<i32> for Outcome {
    fn from(code: i32) -> Outcome {
        Outcome {
            code,
            aborted: false,
        }
    }
}

impl Peer<'_> {
    fn connection(&self) -> &Connection {
        match self {
            Peer::Remote(r) => r.connection(),
            Peer::Local(_, c) => c,
        }
    }

    /// Whether the peer downloads the fetches (a record not complete gets its body as it
    /// arrives); an engine started for a query does not.
    fn downloading(&self) -> bool {
        matches!(self, Peer::Remote(_))
    }

    fn gone(&self) -> bool {
        matches!(self, Peer::Remote(r) if matches!(r.ended(), Some(Ended::Gone(_))))
    }

    async fn control(&self, query: Control) -> Result<ControlAnswer, Unanswered> {
        match self {
            Peer::Remote(r) => r.control(query).await.map_err(|e| match e {
                Ended::Gone(m) => Unanswered::Gone(m),
                other => Unanswered::Error(other.to_string()),
            }),
            Peer::Local(app, _) => Ok(server::control(app, query, false).await),
        }
    }

    /// A call's rejection: the connection's end (before anything was printed), or an error
    /// of the call.
    fn failed(&self, e: DomError) -> Unanswered {
        match self {
            Peer::Remote(r) => match r.ended() {
                Some(Ended::Gone(m)) => Unanswered::Gone(m),
                Some(other) => Unanswered::Error(other.to_string()),
                None => Unanswered::Error(e.to_string()),
            },
            Peer::Local(..) => Unanswered::Error(e.to_string()),
        }
    }

    /// The registration object of the active fetch `id` (`get(id)` through the engine's
    /// protocol, for the registration the peer says it belongs to), and that registration's
    /// scope.
    async fn registration(
        &self,
        id: &str,
    ) -> Result<Option<(BackgroundFetchRegistration, url::Url)>, Unanswered> {
        let registration = match self.control(Control::Find { id: id.to_owned() }).await? {
            ControlAnswer::Found(Some(r)) => r,
            ControlAnswer::Found(None) => return Ok(None),
            other => return Err(unexpected(other)),
        };
        let scope = url::Url::parse(&registration.scope)
            .map_err(|e| Unanswered::Error(format!("{}: {e}", registration.scope)))?;
        let manager = self.connection().background_fetch(&registration);
        match manager.get(id).await {
            Ok(reg) => Ok(reg.map(|r| (r, scope))),
            Err(e) => Err(self.failed(e)),
        }
    }
}

fn unexpected(answer: ControlAnswer) -> Unanswered {
    Unanswered::Error(format!("unexpected answer {answer:?}"))
}

fn no_fetch(id: &str) -> String {
    format!("no active background fetch with id {id:?}")
}

/// The answer of a `pause` or `resume`.
fn print_changed(answer: ControlAnswer) -> Result<Outcome, Unanswered> {
    match answer {
        ControlAnswer::Changed(b) => {
            print_line(&b.to_string());
            Ok(exit::SUCCESS.into())
        }
        ControlAnswer::NotFound(m) => {
            eprintln!("{m}");
            Ok(exit::FAILED.into())
        }
        ControlAnswer::Error(m) => {
            eprintln!("error: {m}");
            Ok(exit::FAILED.into())
        }
        other => Err(unexpected(other)),
    }
}

fn record_state(result: RecordResult, has_head: bool) -> &'static str {
    match (result, has_head) {
        (RecordResult::Empty, false) => "pending",
        (RecordResult::Empty, true) => "active",
        (r, _) => r.as_str(),
    }
}

/// The registration as `get` prints it (its records' states through the engine's protocol).
async fn registration_json(reg: &BackgroundFetchRegistration) -> Result<Value, DomError> {
    let mut records = Vec::new();
    if reg.records_available() {
        for r in reg.match_all(None, CacheQueryOptions::default()).await? {
            let state = r.state().await?;
            let head = state.response_head;
            records.push(json!({
                "url": r.request().url.as_str(),
                "method": r.request().method,
                "status": head.as_ref().map(|h| h.status),
                "bytes": state.stored_bytes,
                "state": record_state(state.result, head.is_some()),
            }));
        }
    }
    Ok(json!({
        "id": reg.id(),
        "uploadTotal": reg.upload_total(),
        "uploaded": reg.uploaded(),
        "downloadTotal": reg.download_total(),
        "downloaded": reg.downloaded(),
        "result": reg.result().as_str(),
        "failureReason": reg.failure_reason().as_str(),
        "recordsAvailable": reg.records_available(),
        "records": records,
    }))
}

/// Asks `q` of `peer` and prints the answer. `Err`: nothing was printed.
async fn ask(
    peer: &Peer<'_>,
    q: &Query,
    output: Option<&Path>,
    json_mode: bool,
) -> Result<Outcome, Unanswered> {
    match q {
        Query::Ids => match peer.control(Control::Ids).await? {
            ControlAnswer::Ids(ids) => {
                // A closed stdout (`| head`) is the reader's choice, not a failure.
                if json_mode {
                    print_line(&json!(ids).to_string());
                } else {
                    let _ = ids.iter().all(|id| print_line(id));
                }
                Ok(exit::SUCCESS.into())
            }
            other => Err(unexpected(other)),
        },
        Query::Ls => match peer.control(Control::Ls).await? {
            ControlAnswer::Ls(rows) => {
                let rows: Vec<Value> = rows
                    .iter()
                    .map(|r| serde_json::to_value(r).expect("serialisable"))
                    .collect();
                if json_mode {
                    print_line(&Value::Array(rows).to_string());
                } else {
                    print_line(&ls_table(&rows));
                }
                Ok(exit::SUCCESS.into())
            }
            other => Err(unexpected(other)),
        },
        Query::Pause { id } => {
            print_changed(peer.control(Control::Pause { id: id.clone() }).await?)
        }
        Query::Resume { id } => {
            print_changed(peer.control(Control::Resume { id: id.clone() }).await?)
        }
        Query::Get { id } => {
            let Some((reg, _)) = peer.registration(id).await? else {
                eprintln!("{}", no_fetch(id));
                return Ok(exit::FAILED.into());
            };
            let value = registration_json(&reg).await.map_err(|e| peer.failed(e))?;
            print_line(&value.to_string());
            Ok(exit::SUCCESS.into())
        }
        Query::Abort { id } => {
            let Some((reg, _)) = peer.registration(id).await? else {
                print_line("false");
                return Ok(exit::SUCCESS.into());
            };
            match reg.abort().await {
                Ok(aborted) => {
                    print_line(&aborted.to_string());
                    Ok(Outcome {
                        code: exit::SUCCESS,
                        aborted,
                    })
                }
                Err(e) => match peer.failed(e) {
                    gone @ Unanswered::Gone(_) => Err(gone),
                    Unanswered::Error(e) => {
                        eprintln!("error: {e}");
                        Ok(exit::FAILED.into())
                    }
                },
            }
        }
        Query::Match {
            id,
            url,
            ignore_search,
            ignore_method,
            ignore_vary,
        } => {
            let Some((reg, scope)) = peer.registration(id).await? else {
                eprintln!("{}", no_fetch(id));
                return Ok(exit::FAILED.into());
            };
            // A URL relative to the fetch's scope, as a page of it would write it.
            let url = scope
                .join(url)
                .map(String::from)
                .unwrap_or_else(|_| url.clone());
            let options = CacheQueryOptions {
                ignore_search: *ignore_search,
                ignore_method: *ignore_method,
                ignore_vary: *ignore_vary,
            };
            let record = match reg.r#match(url.as_str(), options).await {
                Ok(Some(record)) => record,
                Ok(None) => {
                    eprintln!("no record of {id:?} matches {url}");
                    return Ok(exit::FAILED.into());
                }
                Err(e) => {
                    return match peer.failed(e) {
                        gone @ Unanswered::Gone(_) => Err(gone),
                        Unanswered::Error(e) => {
                            eprintln!("error: {e}");
                            Ok(exit::FAILED.into())
                        }
                    };
                }
            };
            let state = record.state().await.map_err(|e| peer.failed(e))?;
            if state.result == RecordResult::Empty {
                if !peer.downloading() {
                    eprintln!(
                        "error: the record for {url} is incomplete ({} bytes stored) and no \
                         bgfetch process is downloading it: `bgfetch run` continues it",
                        state.stored_bytes
                    );
                    return Ok(exit::FAILED.into());
                }
                if state.response_head.is_none() {
                    eprintln!(
                        "waiting: the record for {url} has no response yet (it waits for its \
                         turn or for the server): waiting for it"
                    );
                }
            }
            let response = match record.response_ready().await {
                Ok(r) => r,
                Err(e) => {
                    return match peer.failed(e) {
                        gone @ Unanswered::Gone(_) => Err(gone),
                        Unanswered::Error(e) => {
                            eprintln!("error: the record for {url} has no response: {e}");
                            Ok(exit::FAILED.into())
                        }
                    };
                }
            };
            let no_file = if output.is_some() {
                " (no file written)"
            } else {
                ""
            };
            let code = match client::receive_body(response.into_body(), output, || peer.gone())
                .await
            {
                Ok(_) => exit::SUCCESS,
                Err(BodyError::Failed { bytes, message }) => {
                    eprintln!(
                        "error: {url}: the body ended after {bytes} bytes: {message}{no_file}"
                    );
                    exit::FAILED
                }
                Err(BodyError::Truncated { bytes }) => {
                    eprintln!(
                        "error: the process running fetches stopped sending after {bytes} bytes, before the end of the body{no_file}"
                    );
                    exit::FAILED
                }
                Err(BodyError::Io(e)) => {
                    eprintln!("error: writing the body: {e}");
                    exit::ERROR
                }
            };
            Ok(code.into())
        }
    }
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
