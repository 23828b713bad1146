//! Prometheus metrics (prometheus-client), one process-wide registry.
//!
//! The families labelled by a sentinel, a master or a sink are [`Scoped`]: a
//! reload that removes one of those removes its series, and a late write from
//! a task of the old config (a closing watcher saying "disconnected") cannot
//! bring it back — a removed master left at `route_ok 0` would fire its alert
//! forever.

use std::collections::{BTreeSet, HashSet};
use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex, PoisonError};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Which label scopes a [`Scoped`] family: the config names its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Sentinel,
    Master,
    Sink,
}

impl Scope {
    fn label(self) -> &'static str {
        match self {
            Scope::Sentinel => "sentinel",
            Scope::Master => "master",
            Scope::Sink => "sink",
        }
    }
}

/// The sentinels, masters and sinks of the running config (None: no config
/// yet, everything is kept).
#[derive(Debug, Default, Clone)]
struct Configured {
    sentinels: BTreeSet<String>,
    masters: BTreeSet<String>,
    sinks: BTreeSet<String>,
}

impl Configured {
    fn of(&self, scope: Scope) -> &BTreeSet<String> {
        match scope {
            Scope::Sentinel => &self.sentinels,
            Scope::Master => &self.masters,
            Scope::Sink => &self.sinks,
        }
    }
}

static CONFIGURED: Mutex<Option<Configured>> = Mutex::new(None);

/// Whether `labels`' `scope` value is one the running config names.
fn in_config(scope: Scope, labels: &Labels) -> bool {
    let guard = CONFIGURED.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(c) = guard.as_ref() else {
        return true;
    };
    labels
        .iter()
        .filter(|(k, _)| *k == scope.label())
        .all(|(_, v)| c.of(scope).contains(v))
}

/// A metric family whose series belong to one configured sentinel, master or
/// sink. It remembers the label sets it made (prometheus-client cannot list
/// them) so [`Metrics::scope_to`] can remove those the config no longer names;
/// a write to a series the config does not name goes to a detached metric.
pub(crate) struct Scoped<M> {
    family: Family<Labels, M>,
    scope: Scope,
    made: Mutex<HashSet<Labels>>,
}

/// A series of a [`Scoped`] family: the registered one, or a detached one
/// when its sentinel/master/sink is not in the running config.
pub(crate) enum Series<G, M> {
    Live(G),
    Detached(M),
}

impl<G: Deref<Target = M>, M> Deref for Series<G, M> {
    type Target = M;
    fn deref(&self) -> &M {
        match self {
            Series::Live(g) => g,
            Series::Detached(m) => m,
        }
    }
}

impl<M: Default + prometheus_client::metrics::TypedMetric> Scoped<M> {
    fn new(scope: Scope) -> Scoped<M> {
        Scoped {
            family: Family::default(),
            scope,
            made: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn get_or_create(&self, labels: &Labels) -> Series<impl Deref<Target = M> + '_, M> {
        // Checked under `made`'s lock, which `retain` takes too: a series is
        // either made before a reload removes it, or refused after.
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if !in_config(self.scope, labels) {
            return Series::Detached(M::default());
        }
        if !made.contains(labels) {
            made.insert(labels.clone());
        }
        Series::Live(self.family.get_or_create(labels))
    }

    /// Removes every series whose scope label the config does not name.
    fn retain(&self, configured: &Configured) {
        let keep = configured.of(self.scope);
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        made.retain(|labels| {
            let kept = labels
                .iter()
                .filter(|(k, _)| *k == self.scope.label())
                .all(|(_, v)| keep.contains(v));
            if !kept {
                self.family.remove(labels);
            }
            kept
        });
    }
}

pub(crate) struct Metrics {
    pub events: Scoped<Counter>,
    pub sentinel_connected: Scoped<Gauge>,
    /// PSUBSCRIBE attempts that did not take, by sentinel and reason
    /// (`refused`: ACL; `no_answer`: a link problem).
    pub subscribe_failures: Scoped<Counter>,
    pub route_updates: Scoped<Counter>,
    /// Event received (or decision taken) → every table written.
    pub route_update_seconds: Histogram,
    pub reconcile_seconds: Gauge<f64, AtomicU64>,
    pub reconcile_last_success: Gauge<f64, AtomicU64>,
    pub reconciles: Family<Labels, Counter>,
    pub no_majority: Scoped<Gauge>,
    pub route_ok: Scoped<Gauge>,
    pub switch_unconfirmed: Scoped<Gauge>,
    pub incidents_open: Gauge,
    pub alerts: Scoped<Counter>,
    pub alerts_dropped: Scoped<Counter>,
    /// Alert inputs the controller could not hand to the alert task (inbox full).
    pub alerts_inbox_dropped: Counter,
    pub ec2_calls: Family<Labels, Counter>,
    /// Per carrier of a master's address (route table, secondary IP, Elastic
    /// IP, DNS record): each write's result.
    pub carrier_writes: Scoped<Counter>,
    /// Read and write results the core gave up waiting for (its deadline passed).
    pub results_lost: Family<Labels, Counter>,
    /// A sentinel event's arrival at its watcher → the core handling it.
    pub input_delay_seconds: Histogram,
    /// 1 when the last config load (start or SIGHUP) was accepted, 0 when refused.
    pub config_last_reload_successful: Gauge,
    /// Unix time of the last accepted config load (start or SIGHUP).
    pub config_last_reload_success: Gauge<f64, AtomicU64>,
    /// Switch-journal failures (unwritable, corrupt line, full feed), by kind.
    pub journal_errors: Family<Labels, Counter>,
    /// Standby checks (another watcher is the designated writer), by what
    /// they found: `already_right`, `written` (in the writer's place),
    /// `unreadable` (could not read: nothing written, retried).
    pub standby_checks: Family<Labels, Counter>,
    /// This watcher's place in the route-writing order now: 0 the designated
    /// writer, r a standby checking r steps late.
    pub writer_rank: Gauge,
    /// Watchers of the deployment seen alive through `CLIENT LIST` (-1: cannot
    /// tell); absent without `local_sentinel`.
    pub watchers_alive: Gauge,
    registry: Registry,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("sentinel_vip");
        let m = Metrics {
            events: Scoped::new(Scope::Sentinel),
            sentinel_connected: Scoped::new(Scope::Sentinel),
            subscribe_failures: Scoped::new(Scope::Sentinel),
            route_updates: Scoped::new(Scope::Master),
            route_update_seconds: Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            reconcile_seconds: Gauge::default(),
            reconcile_last_success: Gauge::default(),
            reconciles: Family::default(),
            no_majority: Scoped::new(Scope::Master),
            route_ok: Scoped::new(Scope::Master),
            switch_unconfirmed: Scoped::new(Scope::Master),
            incidents_open: Gauge::default(),
            alerts: Scoped::new(Scope::Sink),
            alerts_dropped: Scoped::new(Scope::Sink),
            alerts_inbox_dropped: Counter::default(),
            ec2_calls: Family::default(),
            carrier_writes: Scoped::new(Scope::Master),
            results_lost: Family::default(),
            input_delay_seconds: Histogram::new([
                0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
            ]),
            config_last_reload_successful: Gauge::default(),
            config_last_reload_success: Gauge::default(),
            journal_errors: Family::default(),
            standby_checks: Family::default(),
            writer_rank: Gauge::default(),
            watchers_alive: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "events",
            "Sentinel events received, by sentinel and type",
            m.events.family.clone(),
        );
        r.register(
            "sentinel_connected",
            "1 while the pub/sub connection to the sentinel is up",
            m.sentinel_connected.family.clone(),
        );
        r.register(
            "subscribe_failures",
            "PSUBSCRIBE * attempts that did not take, by sentinel and reason (refused: ACL NOPERM; no_answer: timeout or link error)",
            m.subscribe_failures.family.clone(),
        );
        r.register(
            "route_updates",
            "VIP route writes, by master and result",
            m.route_updates.family.clone(),
        );
        r.register(
            "results_lost",
            "Majority read and route write results that never came (the core's deadline passed; retried), by kind",
            m.results_lost.clone(),
        );
        r.register(
            "input_delay_seconds",
            "From a sentinel event's arrival at its watcher to the decision core handling it",
            m.input_delay_seconds.clone(),
        );
        r.register(
            "route_update_seconds",
            "From event (or reconcile decision) to every route table written",
            m.route_update_seconds.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Duration of the last majority read",
            m.reconcile_seconds.clone(),
        );
        r.register(
            "reconcile_last_success_timestamp_seconds",
            "Unix time of the last successful reconcile",
            m.reconcile_last_success.clone(),
        );
        r.register(
            "reconciles",
            "Majority reads, by result",
            m.reconciles.clone(),
        );
        r.register(
            "no_majority",
            "1 while no sentinel majority agrees on the master",
            m.no_majority.family.clone(),
        );
        r.register(
            "route_ok",
            "1 while the VIP route is verified on the sentinel majority's master in every table",
            m.route_ok.family.clone(),
        );
        r.register(
            "switch_unconfirmed",
            "1 while the VIP sits where a +switch-master put it and no majority has confirmed it",
            m.switch_unconfirmed.family.clone(),
        );
        r.register("incidents_open", "Open incidents", m.incidents_open.clone());
        r.register(
            "alerts",
            "Alert deliveries, by sink and result",
            m.alerts.family.clone(),
        );
        r.register(
            "alerts_dropped",
            "Alerts dropped because a sink's queue was full",
            m.alerts_dropped.family.clone(),
        );
        r.register(
            "alerts_inbox_dropped",
            "Alert inputs dropped because the alert task's inbox was full",
            m.alerts_inbox_dropped.clone(),
        );
        r.register(
            "ec2_calls",
            "EC2 API calls (pages), by operation and result",
            m.ec2_calls.clone(),
        );
        r.register(
            "carrier_writes",
            "Writes per carrier of a master's address, by master, kind (route_table, secondary_ip, elastic_ip, dns) and result (written, read_back_wrong, failed)",
            m.carrier_writes.family.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "1 when the last config load (start or SIGHUP) was accepted, 0 when it was refused and the previous config kept",
            m.config_last_reload_successful.clone(),
        );
        r.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last accepted config load (start or SIGHUP)",
            m.config_last_reload_success.clone(),
        );
        r.register(
            "journal_errors",
            "Switch-journal errors (never a stop), by kind: write, read, corrupt, dropped",
            m.journal_errors.clone(),
        );
        r.register(
            "standby_checks",
            "Route writes this watcher checked as a standby (another is the designated writer), by what its read found: already_right (nothing written), written (in the writer's place), unreadable (the read failed: nothing written, retried)",
            m.standby_checks.clone(),
        );
        r.register(
            "writer_rank",
            "This watcher's place in the route-writing order (updated every second): 0 the designated writer, r a standby that checks r steps of aws.standby_check_after late",
            m.writer_rank.clone(),
        );
        r.register(
            "watchers_alive",
            "Watchers of the deployment seen alive through CLIENT LIST on a majority of the sentinels that answered (-1: none answered); only with local_sentinel",
            m.watchers_alive.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The running config's sentinels, masters and sinks: every series of
    /// another is removed, and none is made again until a config names it.
    /// Called at start and after each accepted reload.
    pub(crate) fn scope_to(&self, cfg: &crate::config::Config) {
        let configured = Configured {
            sentinels: cfg.sentinels.iter().map(ToString::to_string).collect(),
            masters: cfg.masters.keys().cloned().collect(),
            sinks: cfg.alerts.webhooks.iter().map(|w| w.name.clone()).collect(),
        };
        // The new scope first: a write racing this call is either refused
        // or made before `retain` removes it.
        // (Lock order: `made`, then CONFIGURED; never both the other way.)
        *CONFIGURED.lock().unwrap_or_else(PoisonError::into_inner) = Some(configured.clone());
        self.events.retain(&configured);
        self.sentinel_connected.retain(&configured);
        self.subscribe_failures.retain(&configured);
        self.route_updates.retain(&configured);
        self.carrier_writes.retain(&configured);
        self.no_majority.retain(&configured);
        self.route_ok.retain(&configured);
        self.switch_unconfirmed.retain(&configured);
        self.alerts.retain(&configured);
        self.alerts_dropped.retain(&configured);
    }

    /// A config load's outcome (start and SIGHUP), as Alertmanager exports it.
    pub(crate) fn config_loaded(&self, accepted: bool, now_unix: f64) {
        self.config_last_reload_successful.set(i64::from(accepted));
        if accepted {
            self.config_last_reload_success.set(now_unix);
        }
    }

    /// The OpenMetrics 1.0 text exposition (what prometheus-client encodes).
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The exposition `format` asks for.
    pub(crate) fn render_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.render(),
            Format::Text004 => openmetrics_to_text004(&self.render()),
        }
    }
}

/// The two exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
    /// The classic Prometheus text format, `text/plain; version=0.0.4`.
    Text004,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// Content negotiation on an `Accept` header: OpenMetrics only when the
    /// scraper asks for it at least as much as for the classic format
    /// (Prometheus ranks OpenMetrics first; curl and older scrapers ask for
    /// nothing or `text/plain` and get the classic format).
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

/// Rewrites OpenMetrics text as the classic 0.0.4 format: a counter's
/// `# TYPE`/`# HELP` name carries the `_total` its samples have, `# UNIT` and
/// `# EOF` are OpenMetrics-only and go.
pub(crate) fn openmetrics_to_text004(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# TYPE ", "# HELP "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_accept_header_gets_openmetrics() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn classic_or_no_accept_gets_text_004() {
        for a in [
            None,
            Some("*/*"),
            Some("text/plain;version=0.0.4"),
            Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"),
            Some("application/openmetrics-text;q=0"),
        ] {
            assert_eq!(Format::negotiate(a), Format::Text004, "{a:?}");
        }
    }

    #[test]
    fn text_004_names_counters_with_total_and_has_no_eof() {
        let om = "# HELP x_events Events.\n# TYPE x_events counter\nx_events_total{a=\"b\"} 1\n# HELP x_open Open.\n# TYPE x_open gauge\nx_open 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_text004(om),
            "# HELP x_events_total Events.\n# TYPE x_events_total counter\nx_events_total{a=\"b\"} 1\n# HELP x_open Open.\n# TYPE x_open gauge\nx_open 2\n"
        );
    }
}
