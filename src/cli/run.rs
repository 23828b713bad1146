//! `sentinel-vip run`: the daemon (see `crate::daemon`), until SIGTERM/SIGINT.

use std::path::PathBuf;

use super::Exit;
use crate::config::Config;

pub(super) async fn run(path: PathBuf, cfg: Config) -> Exit {
    match crate::daemon::run(path, cfg).await {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Failed
        }
    }
}
