//! Sentinel pub/sub messages parsed into typed [`Event`]s. Pure: no I/O.
//!
//! Formats follow redis `src/sentinel.c` (`sentinelEvent`): the channel name is the
//! event type; instance events carry `<type> <name> <ip> <port>` and, for
//! replicas and sentinels, `@ <master-name> <master-ip> <master-port>`, sometimes
//! followed by free text that we keep verbatim.

/// Payloads longer than this are refused: Sentinel's own are < 200 bytes.
pub const MAX_PAYLOAD: usize = 4096;

pub use crate::addr::Addr;

/// What kind of instance an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Master,
    Replica,
    Sentinel,
}

/// Declares an enum of Sentinel channels and their names in one table.
macro_rules! channel_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $channel:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = concat!("`", $channel, "`")] $variant,)*
        }

        impl $name {
            /// The channel name, as Sentinel publishes it.
            pub fn channel(self) -> &'static str {
                match self {
                    $($name::$variant => $channel,)*
                }
            }

            /// Every one, in Sentinel's order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The event a channel carries; `None` for any other channel.
            pub fn from_channel(channel: &str) -> Option<$name> {
                match channel {
                    $($channel => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.channel())
            }
        }
    };
}

channel_enum! {
    /// The channels whose payload is an instance description (`<role> <name>
    /// <ip> <port> [@ <master> <ip> <port>] [text]`). The list is Sentinel's
    /// own (redis 7.x `sentinelEvent` calls); anything else is
    /// [`ParseError::UnknownChannel`]. A typo in a match is a compile error.
    InstanceEvent {
        ResetMaster = "+reset-master",
        Slave = "+slave",
        Sentinel = "+sentinel",
        Sdown = "+sdown",
        SdownCleared = "-sdown",
        Odown = "+odown",
        OdownCleared = "-odown",
        TryFailover = "+try-failover",
        ElectedLeader = "+elected-leader",
        FailoverStateSelectSlave = "+failover-state-select-slave",
        SelectedSlave = "+selected-slave",
        FailoverStateSendSlaveofNoone = "+failover-state-send-slaveof-noone",
        FailoverStateWaitPromotion = "+failover-state-wait-promotion",
        PromotedSlave = "+promoted-slave",
        FailoverStateReconfSlaves = "+failover-state-reconf-slaves",
        SlaveReconfSent = "+slave-reconf-sent",
        SlaveReconfSentBe = "+slave-reconf-sent-be",
        SlaveReconfInprog = "+slave-reconf-inprog",
        SlaveReconfDone = "+slave-reconf-done",
        SlaveReconfSentTimeout = "-slave-reconf-sent-timeout",
        FailoverEndForTimeout = "+failover-end-for-timeout",
        FailoverEnd = "+failover-end",
        FailoverDetected = "+failover-detected",
        AbortNotElected = "-failover-abort-not-elected",
        AbortNoGoodSlave = "-failover-abort-no-good-slave",
        AbortSlaveTimeout = "-failover-abort-slave-timeout",
        NoGoodSlave = "no-good-slave",
        ConfigUpdateFrom = "+config-update-from",
        FixSlaveConfig = "+fix-slave-config",
        ConvertToSlave = "+convert-to-slave",
        RoleChange = "+role-change",
        RoleChangeCleared = "-role-change",
        Reboot = "+reboot",
        DupSentinelRemoved = "-dup-sentinel",
        Monitor = "+monitor",
        Unmonitor = "-monitor",
        Set = "+set",
        SentinelAddressSwitch = "+sentinel-address-switch",
        SentinelAddressUpdate = "+sentinel-address-update",
        SentinelInvalidAddr = "+sentinel-invalid-addr",
        CmdLinkReconnection = "-cmd-link-reconnection",
        PubsubLinkReconnection = "-pubsub-link-reconnection",
        RedirectToMaster = "+redirect-to-master",
    }
}

channel_enum! {
    /// The script channels (`sentinelRunPendingScripts`): the payload is free text.
    ScriptEvent {
        ScriptChild = "+script-child",
        ScriptChildEnded = "-script-child",
        ScriptError = "-script-error",
        ScriptTimeout = "-script-timeout",
    }
}

impl InstanceEvent {
    /// `-failover-abort-*`: Sentinel gave the failover attempt up.
    pub fn is_abort(self) -> bool {
        matches!(
            self,
            InstanceEvent::AbortNotElected
                | InstanceEvent::AbortNoGoodSlave
                | InstanceEvent::AbortSlaveTimeout
        )
    }
}

/// The instance an event is about, and the master it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub role: Role,
    /// Master name, `ip:port` for a replica, run id for a sentinel.
    pub name: String,
    pub addr: Addr,
    /// Name of the master this instance belongs to (its own name for a master).
    pub master: String,
    /// Master address for replicas/sentinels (from the `@ ...` part).
    pub master_addr: Option<Addr>,
}

/// One Sentinel event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>`.
    SwitchMaster {
        master: String,
        old: Addr,
        new: Addr,
    },
    /// An instance event (`+sdown`, `+odown`, `+elected-leader`, ...).
    Instance {
        /// Which event (its channel), e.g. [`InstanceEvent::Odown`].
        kind: InstanceEvent,
        instance: Instance,
        /// Free text after the fixed fields (e.g. `#quorum 2/2`), verbatim.
        detail: String,
    },
    /// `+new-epoch <epoch>`.
    NewEpoch(u64),
    /// `+vote-for-leader <runid> <epoch>`.
    VoteForLeader { leader: String, epoch: u64 },
    /// `+tilt` / `-tilt`: the sentinel's view is not to be trusted while entered.
    Tilt { entered: bool },
    /// `+script-child`, `-script-child`, `-script-error`, `-script-timeout`.
    Script { kind: ScriptEvent, detail: String },
}

impl Event {
    /// The master this event concerns, when it concerns one.
    pub fn master(&self) -> Option<&str> {
        match self {
            Event::SwitchMaster { master, .. } => Some(master),
            Event::Instance { instance, .. } => Some(&instance.master),
            _ => None,
        }
    }

    /// The channel name this event came on.
    pub fn channel(&self) -> &'static str {
        match self {
            Event::SwitchMaster { .. } => "+switch-master",
            Event::Instance { kind, .. } => kind.channel(),
            Event::NewEpoch(_) => "+new-epoch",
            Event::VoteForLeader { .. } => "+vote-for-leader",
            Event::Tilt { entered: true } => "+tilt",
            Event::Tilt { entered: false } => "-tilt",
            Event::Script { kind, .. } => kind.channel(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a channel Sentinel publishes (or a newer one we do not know yet).
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    /// Sentinel's internal hello channel: not an event, ignore quietly.
    #[error("sentinel hello message")]
    Hello,
    #[error("payload of {len} bytes on {channel} exceeds {MAX_PAYLOAD}")]
    TooLong { channel: String, len: usize },
    #[error("malformed {channel} payload {payload:?}: {why}")]
    Malformed {
        channel: String,
        payload: String,
        why: &'static str,
    },
}

/// Parses one pub/sub message (channel + payload) into an [`Event`].
pub fn parse(channel: &str, payload: &str) -> Result<Event, ParseError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ParseError::TooLong {
            channel: truncate(channel),
            len: payload.len(),
        });
    }
    let bad = |why: &'static str| ParseError::Malformed {
        channel: truncate(channel),
        payload: truncate(payload),
        why,
    };
    match channel {
        "+switch-master" => {
            let f: Vec<&str> = payload.split_whitespace().collect();
            if f.len() != 5 {
                return Err(bad(
                    "expected <name> <old-ip> <old-port> <new-ip> <new-port>",
                ));
            }
            Ok(Event::SwitchMaster {
                master: f[0].to_owned(),
                old: Addr::new(
                    f[1],
                    port(f[2]).ok_or_else(|| bad("old port is not a port number"))?,
                ),
                new: Addr::new(
                    f[3],
                    port(f[4]).ok_or_else(|| bad("new port is not a port number"))?,
                ),
            })
        }
        "+new-epoch" => payload
            .trim()
            .parse()
            .map(Event::NewEpoch)
            .map_err(|_| bad("epoch is not a number")),
        "+vote-for-leader" => {
            let f: Vec<&str> = payload.split_whitespace().collect();
            match f.as_slice() {
                [leader, epoch] => Ok(Event::VoteForLeader {
                    leader: (*leader).to_owned(),
                    epoch: epoch.parse().map_err(|_| bad("epoch is not a number"))?,
                }),
                _ => Err(bad("expected <runid> <epoch>")),
            }
        }
        "+tilt" => Ok(Event::Tilt { entered: true }),
        "-tilt" => Ok(Event::Tilt { entered: false }),
        "__sentinel__:hello" => Err(ParseError::Hello),
        _ => {
            if let Some(kind) = InstanceEvent::from_channel(channel) {
                parse_instance(kind, payload).map_err(bad)
            } else if let Some(kind) = ScriptEvent::from_channel(channel) {
                Ok(Event::Script {
                    kind,
                    detail: payload.to_owned(),
                })
            } else {
                Err(ParseError::UnknownChannel(truncate(channel)))
            }
        }
    }
}

fn parse_instance(kind: InstanceEvent, payload: &str) -> Result<Event, &'static str> {
    let mut f = payload.split(' ').filter(|s| !s.is_empty());
    let role = match f.next() {
        Some("master") => Role::Master,
        Some("slave") | Some("replica") => Role::Replica,
        Some("sentinel") => Role::Sentinel,
        _ => return Err("expected master, slave or sentinel as first field"),
    };
    let name = f.next().ok_or("missing instance name")?.to_owned();
    let host = f.next().ok_or("missing instance address")?.to_owned();
    let inst_port = f
        .next()
        .and_then(port)
        .ok_or("missing or bad instance port")?;
    let mut rest: Vec<&str> = f.collect();
    let (master, master_addr) = if role == Role::Master {
        (name.clone(), None)
    } else {
        if rest.first() != Some(&"@") || rest.len() < 4 {
            return Err(
                "expected @ <master-name> <master-ip> <master-port> after a non-master instance",
            );
        }
        let m = rest[1].to_owned();
        let a = Addr::new(rest[2], port(rest[3]).ok_or("bad master port")?);
        rest.drain(..4);
        (m, Some(a))
    };
    Ok(Event::Instance {
        kind,
        instance: Instance {
            role,
            name,
            addr: Addr::new(host, inst_port),
            master,
            master_addr,
        },
        detail: rest.join(" "),
    })
}

fn port(s: &str) -> Option<u16> {
    s.parse().ok()
}

fn truncate(s: &str) -> String {
    const KEEP: usize = 120;
    if s.len() <= KEEP {
        return s.to_owned();
    }
    let mut end = KEEP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `+odown`'s `#quorum <n>/<q>` detail, when present.
pub fn odown_quorum(detail: &str) -> Option<(u32, u32)> {
    let rest = detail.strip_prefix("#quorum ")?;
    let (n, q) = rest.split_once('/')?;
    Some((n.trim().parse().ok()?, q.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_channel_names_its_event_and_back() {
        assert_eq!(InstanceEvent::ALL.len(), 43);
        for e in InstanceEvent::ALL {
            assert_eq!(InstanceEvent::from_channel(e.channel()), Some(*e));
        }
        assert_eq!(
            InstanceEvent::from_channel("+odown"),
            Some(InstanceEvent::Odown)
        );
        assert_eq!(InstanceEvent::from_channel("+0down"), None);
        assert_eq!(InstanceEvent::from_channel("+switch-master"), None);
        let aborts: Vec<_> = InstanceEvent::ALL.iter().filter(|e| e.is_abort()).collect();
        assert!(aborts
            .iter()
            .all(|e| e.channel().starts_with("-failover-abort-")));
        assert_eq!(aborts.len(), 3);
        for e in ScriptEvent::ALL {
            assert_eq!(ScriptEvent::from_channel(e.channel()), Some(*e));
            assert!(
                matches!(parse(e.channel(), "some text"), Ok(Event::Script { kind, .. }) if kind == *e)
            );
        }
    }

    #[test]
    fn switch_master_is_parsed() {
        let e = parse("+switch-master", "mymaster 127.0.0.2 55473 127.0.0.3 55473").unwrap();
        assert_eq!(
            e,
            Event::SwitchMaster {
                master: "mymaster".into(),
                old: Addr::new("127.0.0.2", 55473),
                new: Addr::new("127.0.0.3", 55473),
            }
        );
        assert_eq!(e.master(), Some("mymaster"));
    }

    #[test]
    fn follower_failover_sequence_from_design_parses() {
        let seq = [
            ("+new-epoch", "1"),
            (
                "+config-update-from",
                "sentinel 4f0c3e 127.0.0.3 51801 @ mymaster 127.0.0.2 55473",
            ),
            ("+switch-master", "mymaster 127.0.0.2 55473 127.0.0.3 55473"),
            (
                "+slave",
                "slave 127.0.0.4:55473 127.0.0.4 55473 @ mymaster 127.0.0.3 55473",
            ),
            (
                "-role-change",
                "slave 127.0.0.2:55473 127.0.0.2 55473 @ mymaster 127.0.0.3 55473 new reported role is master",
            ),
            (
                "+convert-to-slave",
                "slave 127.0.0.2:55473 127.0.0.2 55473 @ mymaster 127.0.0.3 55473",
            ),
        ];
        for (c, p) in seq {
            parse(c, p).unwrap_or_else(|e| panic!("{c} {p}: {e}"));
        }
        match parse(seq[4].0, seq[4].1).unwrap() {
            Event::Instance {
                instance, detail, ..
            } => {
                assert_eq!(instance.role, Role::Replica);
                assert_eq!(instance.master, "mymaster");
                assert_eq!(instance.master_addr, Some(Addr::new("127.0.0.3", 55473)));
                assert_eq!(detail, "new reported role is master");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn odown_carries_quorum() {
        match parse("+odown", "master mymaster 10.0.1.11 6379 #quorum 2/2").unwrap() {
            Event::Instance {
                kind,
                instance,
                detail,
            } => {
                assert_eq!(kind, InstanceEvent::Odown);
                assert_eq!(instance.role, Role::Master);
                assert_eq!(instance.addr, Addr::new("10.0.1.11", 6379));
                assert_eq!(odown_quorum(&detail), Some((2, 2)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn small_events_parse() {
        assert_eq!(parse("+new-epoch", "7").unwrap(), Event::NewEpoch(7));
        assert_eq!(
            parse("+tilt", "#tilt mode entered").unwrap(),
            Event::Tilt { entered: true }
        );
        assert_eq!(
            parse("-tilt", "#tilt mode exited").unwrap(),
            Event::Tilt { entered: false }
        );
        assert_eq!(
            parse("+vote-for-leader", "abc 3").unwrap(),
            Event::VoteForLeader {
                leader: "abc".into(),
                epoch: 3
            }
        );
        assert!(matches!(
            parse("-script-error", "/bin/x.sh 0 2").unwrap(),
            Event::Script {
                kind: ScriptEvent::ScriptError,
                ..
            }
        ));
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for (c, p) in [
            ("+switch-master", "mymaster 1.2.3.4 x 1.2.3.5 6379"),
            ("+switch-master", "mymaster"),
            ("+switch-master", ""),
            ("+new-epoch", "-1"),
            ("+sdown", "node x 1 2"),
            ("+sdown", "slave 1.2.3.4:1 1.2.3.4 1"),
            ("+sdown", "slave 1.2.3.4:1 1.2.3.4 1 @ m 1.2.3.4"),
            ("+odown", "master m 1.2.3.4 99999"),
            ("+vote-for-leader", "x"),
        ] {
            assert!(
                matches!(parse(c, p), Err(ParseError::Malformed { .. })),
                "{c} {p:?}"
            );
        }
    }

    #[test]
    fn unknown_channel_and_hello_are_reported_distinctly() {
        assert!(matches!(
            parse("+brand-new", "x"),
            Err(ParseError::UnknownChannel(_))
        ));
        assert_eq!(parse("__sentinel__:hello", "a,b,c"), Err(ParseError::Hello));
    }

    #[test]
    fn oversized_payload_is_bounded() {
        let big = "x".repeat(MAX_PAYLOAD + 1);
        assert!(matches!(
            parse("+sdown", &big),
            Err(ParseError::TooLong { .. })
        ));
    }
}
