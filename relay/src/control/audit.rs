//! The audit trail: every control action that changes the daemon (rules added or removed,
//! reloads, log-level changes) is logged once, with who asked and what came of it.
//!
//! Who asked is the peer's credentials as the kernel saw them at `connect` (`SO_PEERCRED`:
//! uid, gid and pid, which a client cannot forge), or the signal for a `SIGHUP` reload.
//! Applied actions are logged at INFO, refused ones at WARN with the reason the client was
//! given. Reads (ping, stats, rule lists) change nothing and are not logged.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use super::protocol::{Command, Reply, Response};

/// The credentials of a control socket's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

impl Peer {
    /// The peer of a connected Unix stream socket (`SO_PEERCRED`).
    pub fn of(stream: &UnixStream) -> io::Result<Self> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        crate::sys::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred,
        )?;
        Ok(Self {
            uid: cred.uid,
            gid: cred.gid,
            pid: cred.pid,
        })
    }
}

/// Who asked for an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A control socket client; `None` when its credentials could not be read.
    Socket(Option<Peer>),
    /// A signal sent to mcrd (`SIGHUP` reloads).
    Signal(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Socket(Some(p)) => write!(f, "uid {} (gid {}, pid {})", p.uid, p.gid, p.pid),
            Origin::Socket(None) => f.write_str("a control client of unknown credentials"),
            Origin::Signal(name) => f.write_str(name),
        }
    }
}

/// An action that changes the daemon, as the request named it (taken before the request is
/// handed to the controller, which consumes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    RulesAdd { name: String },
    RulesRemove { name: String },
    ConfigReload,
    LogLevel { level: String },
}

impl Action {
    /// The action a command asks for; `None` for reads.
    pub fn of(command: &Command) -> Option<Self> {
        match command {
            Command::RulesAdd { rule } => Some(Action::RulesAdd {
                name: rule.name.clone(),
            }),
            Command::RulesRemove { name } => Some(Action::RulesRemove { name: name.clone() }),
            Command::ConfigReload => Some(Action::ConfigReload),
            Command::LogLevel { level } => Some(Action::LogLevel {
                level: level.clone(),
            }),
            Command::Ping
            | Command::Stats
            | Command::RulesList
            | Command::RulesPage { .. }
            | Command::StatsPage { .. } => None,
        }
    }

    /// The audit record of this action answered with `response`.
    pub fn entry(&self, origin: Origin, response: &Response) -> Entry {
        let (applied, outcome) = match (&response.result, &response.error) {
            (_, Some(e)) => (false, e.message.clone()),
            (Some(Reply::Done { message }), None) => (true, message.clone()),
            _ => (response.ok, String::new()),
        };
        // A reply about an invalid name quotes it: the client may see its own bytes, the log
        // does not copy them (see `LoggedName`).
        let outcome = match self {
            Action::RulesAdd { name } | Action::RulesRemove { name }
                if !applied && crate::config::validate_rule_name(name).is_err() =>
            {
                "the rule name is invalid (the reply said why)".to_string()
            }
            _ => outcome,
        };
        Entry {
            action: self.to_string(),
            origin,
            applied,
            outcome,
        }
    }
}

/// A rule name as the log shows it: a name the daemon would refuse (control characters, a
/// terminal escape, kilobytes of text) is a client's bytes, not ours to copy into the log,
/// which says only that it was invalid and how long.
struct LoggedName<'a>(&'a str);

impl fmt::Display for LoggedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if crate::config::validate_rule_name(self.0).is_ok() {
            write!(f, "`{}`", self.0)
        } else {
            write!(f, "(an invalid name of {} bytes)", self.0.len())
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::RulesAdd { name } => write!(f, "rules add {}", LoggedName(name)),
            Action::RulesRemove { name } => write!(f, "rules remove {}", LoggedName(name)),
            Action::ConfigReload => f.write_str("config reload"),
            Action::LogLevel { level } => write!(f, "log-level `{}`", level.escape_debug()),
        }
    }
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What was asked (`rules add `cam1``, `config reload`, ...).
    pub action: String,
    pub origin: Origin,
    /// Whether it was applied (else refused).
    pub applied: bool,
    /// The reply's message: what changed, or why it was refused.
    pub outcome: String,
}

impl Entry {
    /// Writes the entry to the log: INFO when applied, WARN when refused. The peer's uid and
    /// pid are fields too, for `log_format = "json"` and the journal's field search.
    pub fn log(&self) {
        let (uid, pid) = match self.origin {
            Origin::Socket(Some(p)) => (Some(p.uid), Some(p.pid)),
            _ => (None, None),
        };
        let verdict = if self.applied { "applied" } else { "refused" };
        let line = format!(
            "control: {} by {}: {verdict}: {}",
            self.action, self.origin, self.outcome
        );
        if self.applied {
            tracing::info!(audit = verdict, peer_uid = uid, peer_pid = pid, "{line}");
        } else {
            tracing::warn!(audit = verdict, peer_uid = uid, peer_pid = pid, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ErrorKind;

    fn peer() -> Origin {
        Origin::Socket(Some(Peer {
            uid: 1000,
            gid: 100,
            pid: 4242,
        }))
    }

    #[test]
    fn reads_are_not_actions_and_changes_are() {
        for read in [
            Command::Ping,
            Command::Stats,
            Command::RulesList,
            Command::RulesPage {
                flow: None,
                after: None,
                limit: Some(3),
            },
            Command::StatsPage {
                flow: None,
                limit: None,
            },
        ] {
            assert_eq!(Action::of(&read), None, "{read:?}");
        }
        assert_eq!(
            Action::of(&Command::RulesRemove {
                name: "cam1".into()
            }),
            Some(Action::RulesRemove {
                name: "cam1".into()
            })
        );
        assert_eq!(
            Action::of(&Command::ConfigReload),
            Some(Action::ConfigReload)
        );
    }

    #[test]
    fn an_applied_action_carries_its_message_and_a_refused_one_its_reason() {
        let done = Response::ok(Reply::Done {
            message: "rule `cam1` removed".into(),
        });
        let entry = Action::RulesRemove {
            name: "cam1".into(),
        }
        .entry(peer(), &done);
        assert!(entry.applied);
        assert_eq!(entry.action, "rules remove `cam1`");
        assert_eq!(entry.outcome, "rule `cam1` removed");

        let refused = Response::error(ErrorKind::Rejected, "reload refused, old rules stay: x");
        let entry = Action::ConfigReload.entry(Origin::Signal("SIGHUP"), &refused);
        assert!(!entry.applied);
        assert_eq!(entry.outcome, "reload refused, old rules stay: x");
        assert_eq!(entry.origin.to_string(), "SIGHUP");
    }

    #[test]
    fn the_origin_names_uid_gid_and_pid() {
        assert_eq!(peer().to_string(), "uid 1000 (gid 100, pid 4242)");
        assert!(Origin::Socket(None).to_string().contains("unknown"));
    }

    #[test]
    fn an_invalid_name_is_not_copied_into_the_log() {
        let action = Action::RulesAdd {
            name: "evil\n\u{1b}[31mINJECTED".into(),
        };
        assert_eq!(
            action.to_string(),
            "rules add (an invalid name of 18 bytes)"
        );
        let refused = Response::error(ErrorKind::Rejected, "rule `evil\\n...INJECTED`: name: ...");
        let entry = action.entry(peer(), &refused);
        assert!(!entry.outcome.contains("INJECTED"), "{}", entry.outcome);
        let action = Action::RulesRemove {
            name: "cam-7.a_b:c".into(),
        };
        assert_eq!(action.to_string(), "rules remove `cam-7.a_b:c`");
    }

    #[test]
    fn the_peer_of_a_socket_pair_is_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = Peer::of(&a).unwrap();
        assert_eq!(p.pid as u32, std::process::id());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(p.uid, std::fs::metadata("/proc/self").unwrap().uid());
    }
}
