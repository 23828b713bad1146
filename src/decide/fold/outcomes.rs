//! Route outcomes and the other conditions (sentinel majority, EC2, a
//! refused subscription, an unreadable route table, a config-epoch that went
//! back): each opens an incident while bad and resolves it when good again.

use super::{Condition, Fold, Kind, RouteReport, Severity, Stamp, State};

impl Fold {
    /// Attaches a route outcome; a failed write opens a RouteFailure incident,
    /// a good one resolves it (or drops it, when it was never told).
    pub fn on_route(&mut self, at: Stamp, r: &RouteReport) {
        if !self.configured(&r.master) {
            self.ignored += 1;
            return;
        }
        let target = self
            .incidents
            .values_mut()
            .filter(|i| i.master == r.master && i.kind == Kind::Failover)
            .find(|i| i.to.as_deref() == Some(r.addr.as_str()) || i.state == State::Firing);
        if let Some(i) = target {
            if i.route
                .as_ref()
                .is_none_or(|old| !old.ok || r.tables_written > 0)
            {
                i.route = Some(r.clone());
            }
        }
        if r.ok {
            self.route_right(at, r.clone());
            return;
        }
        match self.incidents.values_mut().find(|i| {
            i.master == r.master && i.kind == Kind::RouteFailure && i.state == State::Firing
        }) {
            Some(i) => i.detail = r.error.clone(),
            None => {
                let key = self.occurrence_key(at.mono, &r.master, "route");
                if let Some(i) = self.open(
                    at,
                    key,
                    &r.master,
                    Kind::RouteFailure,
                    Severity::Critical,
                    None,
                ) {
                    i.detail = r.error.clone();
                    i.route = Some(r.clone());
                    i.occurrence = Some("route".into());
                }
            }
        }
    }

    /// A read found `master`'s VIP route right (`addr` → `target`) in every
    /// table without writing: another watcher fixed it, or a read-back was
    /// slow. Resolves its route failure (drops it when never told).
    pub fn on_route_verified(&mut self, at: Stamp, master: &str, addr: &str, target: &str) {
        if !self.configured(master) {
            self.ignored += 1;
            return;
        }
        let total = self
            .incidents
            .values()
            .find(|i| {
                i.master == master && i.kind == Kind::RouteFailure && i.state == State::Firing
            })
            .and_then(|i| i.route.as_ref().map(|r| r.tables_total))
            .unwrap_or(0);
        self.route_right(
            at,
            RouteReport {
                master: master.to_owned(),
                addr: addr.to_owned(),
                ok: true,
                target: target.to_owned(),
                tables_written: 0,
                tables_total: total,
                carriers: Vec::new(),
                latency_ms: 0.0,
                error: None,
            },
        );
    }

    fn route_right(&mut self, at: Stamp, r: RouteReport) {
        if self.firing(&r.master, &Kind::RouteTableUnreadable) {
            // A table that cannot be read cannot be right: the route is not
            // verified while any table of the master is unreadable.
            return;
        }
        let Some(i) = self.incidents.values_mut().find(|i| {
            i.master == r.master && i.kind == Kind::RouteFailure && i.state == State::Firing
        }) else {
            return;
        };
        if i.sent.is_none() {
            // Failed and fixed within group_wait: never told, nothing to tell.
            let k = i.key.clone();
            self.incidents.remove(&k);
            return;
        }
        i.resolve(at);
        i.route = Some(r);
    }

    /// Majority lost (`ok == false`) or regained for `master`.
    pub fn on_majority(&mut self, at: Stamp, master: &str, ok: bool, detail: &str) {
        if !self.configured(master) {
            self.ignored += 1;
            return;
        }
        self.on_condition(at, master, Kind::NoMajority, "majority", !ok, detail);
    }

    /// EC2 unreachable (`down == true`) or reachable again.
    pub fn on_ec2(&mut self, at: Stamp, down: bool, detail: &str) {
        self.on_condition(at, "*", Kind::Ec2Unreachable, "ec2", down, detail);
    }

    /// A sentinel refusing (`refused == true`) or accepting again the
    /// watcher's PSUBSCRIBE. One incident per sentinel.
    pub fn on_sentinel_refused(&mut self, at: Stamp, sentinel: &str, refused: bool, detail: &str) {
        // Keyed by the sentinel (in the master slot): one incident each.
        self.on_condition(
            at,
            sentinel,
            Kind::SentinelRefused,
            "subscribe",
            refused,
            detail,
        );
    }

    /// Whether an incident of `kind` is firing for `master`.
    fn firing(&self, master: &str, kind: &Kind) -> bool {
        self.incidents
            .values()
            .any(|i| i.master == master && i.kind == *kind && i.state == State::Firing)
    }

    /// A failure the steering core found that no event announces (see
    /// [`Condition`]), while `bad`, and its end. An unreadable route table is
    /// critical and, like the other conditions, dropped when it ends before
    /// it was told; an accepted config-epoch regression is a warning that is
    /// always told, resolved-only when it ended before its first message.
    pub fn on_failure_condition(
        &mut self,
        at: Stamp,
        master: &str,
        condition: Condition,
        bad: bool,
        detail: &str,
    ) {
        if !self.configured(master) {
            self.ignored += 1;
            return;
        }
        match condition {
            Condition::TableUnreadable => self.on_condition(
                at,
                master,
                Kind::RouteTableUnreadable,
                "tables",
                bad,
                detail,
            ),
            Condition::EpochWentBack => {
                self.on_condition(at, master, Kind::EpochWentBack, "epoch-back", bad, detail)
            }
        }
    }

    fn on_condition(
        &mut self,
        at: Stamp,
        master: &str,
        kind: Kind,
        what: &str,
        bad: bool,
        detail: &str,
    ) {
        let open = self
            .incidents
            .values_mut()
            .find(|i| i.master == master && i.kind == kind && i.state == State::Firing);
        match (bad, open) {
            (true, Some(i)) => i.detail = Some(detail.to_owned()),
            (true, None) => {
                let key = self.occurrence_key(at.mono, master, what);
                let severity = match kind {
                    Kind::EpochWentBack => Severity::Warning,
                    _ => Severity::Critical,
                };
                if let Some(i) = self.open(at, key, master, kind, severity, None) {
                    i.detail = Some(detail.to_owned());
                    i.occurrence = Some(what.to_owned());
                }
            }
            (false, Some(i)) => {
                i.resolved = Some(at.mono);
                if i.sent.is_none() && i.kind != Kind::EpochWentBack {
                    let k = i.key.clone();
                    self.incidents.remove(&k);
                } else {
                    i.state = State::Resolved;
                    i.resolved_at = Some(at.wall);
                }
            }
            (false, None) => {}
        }
    }
}
