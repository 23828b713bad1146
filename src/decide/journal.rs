//! The switch journal's rules, pure: which inputs make one switch record, what
//! the record says, whether a switch was planned, and when the file rotates.
//! The file I/O and the task that feeds this live in `daemon/journal.rs`; the
//! CLI's `history` reads the records back.
//!
//! A *switch* is the VIP being verified on a master address other than the one
//! this watcher last verified it on (restored from the journal at start, so a
//! switch that happened while the watcher was down is recorded at its first
//! verification, cause `start`). One record per switch, written when the VIP is
//! verified (by this watcher's own write and read-back, or by a majority read
//! that found every table already right).
//!
//! **Planned rule** (to be unified with the incident fold's `planned`, issue 26
//! item 2): a switch is planned when no `+odown` for that master arrived between
//! the previous `+switch-master` (or the watcher's start) and this one — what
//! `SENTINEL FAILOVER` does (it publishes no `+sdown`/`+odown` first). A
//! majority read whose answers flag the master `o_down` counts as a `+odown`
//! (an event lost while a link was down, or published before this watcher
//! started). A window that opened at start is known only once a read after the
//! start saw the master's flags, or after [`START_GRACE`]: before that, a
//! watcher started in the middle of an outage may have missed its `+odown`, so
//! the switch is `unknown` (`planned: null`). A switch verified without any
//! `+switch-master` seen (found by a majority read) is `unknown` too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The journal file rotates when the next record would take it past this:
/// the current file is renamed to `<name>.1` (replacing an older one) and a
/// new one started. At ~600 bytes a record, 1 MiB holds ~1,700 switches;
/// `history` reads both files, so at most 2 MiB sit on disk.
pub const ROTATE_AT: u64 = 1024 * 1024;

/// A window of events that opened at the watcher's start counts as complete
/// (no `+odown` seen ⇒ planned) only once it is this old: `+odown` precedes a
/// failover's `+switch-master` by the election and promotion, seconds; a
/// watcher started later than that into an outage missed it.
pub const START_GRACE: Duration = Duration::from_secs(30);

/// A `+switch-master` not followed by a verification within this long is
/// forgotten (a forged or stale one the steering core refused).
pub const PENDING_FOR: Duration = Duration::from_secs(300);

/// Why this watcher verified the VIP on the new master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwitchCause {
    /// The fast path: a `+switch-master` event, written at once.
    #[serde(rename = "event")]
    Event,
    /// A majority read (the event was refused, missed, or another watcher
    /// moved the VIP first).
    #[serde(rename = "majority read")]
    MajorityRead,
    /// The first verification after this watcher started, with no event seen:
    /// the switch happened while it was not running.
    #[serde(rename = "start")]
    Start,
}

impl SwitchCause {
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchCause::Event => "event",
            SwitchCause::MajorityRead => "majority read",
            SwitchCause::Start => "start",
        }
    }
}

/// What became of one route table for this switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableResult {
    /// This watcher wrote it, and read it back pointing at the target.
    Written,
    /// It already pointed at the target (another watcher, or an earlier try).
    AlreadyRight,
    /// The write failed (the switch is still recorded: the table was verified
    /// right by a later read or the others were; the error is kept).
    Failed(String),
}

/// One table's line in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLine {
    pub table: String,
    pub result: TableResult,
}

/// One switch, as written to the journal (one JSON line) and shown by `history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchRecord {
    /// When the VIP was verified on the new master, RFC 3339 UTC.
    pub time: String,
    pub unix_ms: u64,
    pub master: String,
    /// Where the VIP was before (`null`: this watcher never saw it elsewhere).
    pub old: Option<String>,
    pub new: String,
    /// The EC2 target the routes point at (ENI / instance id), when known.
    pub target: Option<String>,
    pub cause: SwitchCause,
    /// `null`: unknown (see the module's planned rule).
    pub planned: Option<bool>,
    /// From the first `+switch-master` seen to the VIP verified; `null` when no
    /// event was seen.
    pub event_to_verified_ms: Option<f64>,
    /// True when this watcher wrote at least one table; false when it found
    /// every table already right.
    pub wrote: bool,
    pub tables: Vec<TableLine>,
}

/// What the driver feeds the journal, stamped with when it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalInput {
    /// `+odown` for a master (from any sentinel).
    Odown { master: String },
    /// `+switch-master`, as each sentinel publishes it.
    SwitchMaster {
        master: String,
        old: String,
        new: String,
    },
    /// A route write this watcher finished (ok or not).
    Write {
        master: String,
        addr: String,
        /// Whether it was the `+switch-master` fast path.
        fast_path: bool,
        target: Option<String>,
        tables: Vec<TableLine>,
    },
    /// A majority read's answers for a master: whether any sentinel flags it
    /// `o_down`.
    MasterFlags { master: String, odown: bool },
    /// The VIP is now verified on `addr` (the steering core's `applied` changed).
    Verified {
        master: String,
        addr: String,
        /// The master's tables, for a verification without a write of ours.
        tables: Vec<String>,
    },
}

/// A `+switch-master` waiting for the VIP to be verified on its new address.
#[derive(Debug, Clone)]
struct Pending {
    old: String,
    new: String,
    at: Instant,
    planned: Option<bool>,
}

/// The last write this watcher finished for a master.
#[derive(Debug, Clone)]
struct LastWrite {
    addr: String,
    fast_path: bool,
    target: Option<String>,
    tables: Vec<TableLine>,
}

#[derive(Debug, Clone, Default)]
struct Track {
    /// Where the VIP was last verified (restored from the journal at start).
    verified: Option<String>,
    /// Whether the VIP was verified at all since this watcher started.
    verified_since_start: bool,
    /// `+odown` seen since the previous switch (or start).
    odown: bool,
    /// Whether the window's start is known: it opened at a switch, or a read
    /// after the start saw the master's flags.
    window_known: bool,
    /// The last accepted `(old, new)`: the other sentinels' copies of the same
    /// `+switch-master` are duplicates.
    last_switch: Option<(String, String)>,
    pending: Option<Pending>,
    last_write: Option<LastWrite>,
}

/// The journal's state: per master, the window since its last switch.
#[derive(Debug)]
pub struct JournalFold {
    started: Instant,
    masters: HashMap<String, Track>,
}

impl JournalFold {
    /// `restored`: master → where the journal's newest record left the VIP.
    pub fn new(started: Instant, restored: HashMap<String, String>) -> JournalFold {
        JournalFold {
            started,
            masters: restored
                .into_iter()
                .map(|(m, addr)| {
                    (
                        m,
                        Track {
                            verified: Some(addr),
                            ..Track::default()
                        },
                    )
                })
                .collect(),
        }
    }

    /// Takes one input at `now` (`wall` = Unix ms, for the record's time);
    /// returns the record to append, if this input completed a switch.
    pub fn on_input(
        &mut self,
        now: Instant,
        wall: u64,
        input: JournalInput,
    ) -> Option<SwitchRecord> {
        let started = self.started;
        match input {
            JournalInput::Odown { master } => {
                self.masters.entry(master).or_default().odown = true;
                None
            }
            JournalInput::MasterFlags { master, odown } => {
                let t = self.masters.entry(master).or_default();
                t.odown |= odown;
                t.window_known = true;
                None
            }
            JournalInput::SwitchMaster { master, old, new } => {
                let t = self.masters.entry(master).or_default();
                let pair = (old.clone(), new.clone());
                if t.last_switch.as_ref() == Some(&pair) {
                    return None; // another sentinel's copy
                }
                let planned = planned(
                    t.odown,
                    t.window_known,
                    now.saturating_duration_since(started),
                );
                t.last_switch = Some(pair);
                t.odown = false;
                t.window_known = true;
                t.pending = Some(Pending {
                    old,
                    new,
                    at: now,
                    planned,
                });
                None
            }
            JournalInput::Write {
                master,
                addr,
                fast_path,
                target,
                tables,
            } => {
                self.masters.entry(master).or_default().last_write = Some(LastWrite {
                    addr,
                    fast_path,
                    target,
                    tables,
                });
                None
            }
            JournalInput::Verified {
                master,
                addr,
                tables,
            } => {
                let t = self.masters.entry(master.clone()).or_default();
                let first = !t.verified_since_start;
                t.verified_since_start = true;
                if t.pending
                    .as_ref()
                    .is_some_and(|p| now.saturating_duration_since(p.at) > PENDING_FOR)
                {
                    t.pending = None;
                }
                if t.verified.as_deref() == Some(addr.as_str()) {
                    return None;
                }
                let old_verified = t.verified.replace(addr.clone());
                let pending = t.pending.take_if(|p| p.new == addr);
                let write = t.last_write.take().filter(|w| w.addr == addr);
                let wrote = write
                    .as_ref()
                    .is_some_and(|w| w.tables.iter().any(|l| l.result == TableResult::Written));
                // Nothing known before and no event: the VIP found (or first
                // put) where the majority says, on a first run; not a switch.
                if old_verified.is_none() && pending.is_none() {
                    return None;
                }
                let cause = match (&write, &pending) {
                    (Some(w), _) if w.fast_path => SwitchCause::Event,
                    (_, None) if first => SwitchCause::Start,
                    _ => SwitchCause::MajorityRead,
                };
                let tables = match &write {
                    Some(w) => w.tables.clone(),
                    None => tables
                        .into_iter()
                        .map(|table| TableLine {
                            table,
                            result: TableResult::AlreadyRight,
                        })
                        .collect(),
                };
                Some(SwitchRecord {
                    time: rfc3339(wall),
                    unix_ms: wall,
                    master,
                    old: pending.as_ref().map(|p| p.old.clone()).or(old_verified),
                    new: addr,
                    target: write.and_then(|w| w.target),
                    cause,
                    planned: pending.as_ref().and_then(|p| p.planned),
                    event_to_verified_ms: pending
                        .as_ref()
                        .map(|p| now.saturating_duration_since(p.at).as_secs_f64() * 1e3),
                    wrote,
                    tables,
                })
            }
        }
    }
}

/// The planned rule: `odown` = a `+odown` (or an `o_down` flag in a read)
/// arrived in the window; `known` = the window opened at a previous switch or
/// a read after the start saw the flags; else it opened at start, `since_start` ago.
pub fn planned(odown: bool, known: bool, since_start: Duration) -> Option<bool> {
    if odown {
        Some(false)
    } else if known || since_start >= START_GRACE {
        Some(true)
    } else {
        None
    }
}

/// Whether a record of `line_len` bytes (newline included) must go to a fresh
/// file: only when the current one has something and would pass `limit`.
pub fn should_rotate(current_len: u64, line_len: usize, limit: u64) -> bool {
    current_len > 0 && current_len.saturating_add(line_len as u64) > limit
}

/// One record as its journal line (JSON, newline-terminated).
pub fn encode(r: &SwitchRecord) -> String {
    let mut s = serde_json::to_string(r).unwrap_or_default();
    s.push('\n');
    s
}

/// One journal line back into a record; the error says why it is not one.
pub fn decode(line: &str) -> Result<SwitchRecord, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}

/// Unix ms as RFC 3339 UTC with milliseconds.
pub fn rfc3339(unix_ms: u64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "mymaster";
    const A: &str = "10.0.1.11:6379";
    const B: &str = "10.0.1.12:6379";

    fn switch(old: &str, new: &str) -> JournalInput {
        JournalInput::SwitchMaster {
            master: M.into(),
            old: old.into(),
            new: new.into(),
        }
    }

    fn write(addr: &str, fast: bool, results: &[TableResult]) -> JournalInput {
        JournalInput::Write {
            master: M.into(),
            addr: addr.into(),
            fast_path: fast,
            target: Some("eni-1".into()),
            tables: results
                .iter()
                .enumerate()
                .map(|(i, r)| TableLine {
                    table: format!("rtb-{i}"),
                    result: r.clone(),
                })
                .collect(),
        }
    }

    fn verified(addr: &str) -> JournalInput {
        JournalInput::Verified {
            master: M.into(),
            addr: addr.into(),
            tables: vec!["rtb-0".into(), "rtb-1".into()],
        }
    }

    fn odown() -> JournalInput {
        JournalInput::Odown { master: M.into() }
    }

    /// Runs `inputs` at `t0 + offset_ms`, returns every record made.
    fn run(
        fold: &mut JournalFold,
        t0: Instant,
        inputs: Vec<(u64, JournalInput)>,
    ) -> Vec<SwitchRecord> {
        inputs
            .into_iter()
            .filter_map(|(ms, i)| {
                fold.on_input(t0 + Duration::from_millis(ms), 1_700_000_000_000 + ms, i)
            })
            .collect()
    }

    fn restored(addr: &str) -> HashMap<String, String> {
        HashMap::from([(M.to_owned(), addr.to_owned())])
    }

    #[test]
    fn a_switch_without_odown_is_planned_and_timed_from_its_first_event() {
        let t0 = Instant::now();
        let mut f = JournalFold::new(t0, restored(A));
        let recs = run(
            &mut f,
            t0,
            vec![
                (60_000, switch(A, B)),
                (60_010, switch(A, B)),
                (
                    60_040,
                    write(B, true, &[TableResult::Written, TableResult::AlreadyRight]),
                ),
                (60_041, verified(B)),
                (61_000, switch(A, B)),
            ],
        );
        assert_eq!(recs.len(), 1, "{recs:?}");
        let r = &recs[0];
        assert_eq!((r.old.as_deref(), r.new.as_str()), (Some(A), B));
        assert_eq!(r.cause, SwitchCause::Event);
        assert_eq!(r.planned, Some(true));
        assert_eq!(r.event_to_verified_ms, Some(41.0));
        assert!(r.wrote);
        assert_eq!(r.tables[1].result, TableResult::AlreadyRight);
    }

    #[test]
    fn odown_before_the_switch_makes_it_unplanned_and_the_next_window_starts_clean() {
        let t0 = Instant::now();
        let mut f = JournalFold::new(t0, restored(A));
        let recs = run(
            &mut f,
            t0,
            vec![
                (60_000, odown()),
                (62_000, switch(A, B)),
                (62_030, write(B, true, &[TableResult::Written])),
                (62_031, verified(B)),
                // The old master's +odown copies after the switch belong to
                // the next window only if they come before its switch.
                (90_000, switch(B, A)),
                (90_050, verified(A)),
            ],
        );
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].planned, Some(false));
        assert_eq!(recs[1].planned, Some(true));
        // Found right by a read (another watcher wrote): not written by us.
        assert_eq!(recs[1].cause, SwitchCause::MajorityRead);
        assert!(!recs[1].wrote);
        assert!(recs[1]
            .tables
            .iter()
            .all(|t| t.result == TableResult::AlreadyRight));
    }

    #[test]
    fn a_switch_right_after_start_is_unknown_not_planned() {
        let t0 = Instant::now();
        let mut f = JournalFold::new(t0, restored(A));
        let recs = run(
            &mut f,
            t0,
            vec![
                (2_000, switch(A, B)),
                (2_040, write(B, true, &[TableResult::Written])),
                (2_041, verified(B)),
            ],
        );
        assert_eq!(recs[0].planned, None);
        assert_eq!(planned(false, false, START_GRACE), Some(true));
        assert_eq!(planned(true, true, START_GRACE), Some(false));
        assert_eq!(planned(false, true, Duration::ZERO), Some(true));
    }

    fn flags(odown: bool) -> JournalInput {
        JournalInput::MasterFlags {
            master: M.into(),
            odown,
        }
    }

    #[test]
    fn a_read_after_start_makes_the_window_known_and_its_o_down_flag_counts_as_odown() {
        let t0 = Instant::now();
        // The start read saw the master healthy: a switchover 2 s later is planned.
        let mut f = JournalFold::new(t0, restored(A));
        let recs = run(
            &mut f,
            t0,
            vec![
                (50, flags(false)),
                (2_000, switch(A, B)),
                (2_041, verified(B)),
            ],
        );
        assert_eq!(recs[0].planned, Some(true));
        // Started mid-outage: the +odown was published before us, the read
        // shows o_down; the switch is unplanned.
        let mut f = JournalFold::new(t0, restored(A));
        let recs = run(
            &mut f,
            t0,
            vec![
                (50, flags(true)),
                (2_000, switch(A, B)),
                (2_041, verified(B)),
            ],
        );
        assert_eq!(recs[0].planned, Some(false));
        // A lost +odown seen only as a flag in a later read counts too.
        let recs = run(
            &mut f,
            t0,
            vec![
                (60_000, flags(true)),
                (61_000, switch(B, A)),
                (61_050, verified(A)),
            ],
        );
        assert_eq!(recs[0].planned, Some(false));
    }

    #[test]
    fn a_switch_missed_while_down_is_recorded_at_start_and_a_first_run_is_not() {
        let t0 = Instant::now();
        // The journal says A; the first read after start finds B right.
        let mut f = JournalFold::new(t0, restored(A));
        let recs = run(&mut f, t0, vec![(500, verified(B))]);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].cause, SwitchCause::Start);
        assert_eq!(recs[0].old.as_deref(), Some(A));
        assert_eq!(recs[0].planned, None);
        assert_eq!(recs[0].event_to_verified_ms, None);
        // A later verification at the same place is no switch.
        assert!(run(&mut f, t0, vec![(30_000, verified(B))]).is_empty());

        // No journal: the VIP found where it is, or first written there (a
        // route created on a first run), is the first state, not a switch.
        let mut fresh = JournalFold::new(t0, HashMap::new());
        assert!(run(&mut fresh, t0, vec![(500, verified(A))]).is_empty());
        let mut created = JournalFold::new(t0, HashMap::new());
        let first = vec![
            (400, write(A, false, &[TableResult::Written])),
            (401, verified(A)),
        ];
        assert!(run(&mut created, t0, first).is_empty());
        // From then on it is known: the next move is a switch from A.
        let recs = run(&mut created, t0, vec![(40_000, verified(B))]);
        assert_eq!(recs[0].old.as_deref(), Some(A));
        assert_eq!(recs[0].cause, SwitchCause::MajorityRead);
    }

    #[test]
    fn a_stale_switch_event_is_forgotten_and_a_write_for_another_address_is_not_used() {
        let t0 = Instant::now();
        let mut f = JournalFold::new(t0, restored(A));
        let recs = run(
            &mut f,
            t0,
            vec![
                (40_000, switch(A, B)),
                (40_010, write(A, false, &[TableResult::Written])),
                (400_000, verified(B)),
            ],
        );
        assert_eq!(
            recs[0].event_to_verified_ms, None,
            "pending older than PENDING_FOR"
        );
        assert!(!recs[0].wrote);
    }

    #[test]
    fn records_round_trip_as_one_json_line_and_time_is_rfc3339() {
        let r = SwitchRecord {
            time: rfc3339(1_700_000_000_123),
            unix_ms: 1_700_000_000_123,
            master: M.into(),
            old: Some(A.into()),
            new: B.into(),
            target: Some("eni-0b".into()),
            cause: SwitchCause::MajorityRead,
            planned: None,
            event_to_verified_ms: Some(12.5),
            wrote: true,
            tables: vec![
                TableLine {
                    table: "rtb-1".into(),
                    result: TableResult::Failed("Throttling: rate\nexceeded".into()),
                },
                TableLine {
                    table: "rtb-2".into(),
                    result: TableResult::Written,
                },
            ],
        };
        assert_eq!(r.time, "2023-11-14T22:13:20.123Z");
        let line = encode(&r);
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line}"
        );
        assert!(line.contains(r#""cause":"majority read""#), "{line}");
        assert!(line.contains(r#""planned":null"#), "{line}");
        assert_eq!(decode(line.trim_end()).unwrap(), r);
        assert!(decode("{\"time\": 1").is_err());
        assert!(decode("not json").is_err());
    }

    #[test]
    fn rotation_happens_only_past_the_limit_and_never_on_an_empty_file() {
        assert!(!should_rotate(0, 5_000_000, ROTATE_AT));
        assert!(!should_rotate(ROTATE_AT - 100, 100, ROTATE_AT));
        assert!(should_rotate(ROTATE_AT - 100, 101, ROTATE_AT));
        assert!(should_rotate(u64::MAX, 1, ROTATE_AT));
    }
}
