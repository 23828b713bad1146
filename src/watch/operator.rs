//! What `sentinel-vip switchover` asks a sentinel beyond the watcher's reads:
//! each replica's fields (`SENTINEL REPLICAS`) for the pre-check, and `SENTINEL
//! FAILOVER` itself. The watcher's least-privilege ACL user may run the first
//! (`+sentinel|replicas`) but not the second: [`OPERATOR_ACL_RULE`] is the rule
//! for the operator user `switchover` uses.

use std::collections::HashMap;

use fred::interfaces::SentinelInterface;

use super::*;

/// The ACL rule for the operator user that `switchover` sends `SENTINEL
/// FAILOVER` with (separate from the watcher's [`acl_rule`]): the command
/// itself, plus what every connection sends (fred's `INFO` at connect, `PING`,
/// `CLIENT SETNAME`).
pub const OPERATOR_ACL_RULE: &str =
    "resetchannels -@all +sentinel|failover +info +ping +client|setname";

impl SentinelLink {
    /// `SENTINEL REPLICAS <name>`: every field of every replica, as Sentinel
    /// prints them (`flags`, `master-link-status`, `slave-repl-offset`,
    /// `slave-priority`, `info-refresh`, ...).
    pub async fn replica_fields(
        &self,
        name: &str,
    ) -> Result<Vec<HashMap<String, String>>, SentinelError> {
        self.cmd
            .replicas::<Vec<HashMap<String, String>>, _>(name)
            .await
            .map_err(|e| SentinelError::Failed {
                command: format!("SENTINEL REPLICAS {name}"),
                reason: e.to_string(),
            })
    }

    /// `SENTINEL FAILOVER <name>`: Sentinel starts a forced failover at once
    /// (no agreement asked, no `+sdown`/`+odown` published) and answers `OK`,
    /// or refuses (`NOGOODSLAVE`, `INPROG`, `NOPERM` ...).
    pub async fn failover(&self, name: &str) -> Result<(), SentinelError> {
        self.cmd
            .failover::<Value, _>(name)
            .await
            .map(|_| ())
            .map_err(|e| SentinelError::Failed {
                command: format!("SENTINEL FAILOVER {name}"),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_operations_guide_gives_the_operator_rule_verbatim() {
        let doc = include_str!("../../docs/operations.md");
        assert!(
            doc.contains(super::OPERATOR_ACL_RULE),
            "docs/operations.md lacks {}",
            super::OPERATOR_ACL_RULE
        );
    }
}
