//! `sentinel-vip test-alert [--sink NAME]`: a clearly marked test incident to
//! each webhook sink (or one), each result printed.

use super::Exit;
use crate::act::sinks::Delivery;
use crate::config::Config;

pub(super) async fn run(cfg: &Config, sink: Option<&str>) -> Exit {
    if cfg.alerts.webhooks.is_empty() {
        eprintln!("error: no alerts.webhooks configured");
        return Exit::Usage;
    }
    let results = crate::daemon::alerts::test_alert(cfg, sink).await;
    if results.is_empty() {
        eprintln!("error: no sink named {:?}", sink.unwrap_or_default());
        return Exit::Usage;
    }
    let mut exit = Exit::Ok;
    for (name, r) in results {
        match r {
            Delivery::Sent { status, attempts } => {
                println!("ok    {name}: HTTP {status} after {attempts} attempt(s)")
            }
            Delivery::Failed { why, attempts } => {
                exit = Exit::Failed;
                println!("FAIL  {name}: {why} after {attempts} attempt(s)")
            }
        }
    }
    exit
}
