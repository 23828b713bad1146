//! Prometheus metrics (prometheus-client), one process-wide registry.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub(crate) struct Metrics {
    pub events: Family<Labels, Counter>,
    pub sentinel_connected: Family<Labels, Gauge>,
    pub route_updates: Family<Labels, Counter>,
    /// Event received (or decision taken) → every table written.
    pub route_update_seconds: Histogram,
    pub reconcile_seconds: Gauge<f64, AtomicU64>,
    pub reconcile_last_success: Gauge<f64, AtomicU64>,
    pub reconciles: Family<Labels, Counter>,
    pub no_majority: Family<Labels, Gauge>,
    pub route_ok: Family<Labels, Gauge>,
    pub switch_unconfirmed: Family<Labels, Gauge>,
    pub incidents_open: Gauge,
    pub alerts: Family<Labels, Counter>,
    pub alerts_dropped: Family<Labels, Counter>,
    /// Alert inputs the controller could not hand to the alert task (inbox full).
    pub alerts_inbox_dropped: Counter,
    pub ec2_calls: Family<Labels, Counter>,
    /// Per carrier of a master's address (route table, secondary IP, Elastic
    /// IP, DNS record): each write's result.
    pub carrier_writes: Family<Labels, Counter>,
    /// Read and write results the core gave up waiting for (its deadline passed).
    pub results_lost: Family<Labels, Counter>,
    /// A sentinel event's arrival at its watcher → the core handling it.
    pub input_delay_seconds: Histogram,
    registry: Registry,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("sentinel_vip");
        let m = Metrics {
            events: Family::default(),
            sentinel_connected: Family::default(),
            route_updates: Family::default(),
            route_update_seconds: Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            reconcile_seconds: Gauge::default(),
            reconcile_last_success: Gauge::default(),
            reconciles: Family::default(),
            no_majority: Family::default(),
            route_ok: Family::default(),
            switch_unconfirmed: Family::default(),
            incidents_open: Gauge::default(),
            alerts: Family::default(),
            alerts_dropped: Family::default(),
            alerts_inbox_dropped: Counter::default(),
            ec2_calls: Family::default(),
            carrier_writes: Family::default(),
            results_lost: Family::default(),
            input_delay_seconds: Histogram::new([
                0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
            ]),
            registry: Registry::default(),
        };
        r.register(
            "events",
            "Sentinel events received, by sentinel and type",
            m.events.clone(),
        );
        r.register(
            "sentinel_connected",
            "1 while the pub/sub connection to the sentinel is up",
            m.sentinel_connected.clone(),
        );
        r.register(
            "route_updates",
            "VIP route writes, by master and result",
            m.route_updates.clone(),
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
            m.no_majority.clone(),
        );
        r.register(
            "route_ok",
            "1 while the VIP route is verified on the sentinel majority's master in every table",
            m.route_ok.clone(),
        );
        r.register(
            "switch_unconfirmed",
            "1 while the VIP sits where a +switch-master put it and no majority has confirmed it",
            m.switch_unconfirmed.clone(),
        );
        r.register("incidents_open", "Open incidents", m.incidents_open.clone());
        r.register(
            "alerts",
            "Alert deliveries, by sink and result",
            m.alerts.clone(),
        );
        r.register(
            "alerts_dropped",
            "Alerts dropped because a sink's queue was full",
            m.alerts_dropped.clone(),
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
            m.carrier_writes.clone(),
        );
        Metrics { registry: r, ..m }
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
