//! What `bgfetch` prints: JSON lines (`--json`), progress bars when stderr is a terminal (the
//! bars are drawn there), or plain lines otherwise. Errors go to stderr whatever the display.
//! This is also the program's [`UiHost`].

use background_fetch::service::client::BackgroundFetchRegistration;
use background_fetch::{FetchUid, FunctionalEventKind, UiHost, UiSnapshot};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How events are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One JSON object per line on stdout.
    Json,
    /// Progress bars and event lines, on stderr (a terminal).
    Terminal,
    /// Plain lines on stdout (events, saved files); errors on stderr.
    Plain,
    /// Nothing (queries that print their own answer).
    Quiet,
}

/// The display for `--json` and for where stderr goes: bars only when stderr, where they are
/// drawn, is a terminal.
pub fn choose_mode(json: bool, stderr_is_terminal: bool) -> Mode {
    if json {
        Mode::Json
    } else if stderr_is_terminal {
        Mode::Terminal
    } else {
        Mode::Plain
    }
}

/// The fields every JSON event carries.
#[derive(Clone, Debug)]
pub struct Fields {
    /// `id`
    pub id: String,
    /// `downloaded`
    pub downloaded: u64,
    /// `downloadTotal`
    pub download_total: u64,
    /// `uploaded`
    pub uploaded: u64,
    /// `uploadTotal`
    pub upload_total: u64,
    /// `result`
    pub result: String,
    /// `failureReason`
    pub failure_reason: String,
}

impl Fields {
    /// From a UI snapshot.
    pub fn of_ui(ui: &UiSnapshot) -> Fields {
        Fields {
            id: ui.id.clone(),
            downloaded: ui.downloaded,
            download_total: ui.download_total,
            uploaded: ui.uploaded,
            upload_total: ui.upload_total,
            result: ui.result.as_str().into(),
            failure_reason: ui.failure_reason.as_str().into(),
        }
    }

    /// From a registration object (a client of the engine's protocol).
    pub fn of_registration(r: &BackgroundFetchRegistration) -> Fields {
        Fields {
            id: r.id(),
            downloaded: r.downloaded(),
            download_total: r.download_total(),
            uploaded: r.uploaded(),
            upload_total: r.upload_total(),
            result: r.result().as_str().into(),
            failure_reason: r.failure_reason().as_str().into(),
        }
    }
}

/// Prints events, and draws the UI.
pub struct Reporter {
    mode: Mode,
    /// The terminal's width: the bars fit it.
    columns: u16,
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<FetchUid, ProgressBar>>,
    last: Mutex<HashMap<FetchUid, UiSnapshot>>,
    last_plain: Mutex<HashMap<FetchUid, Instant>>,
    /// Recent (time, downloaded) samples of each fetch, for its rate.
    samples: Mutex<HashMap<FetchUid, std::collections::VecDeque<(Instant, u64)>>>,
    out: Mutex<()>,
}

/// The span of samples a rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl Reporter {
    /// A reporter printing in `mode`.
    pub fn new(mode: Mode) -> Reporter {
        let columns = rustix::termios::tcgetwinsize(std::io::stderr())
            .ok()
            .map(|w| w.ws_col)
            .filter(|c| *c > 0)
            .unwrap_or(80);
        Self::with_draw_target(mode, ProgressDrawTarget::stderr(), columns)
    }

    /// A reporter whose bars (in [`Mode::Terminal`]) are drawn to `target`, `columns` wide.
    pub fn with_draw_target(mode: Mode, target: ProgressDrawTarget, columns: u16) -> Reporter {
        let multi = (mode == Mode::Terminal).then(|| MultiProgress::with_draw_target(target));
        Reporter {
            columns,
            mode,
            multi,
            bars: Mutex::default(),
            last: Mutex::default(),
            last_plain: Mutex::default(),
            samples: Mutex::default(),
            out: Mutex::default(),
        }
    }

    /// Its mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A line for the user (not an event): stderr in JSON mode, above the bars on a terminal.
    pub fn note(&self, text: &str) {
        match self.mode {
            Mode::Json | Mode::Quiet => eprintln!("{text}"),
            Mode::Terminal => match &self.multi {
                Some(m) => {
                    let _ = m.println(text);
                }
                None => eprintln!("{text}"),
            },
            Mode::Plain => self.line(text),
        }
    }

    /// An error or warning: always on stderr, whatever the display.
    pub fn error(&self, text: &str) {
        match &self.multi {
            Some(m) => m.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    /// A record's body is in place at `path` (`--out`): a `saved` event in JSON, a line otherwise.
    pub fn saved(&self, id: &str, url: &str, path: &std::path::Path) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => self.line(
                &json!({"event": "saved", "id": id, "url": url, "path": path.to_string_lossy()})
                    .to_string(),
            ),
            Mode::Terminal | Mode::Plain => {
                self.note(&format!("saved {url} to {}", path.display()))
            }
        }
    }

    fn line(&self, text: &str) {
        let _g = self.out.lock().unwrap();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    /// Prints event `event` with `fields`.
    pub fn event(&self, event: &str, fields: &Fields, extra: Option<(&str, &str)>) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => {
                let mut v = json!({
                    "event": event,
                    "id": fields.id,
                    "downloaded": fields.downloaded,
                    "downloadTotal": fields.download_total,
                    "uploaded": fields.uploaded,
                    "uploadTotal": fields.upload_total,
                    "result": fields.result,
                    "failureReason": fields.failure_reason,
                });
                if let Some((k, val)) = extra {
                    v[k] = json!(val);
                }
                self.line(&v.to_string());
            }
            Mode::Terminal | Mode::Plain => {
                let text = match event {
                    "progress" => format!(
                        "{} {}: {} of {}",
                        event,
                        fields.id,
                        human(fields.downloaded),
                        if fields.download_total > 0 {
                            human(fields.download_total)
                        } else {
                            "?".into()
                        }
                    ),
                    "backgroundfetchfail" | "backgroundfetchabort" => {
                        format!("{event} {}: {}", fields.id, fields.failure_reason)
                    }
                    _ => match extra {
                        Some((_, v)) => format!("{event} {} ({v})", fields.id),
                        None => format!("{event} {}", fields.id),
                    },
                };
                if self.mode == Mode::Terminal && event == "progress" {
                    return; // the bar shows it
                }
                self.note(&text);
            }
        }
    }

    /// The download rate of fetch `uid` over the last few seconds, in bytes per second (0
    /// when nothing arrived lately).
    pub fn rate(&self, uid: FetchUid) -> u64 {
        let samples = self.samples.lock().unwrap();
        let Some(s) = samples.get(&uid) else { return 0 };
        let (Some(first), Some(last)) = (s.front(), s.back()) else {
            return 0;
        };
        let now = Instant::now();
        if now.duration_since(last.0) > Duration::from_secs(2) {
            return 0;
        }
        let span = now.duration_since(first.0).as_secs_f64();
        if span <= 0.0 {
            return 0;
        }
        (last.1.saturating_sub(first.1) as f64 / span) as u64
    }

    fn sample(&self, ui: &UiSnapshot) {
        let mut samples = self.samples.lock().unwrap();
        let s = samples.entry(ui.uid).or_default();
        let now = Instant::now();
        if s.back().is_some_and(|(_, d)| *d > ui.downloaded) {
            // A restart from zero (a 200 answer to a resume): measure afresh.
            s.clear();
        }
        s.push_back((now, ui.downloaded));
        while s.len() > 2
            && s.front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            s.pop_front();
        }
    }

    /// A record settled: its `record` event (JSON only; the other displays explain failures
    /// when the fetch settles).
    pub fn record(&self, event: &serde_json::Value) {
        if self.mode == Mode::Json {
            self.line(&event.to_string());
        }
    }

    /// A functional event reached the program (its service worker role).
    pub fn functional(&self, kind: FunctionalEventKind, r: &BackgroundFetchRegistration) {
        self.event(kind.event_type(), &Fields::of_registration(r), None);
    }

    fn bar(&self, ui: &UiSnapshot) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let mut bars = self.bars.lock().unwrap();
        let bar = bars.entry(ui.uid).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(ui.download_total));
            let style =
                ProgressStyle::with_template(&bar_template(self.columns, ui.download_total > 0));
            bar.set_style(
                style
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Some(bar.clone())
    }

    fn label(ui: &UiSnapshot) -> String {
        let title = if ui.title.is_empty() {
            &ui.id
        } else {
            &ui.title
        };
        let state = if !ui.online {
            " (offline)"
        } else if ui.awaiting_permission {
            " (waiting for permission)"
        } else if ui.paused {
            " (paused)"
        } else {
            ""
        };
        format!("{title}{state}")
    }
}

/// A progress bar's template that fits `columns`. The widest the numbers get: `{bytes}` and
/// `{total_bytes}` 11 characters each (`1023.99 MiB`), `{bytes_per_sec}` 13, `{eta}` 3.
fn bar_template(columns: u16, known_total: bool) -> String {
    let c = columns as usize;
    match (known_total, c) {
        // 30 + 4 + 23 + 14 + 7 = 78, and a bar of at least 20.
        (true, 100..) => {
            "{msg:30!} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}".into()
        }
        // msg + 4 + 23 + 14 = msg + 41, and a bar of at least 11.
        (true, 60..) => format!(
            "{{msg:{}!}} [{{wide_bar}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}",
            (c - 52).min(30)
        ),
        (true, _) => "{wide_msg} {bytes}/{total_bytes}".into(),
        // msg + 2 + 11 + 14.
        (false, 40..) => format!(
            "{{msg:{}!}} {{spinner}} {{bytes}} {{bytes_per_sec}}",
            (c - 28).min(30)
        ),
        (false, _) => "{wide_msg} {bytes}".into(),
    }
}

/// Bytes in human units (binary prefixes).
pub fn human(n: u64) -> String {
    HumanBytes(n).to_string()
}

impl UiHost for Reporter {
    /// Prints `registered`: the display starts when `fetch()` registers a fetch (before any
    /// byte is fetched), or when `run` restores one from the store.
    fn show(&self, ui: &UiSnapshot) {
        self.last.lock().unwrap().insert(ui.uid, ui.clone());
        self.event("registered", &Fields::of_ui(ui), None);
        if let Some(bar) = self.bar(ui) {
            bar.set_message(Self::label(ui));
            bar.set_position(ui.downloaded);
        }
    }

    fn update(&self, ui: &UiSnapshot) {
        self.sample(ui);
        let prev = self.last.lock().unwrap().insert(ui.uid, ui.clone());
        if let Some(bar) = self.bar(ui) {
            bar.set_message(Self::label(ui));
            if ui.download_total > 0 {
                bar.set_length(ui.download_total.max(ui.downloaded));
            }
            bar.set_position(ui.downloaded);
            if ui.result != background_fetch::BackgroundFetchResult::Empty {
                bar.finish();
            }
        }
        let fields = Fields::of_ui(ui);
        if let Some(prev) = &prev {
            if prev.paused != ui.paused {
                self.event(
                    if ui.paused { "paused" } else { "resumed" },
                    &fields,
                    Some(("reason", "user")),
                );
            }
            if prev.online != ui.online {
                self.event(
                    if ui.online { "resumed" } else { "paused" },
                    &fields,
                    Some(("reason", if ui.online { "online" } else { "offline" })),
                );
            }
        }
        let moved = prev
            .as_ref()
            .is_none_or(|p| p.downloaded != ui.downloaded || p.uploaded != ui.uploaded);
        if moved && ui.result == background_fetch::BackgroundFetchResult::Empty {
            if self.mode == Mode::Plain {
                // Plain lines: at most one progress line per second per fetch.
                let mut last = self.last_plain.lock().unwrap();
                let now = Instant::now();
                if last
                    .get(&ui.uid)
                    .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1))
                {
                    return;
                }
                last.insert(ui.uid, now);
            }
            self.event("progress", &fields, None);
        }
    }

    fn remove(&self, uid: FetchUid) {
        if let Some(bar) = self.bars.lock().unwrap().remove(&uid) {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use indicatif::InMemoryTerm;

    #[test]
    fn human_units() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.50 KiB");
        assert_eq!(human(60 * 1024 * 1024), "60.00 MiB");
    }

    #[test]
    fn choosing_the_display_follows_stderr() {
        assert_eq!(choose_mode(true, true), Mode::Json);
        assert_eq!(choose_mode(false, true), Mode::Terminal);
        // stdout a terminal, stderr redirected: plain lines, so nothing is drawn into a file.
        assert_eq!(choose_mode(false, false), Mode::Plain);
    }

    /// Issue 17 item 15: the bar was about 100 columns on any terminal (it wrapped on an
    /// 80-column one).
    #[test]
    fn the_progress_bar_fits_the_terminal() {
        for cols in [30u16, 50, 60, 80, 99, 100, 160] {
            for total in [0u64, 1023 << 30] {
                let term = InMemoryTerm::new(4, cols);
                let bar = ProgressBar::with_draw_target(
                    Some(total),
                    ProgressDrawTarget::term_like(Box::new(term.clone())),
                );
                // The widest numbers there are: 1023.99 MiB, 1023.99 MiB/s, 59m.
                let template = bar_template(cols, total > 0)
                    .replace("{bytes_per_sec}", "1023.99 MiB/s")
                    .replace("{eta}", "59m")
                    .replace("{bytes}", "1023.99 MiB")
                    .replace("{total_bytes}", "1023.99 GiB");
                bar.set_style(ProgressStyle::with_template(&template).unwrap());
                bar.set_message("A title that is longer than the room the bar leaves for it");
                bar.set_position(total / 2);
                bar.tick();
                let screen = term.contents();
                let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
                // InMemoryTerm wraps like a terminal: one line means the bar fits.
                assert_eq!(lines.len(), 1, "{cols} columns, total {total}: {screen:?}");
                if cols >= 60 && total > 0 {
                    assert!(!lines[0].contains("[]"), "a visible bar: {screen:?}");
                }
            }
        }
    }
}
