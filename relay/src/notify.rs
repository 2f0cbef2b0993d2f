//! Tells systemd what the daemon is doing (`sd_notify`), so that a `Type=notify` unit counts
//! mcrd as started only once its rules are installed and its control socket answers, and sees
//! reloads and the stop. Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.
//!
//! A failed notification is logged and otherwise ignored: the data plane must not depend on
//! the service manager's socket.

use sd_notify::NotifyState;

fn send(what: &str, states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("could not tell systemd that mcrd is {what}: {e}");
    }
}

/// The rules are installed and the control socket is listening. `status` is the one line
/// `systemctl status` shows.
pub fn ready(status: &str) {
    send("ready", &[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload has started; [`ready`] ends it. systemd (253 and later) waits for both and
/// needs the monotonic time to tell this reload from an earlier one.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send("reloading", &[NotifyState::Reloading, now]),
        Err(e) => tracing::warn!("could not read the monotonic clock for systemd: {e}"),
    }
}

/// The daemon is shutting down (draining sends, writing the final stats).
pub fn stopping() {
    send("stopping", &[NotifyState::Stopping]);
}
