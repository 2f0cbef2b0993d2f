//! Facts about the machine we run on, for `analyzer ingest --env-from-host`.
//!
//! Only what changes benchmark results is read: kernel, CPU model and count, the socket-buffer
//! and backlog sysctls the relay's start-up check names, and the git revision under test.
//! Anything unreadable stays unknown.

use std::path::Path;
use std::process::Command;

use crate::record::Environment;

/// Sysctls that bound socket buffers and the receive backlog (relay/README.md, "Kernel tuning").
pub const SYSCTLS: &[&str] = &[
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.netdev_max_backlog",
    "net.core.netdev_budget",
    "net.ipv4.udp_mem",
];

/// Reads the environment of this machine.
pub fn environment() -> Environment {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let mut env = Environment {
        kernel: read("/proc/sys/kernel/osrelease"),
        hostname: read("/proc/sys/kernel/hostname"),
        cores: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u32),
        cpu_model: read("/proc/cpuinfo").and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        }),
        ..Default::default()
    };
    for name in SYSCTLS {
        let p = Path::new("/proc/sys").join(name.replace('.', "/"));
        if let Some(v) = read(&p.to_string_lossy()) {
            env.sysctls.insert(
                (*name).into(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            );
        }
    }
    env.git_revision = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    env
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_linux_host() {
        let env = super::environment();
        assert!(
            env.kernel.is_some(),
            "/proc/sys/kernel/osrelease is readable on Linux"
        );
        assert!(env.cores.unwrap_or(0) >= 1);
    }
}
