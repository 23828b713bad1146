//! Maps a Redis master address to its EC2 target: the static `nodes` map, or
//! discovery of the ENI that holds the private IP (cached, warmed ahead of a
//! failover so that the switch path never waits for a lookup).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{MasterConfig, Target};
use crate::ec2::{Ec2, Ec2Error};
use crate::event::Addr;
use crate::plan::static_target;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    #[error("{addr} is not in masters.{master}.nodes; add it there")]
    NotInNodes { master: String, addr: Addr },
    #[error("no network interface in EC2 holds private IP {0}")]
    NotFound(String),
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
}

/// Target resolution with a shared discovery cache (private IP → ENI).
#[derive(Clone, Default)]
pub struct Targets {
    cache: Arc<Mutex<HashMap<String, Target>>>,
}

impl Targets {
    /// The target if it is known without I/O (static map or cache).
    pub fn cached(
        &self,
        master: &str,
        cfg: &MasterConfig,
        addr: &Addr,
    ) -> Option<Result<Target, TargetError>> {
        match &cfg.nodes {
            Some(nodes) => {
                Some(
                    static_target(nodes, addr).ok_or_else(|| TargetError::NotInNodes {
                        master: master.to_owned(),
                        addr: addr.clone(),
                    }),
                )
            }
            None => self.cache.lock().ok()?.get(&addr.host).cloned().map(Ok),
        }
    }

    /// The target, discovering it through EC2 when it is not cached.
    pub async fn resolve(
        &self,
        ec2: &Ec2,
        master: &str,
        cfg: &MasterConfig,
        addr: &Addr,
    ) -> Result<Target, TargetError> {
        if let Some(t) = self.cached(master, cfg, addr) {
            return t;
        }
        self.discover(ec2, &addr.host).await
    }

    /// Looks `ip` up in EC2 and caches the answer.
    pub async fn discover(&self, ec2: &Ec2, ip: &str) -> Result<Target, TargetError> {
        let found = ec2
            .find_interface(ip)
            .await?
            .ok_or_else(|| TargetError::NotFound(ip.to_owned()))?;
        let target = Target::Eni(found.eni_id);
        if let Ok(mut c) = self.cache.lock() {
            c.insert(ip.to_owned(), target.clone());
        }
        Ok(target)
    }

    /// Whether `ip` is already in the discovery cache.
    pub fn is_cached(&self, ip: &str) -> bool {
        self.cache
            .lock()
            .map(|c| c.contains_key(ip))
            .unwrap_or(false)
    }
}
