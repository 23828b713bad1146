//! All message text of an incident: its headline ([`Incident::summary`]), its
//! longer text ([`Incident::description`]) and the phrases they are built of.

use super::incident::{Ended, Incident, Kind, RouteReport, State};
use crate::watch::event::InstanceEvent;

impl Incident {
    /// One-line summary, the message's headline.
    pub fn summary(&self) -> String {
        // A master's flaps are summarised once it is up again without a
        // failover; while down, or failed over, its own headline says more.
        let failover_news =
            self.kind == Kind::Failover && (self.to.is_some() || self.state == State::Firing);
        if self.flapped() && !failover_news {
            return self.flap_summary();
        }
        let route = self.route.as_ref().map(route_text).unwrap_or_default();
        let from = self.from.as_deref().unwrap_or("?");
        let aborted_by = match self.ended {
            Some(Ended::Aborted(e)) => Some(e),
            _ => None,
        };
        match (&self.kind, self.state) {
            (_, State::Resolved) if self.ended == Some(Ended::Removed) => format!(
                "{}: {} no longer watched (master removed from the config)",
                self.master,
                self.kind.alertname()
            ),
            (Kind::Failover, State::Resolved) if aborted_by.is_some() => {
                let event = aborted_by.map(InstanceEvent::channel).unwrap_or_default();
                let after = if self.down {
                    "; the master is still down and Sentinel will retry"
                } else {
                    "; the master was not changed"
                };
                format!(
                    "{}: failover from {from} ABORTED: {} ({event}){after}",
                    self.master,
                    abort_reason(aborted_by)
                )
            }
            (Kind::Failover, State::Resolved) => match (&self.from, &self.to) {
                (Some(f), Some(t)) if self.planned => {
                    let vip = match &self.route {
                        Some(r) if r.ok && r.tables_written > 0 => {
                            format!("VIP moved in {:.0} ms", r.latency_ms)
                        }
                        Some(r) if r.ok => "VIP route already right".to_owned(),
                        Some(r) => format!(
                            "VIP route update FAILED: {}",
                            r.error.as_deref().unwrap_or("?")
                        ),
                        None => "VIP move not confirmed yet".to_owned(),
                    };
                    format!("planned switchover of {}: {f} → {t}, {vip}", self.master)
                }
                (Some(f), Some(t)) => {
                    let took = self
                        .failover_time
                        .map(|d| format!(" in {:.1} s", d.as_secs_f64()))
                        .unwrap_or_default();
                    format!("{} failed over {f} → {t}{took}{route}", self.master)
                }
                _ => format!("{} is back up at {from} (no failover)", self.master),
            },
            (Kind::Failover, State::Firing) if !self.down => format!(
                "{}: failover from {from} started but has not finished",
                self.master
            ),
            (Kind::Failover, State::Firing) => match &self.aborted {
                Some(event) => format!(
                    "{} is down at {from} (objectively down); failover ABORTED: {} ({event}); Sentinel will retry",
                    self.master,
                    abort_reason(Some(*event))
                ),
                None => format!(
                    "{} is down at {from} (objectively down); failover in progress",
                    self.master
                ),
            },
            (Kind::InstanceDown { role, instance }, State::Firing) => {
                format!("{} {role} {instance} is down", self.master)
            }
            (Kind::InstanceDown { role, instance }, State::Resolved) => {
                format!("{} {role} {instance} is back up", self.master)
            }
            (Kind::RouteFailure, State::Firing) => format!(
                "{}: VIP route update FAILED: {}",
                self.master,
                self.detail.as_deref().unwrap_or("unknown error")
            ),
            (Kind::RouteFailure, State::Resolved) => match &self.route {
                Some(r) if r.ok && r.tables_written == 0 => format!(
                    "{}: VIP route is right again: {} → {} (found by a read; no write needed)",
                    self.master, r.addr, r.target
                ),
                _ => format!("{}: VIP route update recovered{route}", self.master),
            },
            (Kind::NoMajority, State::Firing) => format!(
                "{}: no sentinel majority; VIP route held where it is ({})",
                self.master,
                self.detail.as_deref().unwrap_or("")
            ),
            (Kind::NoMajority, State::Resolved) => {
                format!("{}: sentinel majority is back", self.master)
            }
            (Kind::Ec2Unreachable, State::Firing) => format!(
                "EC2 API unreachable: route tables cannot be read or written ({})",
                self.detail.as_deref().unwrap_or("")
            ),
            (Kind::Ec2Unreachable, State::Resolved) => "EC2 API reachable again".to_owned(),
            (Kind::SentinelRefused, State::Firing) => format!(
                "sentinel refuses the watcher's subscription: events from it are not seen ({})",
                self.detail.as_deref().unwrap_or("")
            ),
            (Kind::SentinelRefused, State::Resolved) => {
                "sentinel accepts the watcher's subscription again".to_owned()
            }
            (Kind::RouteTableUnreadable, State::Firing) => format!(
                "{}: route table cannot be read, so the VIP route there can be neither checked nor repaired: {}",
                self.master,
                self.detail.as_deref().unwrap_or("")
            ),
            (Kind::RouteTableUnreadable, State::Resolved) => {
                format!("{}: every route table can be read again", self.master)
            }
            (Kind::EpochWentBack, State::Firing) => format!(
                "{}: {}",
                self.master,
                self.detail.as_deref().unwrap_or("config-epoch went back")
            ),
            (Kind::EpochWentBack, State::Resolved) => format!(
                "{}: the sentinel majority has held since its config-epoch went back ({})",
                self.master,
                self.detail.as_deref().unwrap_or("")
            ),
        }
    }

    /// The headline of a flap series: what happened since the last notice
    /// and how it is now ("replica X went down 5 times in 35 s; up now").
    fn flap_summary(&self) -> String {
        let span = match (self.flap_from, self.flap_last) {
            (Some(a), Some(b)) => format!(" in {} s", b.saturating_duration_since(a).as_secs()),
            _ => String::new(),
        };
        let times = |n: u32| {
            if n == 1 {
                "once".to_owned()
            } else {
                format!("{n} times")
            }
        };
        let now = if self.state == State::Firing {
            "down now"
        } else {
            "up now"
        };
        let again = if self.notices > 0 { " again" } else { "" };
        match &self.kind {
            Kind::InstanceDown { role, instance } => format!(
                "{} {role} {instance} went down{again} {}{span}; {now}",
                self.master,
                times(self.downs)
            ),
            Kind::Failover => format!(
                "{} went down{again} at {} {}{span} (objectively down, no failover); {now}",
                self.master,
                self.from.as_deref().unwrap_or("?"),
                times(self.downs)
            ),
            other => format!(
                "{}: {} fired{again} {}{span}; {}",
                self.master,
                other.alertname(),
                times(self.downs),
                if self.state == State::Firing {
                    "firing now"
                } else {
                    "resolved now"
                }
            ),
        }
    }

    /// Longer text: annotations and counts.
    pub fn description(&self) -> String {
        let mut parts = Vec::new();
        if !self.annotations.is_empty() {
            parts.push(format!("progress: {}", self.annotations.join(", ")));
        }
        if let Some(r) = &self.route {
            parts.push(if r.ok {
                format!(
                    "route: {} → {} in {}/{} tables",
                    r.addr, r.target, r.tables_written, r.tables_total
                )
            } else {
                format!("route: FAILED: {}", r.error.as_deref().unwrap_or("?"))
            });
            if !r.carriers.is_empty() {
                parts.push(format!("carriers: {}", r.carriers.join(", ")));
            }
        }
        parts.push(format!("{} sentinel events folded", self.events));
        parts.join("; ")
    }
}

/// What a `-failover-abort-*` event means (redis 7.0 `sentinel.c`).
fn abort_reason(event: Option<InstanceEvent>) -> &'static str {
    match event {
        // sentinelFailoverWaitStart: not leader within min(10 s, failover-timeout).
        Some(InstanceEvent::AbortNotElected) => "no sentinel was elected leader to run it",
        // sentinelFailoverSelectSlave: no replica passed the selection.
        Some(InstanceEvent::AbortNoGoodSlave) => "no replica fit to be promoted",
        // sentinelFailoverSendSlaveOfNoOne / WaitPromotion: over failover-timeout.
        Some(InstanceEvent::AbortSlaveTimeout) => {
            "the selected replica did not become master within failover-timeout"
        }
        _ => "Sentinel aborted it",
    }
}

fn route_text(r: &RouteReport) -> String {
    if r.ok && r.tables_written > 0 {
        format!(
            "; VIP route updated in {} table{} in {:.0} ms",
            r.tables_written,
            if r.tables_written == 1 { "" } else { "s" },
            r.latency_ms
        )
    } else if r.ok {
        "; VIP route already right".to_owned()
    } else {
        format!(
            "; VIP route update FAILED: {}",
            r.error.as_deref().unwrap_or("?")
        )
    }
}
