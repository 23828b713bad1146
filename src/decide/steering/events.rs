//! What the sentinels' links deliver: link up/down, refused subscriptions, and
//! parsed events, above all the `+switch-master` fast path and its guard.

use std::time::Instant;

use tracing::{debug, info, warn};

use super::{Action, Cause, Steering, Unconfirmed, CONFIRM_FIRST};
use crate::decide::fold::AlertInput;
use crate::watch::event::{Addr, Event, InstanceEvent as IE, Role};
use crate::watch::SentinelId;

impl Steering {
    pub(super) fn set_refused(
        &mut self,
        id: SentinelId,
        why: Option<String>,
        out: &mut Vec<Action>,
    ) {
        let Some(slot) = self.refused.get_mut(id) else {
            return;
        };
        if slot.is_some() == why.is_some() {
            *slot = why;
            return;
        }
        let sentinel = self.sentinels.get(id).cloned().unwrap_or_default();
        out.push(Action::Alert(AlertInput::SentinelRefused {
            sentinel,
            ok: why.is_none(),
            detail: why.clone().unwrap_or_default(),
        }));
        *slot = why;
    }

    pub(super) fn set_connected(&mut self, id: SentinelId, up: bool) {
        if let Some(c) = self.connected.get_mut(id) {
            *c = up;
        }
    }

    pub(super) fn on_event(
        &mut self,
        now: Instant,
        sentinel: SentinelId,
        event: Event,
        at: Instant,
        out: &mut Vec<Action>,
    ) {
        let from = self
            .sentinels
            .get(sentinel)
            .cloned()
            .unwrap_or_else(|| format!("#{sentinel}"));
        match event {
            Event::Instance { kind, instance, .. } if instance.role == Role::Replica => {
                // Sentinel names every replica it learns or reconfigures: keep the
                // set of plausible switch targets current between reads.
                if matches!(
                    kind,
                    IE::Slave | IE::PromotedSlave | IE::ConvertToSlave | IE::SlaveReconfDone
                ) {
                    if let Some(st) = self.masters.get_mut(&instance.master) {
                        st.replicas.insert(instance.addr);
                    }
                }
            }
            Event::SwitchMaster { master, old, new } => {
                self.on_switch(now, &from, master, old, new, at, out)
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_switch(
        &mut self,
        now: Instant,
        from: &str,
        master: String,
        old: Addr,
        new: Addr,
        at: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(st) = self.masters.get_mut(&master) else {
            debug!(%master, "ignored +switch-master for a master not in the config");
            return;
        };
        let heading_to = st.heading_to();
        if heading_to == Some(&new) {
            debug!(%master, %new, sentinel = %from, "duplicate +switch-master: VIP already there or on its way");
            return;
        }
        if let Some(vip_on) = heading_to.filter(|h| **h != old) {
            // Late (healed minority), forged, or after a missed failover.
            warn!(%master, %old, %new, %vip_on, sentinel = %from,
                "+switch-master does not start from the VIP's master (late or stale event?); asking the majority");
            self.request_read("unexpected +switch-master", out);
            return;
        }
        if !st.replicas.contains(&new) {
            warn!(%master, %old, %new, sentinel = %from,
                "+switch-master names a node the sentinels did not report as a replica; asking the majority before moving the VIP");
            self.request_read("+switch-master to an unknown node", out);
            return;
        }
        info!(%master, %old, %new, sentinel = %from, "+switch-master: moving the VIP (to be confirmed by the majority)");
        st.changed_seq = self.seq;
        st.unconfirmed = Some(Unconfirmed {
            addr: new.clone(),
            since: now,
            next_read: now + CONFIRM_FIRST,
            alerted: false,
            reverting: None,
        });
        st.replicas.remove(&new);
        st.replicas.insert(old);
        self.dispatch(&master, new, Cause::SwitchEvent, at, out);
    }
}
