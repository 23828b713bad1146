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

pub struct Metrics {
    pub events: Family<Labels, Counter>,
    pub sentinel_connected: Family<Labels, Gauge>,
    pub route_updates: Family<Labels, Counter>,
    /// Event received (or decision taken) → every table written.
    pub route_update_seconds: Histogram,
    pub reconcile_seconds: Gauge<f64, AtomicU64>,
    pub reconcile_last_success: Gauge<f64, AtomicU64>,
    pub reconciles: Family<Labels, Counter>,
    pub no_majority: Family<Labels, Gauge>,
    pub incidents_open: Gauge,
    pub alerts: Family<Labels, Counter>,
    pub alerts_dropped: Family<Labels, Counter>,
    /// Alert inputs the controller could not hand to the alert task (inbox full).
    pub alerts_inbox_dropped: Counter,
    pub ec2_calls: Family<Labels, Counter>,
    registry: Registry,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

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
            incidents_open: Gauge::default(),
            alerts: Family::default(),
            alerts_dropped: Family::default(),
            alerts_inbox_dropped: Counter::default(),
            ec2_calls: Family::default(),
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
        Metrics { registry: r, ..m }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
