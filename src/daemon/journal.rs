//! The switch journal: one JSON line per switch this watcher saw, under
//! `state_dir` (`switches.jsonl`, rotated to `switches.jsonl.1` at
//! [`ROTATE_AT`](crate::decide::journal::ROTATE_AT)). The rules (what makes a
//! record, planned or not) are pure, in `decide::journal`; this file is the
//! feed the controller offers to, the task that owns the file, and the reader
//! `history` uses.
//!
//! **Architecture Invariant:** the journal never stops or slows the controller.
//! The controller only `try_send`s to a bounded channel ([`JournalFeed`]); a
//! full channel drops the input (counted). The task writes the file; an
//! unwritable `state_dir` or a corrupt line is a warning and
//! `sentinel_vip_journal_errors_total{kind}`, never a stop. The task ends when
//! the controller (the feed's owner) is dropped.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{info, warn};

use crate::decide::journal::{
    decode, encode, should_rotate, JournalFold, JournalInput, SwitchRecord, TableLine, TableResult,
    ROTATE_AT,
};
use crate::decide::quorum::Answer;
use crate::decide::steering::{Cause, ReadOutcome, WriteOutcome};
use crate::ops::metrics::METRICS;
use crate::ops::status::MasterStatus;
use crate::watch::event::{Event, InstanceEvent, Role};

/// The journal's file name under `state_dir`; the previous one is `<name>.1`.
pub(crate) const FILE: &str = "switches.jsonl";

/// Inputs waiting for the journal task; a burst of events from three
/// sentinels is a handful, so this only fills when the disk hangs.
const FEED_CAPACITY: usize = 256;

fn count(kind: &'static str) {
    METRICS
        .journal_errors
        .get_or_create(&vec![("kind", kind.to_owned())])
        .inc();
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The controller's side: offers inputs, never waits. The default feed is off.
#[derive(Debug, Default)]
pub(crate) struct JournalFeed {
    tx: Option<mpsc::Sender<(Instant, u64, JournalInput)>>,
    /// Per master, the `applied` address last offered (only changes are sent).
    applied: Mutex<HashMap<String, String>>,
    /// Whether drops are being logged already (one warning per burst).
    dropping: AtomicBool,
}

impl JournalFeed {
    fn offer(&self, at: Instant, input: JournalInput) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send((at, unix_ms(), input)) {
            Ok(()) => self.dropping.store(false, Ordering::Relaxed),
            Err(TrySendError::Full(_)) => {
                count("dropped");
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    warn!("switch journal is behind (disk slow?): dropping journal inputs; the route path is not affected");
                }
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// A sentinel event: only `+odown` of a master and `+switch-master` matter.
    pub(crate) fn event(&self, event: &Event, at: Instant) {
        let input = match event {
            Event::SwitchMaster { master, old, new } => JournalInput::SwitchMaster {
                master: master.clone(),
                old: old.to_string(),
                new: new.to_string(),
            },
            Event::Instance {
                kind: InstanceEvent::Odown,
                instance,
                ..
            } if instance.role == Role::Master => JournalInput::Odown {
                master: instance.master.clone(),
            },
            _ => return,
        };
        self.offer(at, input);
    }

    /// A finished route write, table by table.
    pub(crate) fn write(&self, w: &WriteOutcome) {
        let target = w.target.as_ref().ok().map(|t| t.to_string());
        let tables = w
            .tables
            .iter()
            .map(|(t, r)| TableLine {
                table: t.to_string(),
                result: match r {
                    Ok(true) => TableResult::Written,
                    Ok(false) => TableResult::AlreadyRight,
                    Err(e) => TableResult::Failed(e.to_string()),
                },
            })
            .collect();
        self.offer(
            Instant::now(),
            JournalInput::Write {
                master: w.master.clone(),
                addr: w.addr.to_string(),
                fast_path: w.cause == Cause::SwitchEvent,
                target,
                tables,
            },
        );
    }

    /// A majority read: per master, whether a sentinel flags it `o_down`
    /// (a `+odown` this watcher may have missed).
    pub(crate) fn read(&self, o: &ReadOutcome) {
        if self.tx.is_none() {
            return;
        }
        for (master, answers) in &o.answers {
            let views: Vec<&str> = answers
                .iter()
                .filter_map(|a| match a {
                    Answer::View(v) => Some(v.flags.as_str()),
                    _ => None,
                })
                .collect();
            if views.is_empty() {
                continue;
            }
            let odown = views.iter().any(|f| f.split(',').any(|x| x == "o_down"));
            self.offer(
                Instant::now(),
                JournalInput::MasterFlags {
                    master: master.clone(),
                    odown,
                },
            );
        }
    }

    /// The status the controller publishes: where each master's VIP is
    /// verified. Only a change is offered.
    pub(crate) fn status<'a>(&self, masters: impl IntoIterator<Item = &'a MasterStatus>) {
        if self.tx.is_none() {
            return;
        }
        let Ok(mut last) = self.applied.lock() else {
            return;
        };
        for m in masters {
            let Some(addr) = &m.applied else { continue };
            if last.get(&m.name) == Some(addr) {
                continue;
            }
            last.insert(m.name.clone(), addr.clone());
            self.offer(
                Instant::now(),
                JournalInput::Verified {
                    master: m.name.clone(),
                    addr: addr.clone(),
                    tables: m.tables.iter().map(|t| t.id.clone()).collect(),
                },
            );
        }
    }
}

/// Starts the journal task for `state_dir`; returns the controller's feed.
/// The task ends when the feed is dropped.
pub(crate) fn spawn(state_dir: &Path) -> JournalFeed {
    let (tx, mut rx) = mpsc::channel(FEED_CAPACITY);
    let dir = state_dir.to_owned();
    tokio::spawn(async move {
        let file = Arc::new(JournalFile::new(&dir));
        let restored = {
            let f = file.clone();
            tokio::task::spawn_blocking(move || f.restore())
                .await
                .unwrap_or_default()
        };
        let mut fold = JournalFold::new(Instant::now(), restored);
        while let Some((at, wall, input)) = rx.recv().await {
            if let Some(record) = fold.on_input(at, wall, input) {
                info!(master = %record.master, old = record.old.as_deref().unwrap_or("?"),
                    new = %record.new, cause = record.cause.as_str(), "switch journalled");
                let f = file.clone();
                let _ = tokio::task::spawn_blocking(move || f.append(&record)).await;
            }
        }
    });
    JournalFeed {
        tx: Some(tx),
        ..JournalFeed::default()
    }
}

/// The journal's files and the one-warning-per-failure-run state.
pub(crate) struct JournalFile {
    path: PathBuf,
    previous: PathBuf,
    /// Set while appends fail: warn once, then again when it works.
    failing: AtomicBool,
}

impl JournalFile {
    pub(crate) fn new(state_dir: &Path) -> JournalFile {
        let path = state_dir.join(FILE);
        let previous = state_dir.join(format!("{FILE}.1"));
        JournalFile {
            path,
            previous,
            failing: AtomicBool::new(false),
        }
    }

    /// Appends one record, rotating first when it would pass the limit.
    /// A failure is a warning (once per run of failures) and a metric.
    pub(crate) fn append(&self, record: &SwitchRecord) {
        let line = encode(record);
        match self.try_append(&line) {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!(path = %self.path.display(), "switch journal writable again");
                }
            }
            Err(e) => {
                count("write");
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!(path = %self.path.display(), error = %e,
                        "cannot write the switch journal (state_dir); switches are not journalled until it works, routes are not affected");
                }
            }
        }
    }

    fn try_append(&self, line: &str) -> std::io::Result<()> {
        let len = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        if should_rotate(len, line.len(), ROTATE_AT) {
            std::fs::rename(&self.path, &self.previous)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        // One write per line: an append of a few hundred bytes is not split.
        f.write_all(line.as_bytes())?;
        f.flush()
    }

    /// Where the newest records left each master's VIP.
    fn restore(&self) -> HashMap<String, String> {
        let mut last = HashMap::new();
        for r in self.read().records {
            last.insert(r.master, r.new);
        }
        last
    }

    /// Every record, oldest first (the previous file, then the current one);
    /// corrupt lines skipped and counted (with a warning each, line named).
    pub(crate) fn read(&self) -> Journal {
        let mut out = Journal::default();
        for p in [&self.previous, &self.path] {
            let text = match std::fs::read(p) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    count("read");
                    let why = format!("cannot read {}: {e}", p.display());
                    warn!("{why}");
                    out.problems.push(why);
                    continue;
                }
            };
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match decode(line) {
                    Ok(r) => out.records.push(r),
                    Err(e) => {
                        count("corrupt");
                        let why = format!(
                            "{}:{}: skipped, not a journal record ({e})",
                            p.display(),
                            n + 1
                        );
                        warn!("{why}");
                        out.problems.push(why);
                    }
                }
            }
        }
        out
    }
}

/// What a read of the journal found.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    pub records: Vec<SwitchRecord>,
    /// Unreadable files and skipped lines, each naming the file and line.
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::journal::SwitchCause;

    fn record(n: u64) -> SwitchRecord {
        SwitchRecord {
            time: String::new(),
            unix_ms: n,
            master: "m".into(),
            old: Some("a:1".into()),
            new: format!("b:{n}"),
            target: None,
            cause: SwitchCause::Event,
            planned: Some(true),
            event_to_verified_ms: Some(1.0),
            wrote: true,
            tables: vec![],
        }
    }

    #[test]
    fn rotates_keeping_one_previous_file_and_reads_both_skipping_corrupt_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = JournalFile::new(dir.path());
        let per = encode(&record(1)).len() as u64;
        let n = ROTATE_AT / per + 5;
        for i in 0..n {
            f.append(&record(i));
        }
        let cur = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        let prev = std::fs::metadata(dir.path().join(format!("{FILE}.1")))
            .unwrap()
            .len();
        assert!(
            cur <= ROTATE_AT && prev <= ROTATE_AT && cur > 0,
            "{cur} {prev}"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap()
            .write_all(b"{half a line\n")
            .unwrap();
        let j = f.read();
        assert_eq!(j.records.last().unwrap().unix_ms, n - 1);
        assert_eq!(j.problems.len(), 1, "{:?}", j.problems);
        assert!(j.problems[0].contains(FILE), "{:?}", j.problems);
        assert_eq!(f.restore()["m"], format!("b:{}", n - 1));
    }

    #[test]
    fn an_unwritable_state_dir_is_counted_not_fatal() {
        let f = JournalFile::new(Path::new("/nonexistent/sentinel-vip-state"));
        f.append(&record(1));
        f.append(&record(2));
        assert!(f.read().records.is_empty());
    }
}
