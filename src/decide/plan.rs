//! Route planning: which route tables need a write for a desired target. Pure.

use crate::config::Target;

/// The VIP's route in one table, as last read from EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentRoute {
    /// No route for the VIP's CIDR in this table.
    Missing,
    /// A route exists; `blackhole` means its target is gone.
    Points {
        instance_id: Option<String>,
        eni_id: Option<String>,
        blackhole: bool,
    },
}

/// What to do with one table's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAction {
    /// Already points at the target: no write.
    Keep,
    /// Exists but points elsewhere (or is a blackhole): `ReplaceRoute`.
    Replace,
    /// Missing: `CreateRoute`.
    Create,
}

impl CurrentRoute {
    /// Whether this route already delivers to `target`.
    pub fn points_at(&self, target: &Target) -> bool {
        match (self, target) {
            (CurrentRoute::Missing, _) => false,
            (
                CurrentRoute::Points {
                    blackhole: true, ..
                },
                _,
            ) => false,
            (CurrentRoute::Points { instance_id, .. }, Target::Instance(i)) => {
                instance_id.as_deref() == Some(i.as_str())
            }
            (CurrentRoute::Points { eni_id, .. }, Target::Eni(e)) => {
                eni_id.as_deref() == Some(e.as_str())
            }
        }
    }

    /// The route's target no longer exists (EC2 shows `State: blackhole`).
    pub fn is_blackhole(&self) -> bool {
        matches!(
            self,
            CurrentRoute::Points {
                blackhole: true,
                ..
            }
        )
    }

    /// Read back after writing `written`, this route says the target we resolved
    /// is not (or no longer) the one EC2 holds: a blackhole, or a route that
    /// points elsewhere. The discovered target must then be evicted and resolved
    /// again (`act::targets::Targets::evict`). A missing route says nothing
    /// about the target.
    ///
    /// EC2 reads are eventually consistent: judge the *last* read-back of a write,
    /// not the first. moto never shows `blackhole`: a route to a deleted ENI
    /// keeps showing its id as `active`.
    pub fn shows_target_gone(&self, written: &Target) -> bool {
        match self {
            CurrentRoute::Missing => false,
            c => c.is_blackhole() || !c.points_at(written),
        }
    }

    /// A short description for logs and status: the target id or `missing`.
    pub fn describe(&self) -> String {
        match self {
            CurrentRoute::Missing => "missing".into(),
            CurrentRoute::Points {
                instance_id,
                eni_id,
                blackhole,
            } => {
                let id = eni_id
                    .as_deref()
                    .or(instance_id.as_deref())
                    .unwrap_or("other-target");
                if *blackhole {
                    format!("{id} (blackhole)")
                } else {
                    id.to_owned()
                }
            }
        }
    }
}

/// Decides the write for one table.
pub fn plan(current: &CurrentRoute, desired: &Target) -> RouteAction {
    match current {
        CurrentRoute::Missing => RouteAction::Create,
        c if c.points_at(desired) => RouteAction::Keep,
        _ => RouteAction::Replace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{static_target, NodeKey};
    use crate::watch::event::Addr;
    use std::collections::BTreeMap;

    fn eni(s: &str) -> Target {
        Target::Eni(s.to_owned().try_into().unwrap())
    }
    fn inst(s: &str) -> Target {
        Target::Instance(s.to_owned().try_into().unwrap())
    }
    fn points(i: Option<&str>, e: Option<&str>, blackhole: bool) -> CurrentRoute {
        CurrentRoute::Points {
            instance_id: i.map(Into::into),
            eni_id: e.map(Into::into),
            blackhole,
        }
    }

    #[test]
    fn missing_route_is_created() {
        assert_eq!(
            plan(&CurrentRoute::Missing, &eni("eni-1")),
            RouteAction::Create
        );
    }

    #[test]
    fn right_route_is_kept_wrong_or_blackhole_replaced() {
        assert_eq!(
            plan(&points(Some("i-1"), Some("eni-1"), false), &eni("eni-1")),
            RouteAction::Keep
        );
        assert_eq!(
            plan(&points(Some("i-1"), Some("eni-1"), false), &inst("i-1")),
            RouteAction::Keep
        );
        assert_eq!(
            plan(&points(None, Some("eni-2"), false), &eni("eni-1")),
            RouteAction::Replace
        );
        assert_eq!(
            plan(&points(Some("i-1"), Some("eni-1"), true), &eni("eni-1")),
            RouteAction::Replace
        );
        assert_eq!(
            plan(&points(None, None, false), &inst("i-1")),
            RouteAction::Replace
        );
    }

    #[test]
    fn read_back_blackhole_or_other_target_says_target_gone() {
        let written = eni("eni-1");
        assert!(points(Some("i-1"), Some("eni-1"), true).shows_target_gone(&written));
        assert!(points(None, Some("eni-2"), false).shows_target_gone(&written));
        assert!(!points(Some("i-1"), Some("eni-1"), false).shows_target_gone(&written));
        assert!(!CurrentRoute::Missing.shows_target_gone(&written));
        assert!(points(None, Some("eni-1"), true).is_blackhole());
        assert!(!CurrentRoute::Missing.is_blackhole());
    }

    #[test]
    fn exact_node_key_wins_over_bare_ip() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            NodeKey::try_from("10.0.0.1".to_owned()).unwrap(),
            inst("i-any"),
        );
        nodes.insert(
            NodeKey::try_from("10.0.0.1:6380".to_owned()).unwrap(),
            inst("i-exact"),
        );
        assert_eq!(
            static_target(&nodes, &Addr::new("10.0.0.1", 6380)),
            Some(inst("i-exact"))
        );
        assert_eq!(
            static_target(&nodes, &Addr::new("10.0.0.1", 6379)),
            Some(inst("i-any"))
        );
        assert_eq!(static_target(&nodes, &Addr::new("10.0.0.2", 6379)), None);
    }
}
