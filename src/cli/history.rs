//! `sentinel-vip history [--json] [--limit N]`: the switches this watcher saw,
//! newest first, from the journal under `state_dir` (`daemon::journal`). Needs
//! no sentinel and no EC2: only the config's `state_dir`. A corrupt line is
//! skipped with a warning (on stderr) naming the file and line.

use super::Exit;
use crate::config::Config;
use crate::daemon::journal::JournalFile;
use crate::decide::journal::{SwitchRecord, TableResult};

pub(super) fn run(cfg: &Config, json: bool, limit: usize) -> Exit {
    let journal = JournalFile::new(&cfg.state_dir).read();
    for p in &journal.problems {
        eprintln!("warning: {p}");
    }
    let newest: Vec<&SwitchRecord> = journal.records.iter().rev().take(limit).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&newest).unwrap_or_default()
        );
        return Exit::Ok;
    }
    if newest.is_empty() {
        println!(
            "no switches journalled in {} (the daemon writes one line per switch it sees)",
            cfg.state_dir.display()
        );
        return Exit::Ok;
    }
    println!(
        "{:<24} {:<12} {:<40} {:<13} {:<7} {:>9} {:<11} tables",
        "time (UTC)", "master", "old -> new", "cause", "planned", "event->ok", "this watcher"
    );
    for r in newest {
        println!("{}", row(r));
    }
    Exit::Ok
}

/// One record as a table row.
fn row(r: &SwitchRecord) -> String {
    let moved = format!("{} -> {}", r.old.as_deref().unwrap_or("?"), r.new);
    let planned = match r.planned {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let ms = r
        .event_to_verified_ms
        .map(|m| format!("{m:.0} ms"))
        .unwrap_or_else(|| "-".into());
    let by = if r.wrote { "wrote" } else { "found right" };
    let tables: Vec<String> = r
        .tables
        .iter()
        .map(|t| {
            let res = match &t.result {
                TableResult::Written => "written".to_owned(),
                TableResult::AlreadyRight => "already right".to_owned(),
                TableResult::Failed(e) => format!("failed ({e})"),
            };
            format!("{}={res}", t.table)
        })
        .collect();
    format!(
        "{:<24} {:<12} {:<40} {:<13} {:<7} {:>9} {:<11} {}",
        r.time,
        r.master,
        moved,
        r.cause.as_str(),
        planned,
        ms,
        by,
        tables.join(", ")
    )
}
