//! Can this process run the fast path? Capabilities first (cheap, and the reason a user can
//! act on), then the kernel: loading the program is the probe.

/// `CAP_NET_ADMIN`: attach programs to interfaces.
const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN`: the kernel accepts it instead of `CAP_BPF`.
const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF`: load programs and create maps.
const CAP_BPF: u32 = 39;

/// The capabilities the fast path needs that this process lacks (empty: none missing).
pub fn missing_capabilities() -> Vec<&'static str> {
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_caps(&s))
        .unwrap_or(0);
    missing_from(effective)
}

fn missing_from(effective: u64) -> Vec<&'static str> {
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

/// The `CapEff:` mask of a `/proc/PID/status` text.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_set_and_names_what_is_missing() {
        let status = "Name:\tmcrd\nCapInh:\t0000000000000000\nCapEff:\t0000000000002000\n";
        let eff = effective_caps(status).unwrap();
        assert_eq!(eff, 1 << 13);
        assert_eq!(missing_from(eff), ["CAP_BPF", "CAP_NET_ADMIN"]);
        assert_eq!(
            missing_from((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)),
            Vec::<&str>::new()
        );
        assert_eq!(
            missing_from((1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN)),
            Vec::<&str>::new()
        );
        assert_eq!(missing_from(1 << CAP_BPF), ["CAP_NET_ADMIN"]);
        assert_eq!(effective_caps("Name: x\n"), None);
    }
}
