//! The least-privilege ACL a watcher needs ([`NEEDED_COMMANDS`], [`acl_rule`])
//! and `check`'s probe of it.

use std::time::Duration;

use fred::interfaces::ClientLike;

use super::*;

/// One command the watcher sends to a sentinel, with the ACL rule that allows
/// it and why it is needed: the single list the README's rule, `check`'s
/// permission probe and the ACL test are held to.
pub struct NeededCommand {
    /// The command as sent (`{master}` and `{name}` are filled in).
    pub args: &'static [&'static str],
    /// The ACL rule that grants it.
    pub rule: &'static str,
    pub why: &'static str,
    /// False: refused only costs noise in `ACL LOG` (fred tolerates it).
    pub required: bool,
}

/// Every command sent on a command link (the subscriber's `PSUBSCRIBE *` and
/// `PING` are probed by [`probe_subscribe`]).
pub const NEEDED_COMMANDS: &[NeededCommand] = &[
    NeededCommand {
        args: &["INFO", "sentinel"],
        rule: "+info",
        why: "TILT detection in every majority read (fred also sends INFO server at connect)",
        required: true,
    },
    NeededCommand {
        args: &["SENTINEL", "MASTERS"],
        rule: "+sentinel|masters",
        why: "config-epoch and flags in every majority read",
        required: true,
    },
    NeededCommand {
        args: &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "{master}"],
        rule: "+sentinel|get-master-addr-by-name",
        why: "where each sentinel says the master is",
        required: true,
    },
    NeededCommand {
        args: &["SENTINEL", "REPLICAS", "{master}"],
        rule: "+sentinel|replicas",
        why: "the replicas that guard the fast path",
        required: true,
    },
    NeededCommand {
        args: &["SENTINEL", "MASTER", "{master}"],
        rule: "+sentinel|master",
        why: "check and target warm-up",
        required: true,
    },
    NeededCommand {
        args: &["ROLE"],
        rule: "+role",
        why: "proof that the endpoint is a sentinel (check)",
        required: true,
    },
    NeededCommand {
        args: &["CLIENT", "SETNAME", "{name}"],
        rule: "+client|setname",
        why: "naming this watcher for the live-watcher rule",
        required: true,
    },
    NeededCommand {
        args: &["CLIENT", "LIST"],
        rule: "+client|list",
        why: "seeing which watchers are live (alerts.local_sentinel)",
        required: true,
    },
    NeededCommand {
        args: &["CLIENT", "ID"],
        rule: "+client|id",
        why: "sent by fred at every connect; refused it only fills ACL LOG",
        required: false,
    },
];

/// The exact Redis 7 ACL rule for the watcher user (besides `on` and its password).
pub fn acl_rule() -> String {
    let mut rule = vec!["resetchannels", "&*", "-@all", "+psubscribe", "+ping"];
    rule.extend(NEEDED_COMMANDS.iter().map(|c| c.rule));
    rule.join(" ")
}

/// Tries `PSUBSCRIBE *` on a short-lived connection (for `check`): `Err` says
/// which permission is missing ([`SubscribeError::Refused`]), or that the
/// sentinel did not answer or could not be reached ([`SubscribeError::NoAnswer`]);
/// its text is [`SubscribeError::explain`]'s.
pub async fn probe_subscribe(
    addr: &Addr,
    auth: Option<&SentinelAuth>,
) -> Result<(), (SubscribeError, String)> {
    let c = client(addr, auth);
    drop(c.connect());
    let user = auth.and_then(|a| a.username.as_deref());
    let result = match tokio::time::timeout(Duration::from_secs(3), c.wait_for_connect()).await {
        Ok(Ok(())) => psubscribe_confirmed(&c).await,
        Ok(Err(e)) => Err(SubscribeError::NoAnswer(format!("cannot connect: {e}"))),
        Err(_) => Err(SubscribeError::NoAnswer(
            "cannot connect within 3 s".to_owned(),
        )),
    }
    .map_err(|e| {
        let said = e.explain(user);
        (e, said)
    });
    let _ = c.quit().await;
    result
}
