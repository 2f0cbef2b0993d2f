//! Can this process run the fast path? Capabilities first (cheap, and the reason a user can
//! act on), then the kernel: the optional features the program adapts to are probed
//! ([`KernelFeatures`]), and loading the program is the probe of the rest.
//!
//! Tests cannot boot an older kernel here, so `MCR_TEST_KERNEL_LACKS` (a comma-separated list
//! of [`KernelFeatures::NAMES`]) makes mcrd act as if the kernel lacked them: a test setting,
//! warned about when set, and never needed in production.

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

/// The environment variable that hides kernel features from mcrd, for tests.
pub const LACKS_VAR: &str = "MCR_TEST_KERNEL_LACKS";

/// The optional kernel features the fast path adapts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelFeatures {
    /// tcx links (Linux 6.6): without them the program goes in a clsact qdisc filter.
    pub tcx: bool,
    /// The `bpf_loop` helper (Linux 5.17): without it the program sums UDP checksums with a
    /// bounded loop and `monitor = "rtp"` rules run in userspace.
    pub bpf_loop: bool,
}

impl KernelFeatures {
    /// Every feature present.
    pub const ALL: Self = Self {
        tcx: true,
        bpf_loop: true,
    };

    /// The features' names, as in the stats and in `MCR_TEST_KERNEL_LACKS`.
    pub const NAMES: [&'static str; 2] = ["tcx", "bpf_loop"];

    /// What this kernel has, less what `MCR_TEST_KERNEL_LACKS` hides. Needs CAP_BPF (a helper
    /// is probed by loading a tiny program) and CAP_NET_ADMIN (querying a hook).
    pub fn probe() -> Result<Self, String> {
        let mut f = Self {
            tcx: tcx_supported(),
            bpf_loop: helper_supported(libbpf_sys::BPF_FUNC_loop, "bpf_loop"),
        };
        if let Ok(lacks) = std::env::var(LACKS_VAR) {
            f = f.without(&lacks)?;
            tracing::warn!(
                "{LACKS_VAR}={lacks}: acting as if this kernel lacked {lacks} (a setting for tests)"
            );
        }
        Ok(f)
    }

    /// These features less those named in `list` (comma-separated).
    pub fn without(mut self, list: &str) -> Result<Self, String> {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "tcx" => self.tcx = false,
                "bpf_loop" => self.bpf_loop = false,
                _ => {
                    return Err(format!(
                        "{LACKS_VAR}: unknown kernel feature `{name}` (known: {})",
                        Self::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(self)
    }

    /// The names of the features missing, in [`Self::NAMES`] order.
    pub fn missing(&self) -> Vec<&'static str> {
        Self::NAMES
            .into_iter()
            .zip([self.tcx, self.bpf_loop])
            .filter(|(_, has)| !has)
            .map(|(name, _)| name)
            .collect()
    }
}

/// Whether the kernel has tcx: it answers a query of the loopback interface's tcx ingress
/// (index 1 in every network namespace), which a kernel without tcx refuses (`EINVAL`: an
/// attach type it does not know).
fn tcx_supported() -> bool {
    super::attach::tcx_ingress_programs(1).is_ok()
}

/// Whether `BPF_PROG_TYPE_SCHED_CLS` programs may call `helper` (libbpf loads a tiny program
/// calling it). A probe that cannot tell (an error) counts as missing, with a warning: the
/// fallback runs on every kernel, the helper does not.
fn helper_supported(helper: libbpf_sys::bpf_func_id, name: &str) -> bool {
    // SAFETY: plain libbpf call; no options.
    let rc = unsafe {
        libbpf_sys::libbpf_probe_bpf_helper(
            libbpf_sys::BPF_PROG_TYPE_SCHED_CLS,
            helper,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        tracing::warn!(
            "probing the kernel for {name}: {}; doing without it",
            std::io::Error::from_raw_os_error(-rc)
        );
    }
    rc == 1
}

/// The running kernel's version (major, minor), from `uname`. Distributions backport BPF
/// features (RHEL's 5.14 has many of 6.x), so it only words messages and tests, never
/// decides: features are probed.
pub fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a utsname of ours.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: the kernel NUL-terminates the release within the array.
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
    parse_version(&release.to_string_lossy())
}

/// (major, minor) of a kernel release such as `6.18.44-fc-v1272` or `5.14.0-427.el9.x86_64`.
fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
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

    #[test]
    fn features_are_hidden_by_name_and_an_unknown_name_is_refused() {
        let all = KernelFeatures::ALL;
        assert!(all.missing().is_empty());
        let f = all.without("bpf_loop").unwrap();
        assert_eq!(f.missing(), ["bpf_loop"]);
        assert!(f.tcx);
        let f = all.without(" tcx , bpf_loop,").unwrap();
        assert_eq!(f.missing(), ["tcx", "bpf_loop"]);
        assert_eq!(all.without("").unwrap(), all);
        let e = all.without("tcx,xdp").unwrap_err();
        assert!(
            e.contains("MCR_TEST_KERNEL_LACKS") && e.contains("`xdp`") && e.contains("bpf_loop"),
            "{e}"
        );
    }

    /// The probe on this machine's kernel (needs CAP_BPF and CAP_NET_ADMIN) finds what its
    /// version has; what `MCR_TEST_KERNEL_LACKS` hides is tested above.
    #[test]
    fn the_probe_finds_what_this_kernel_version_has() {
        if !missing_capabilities().is_empty() {
            if std::env::var("MCR_E2E_REQUIRED").as_deref() == Ok("1") {
                panic!("needs CAP_BPF and CAP_NET_ADMIN (MCR_E2E_REQUIRED=1)");
            }
            eprintln!("SKIP the_probe_finds_what_this_kernel_version_has: needs CAP_BPF and CAP_NET_ADMIN");
            return;
        }
        let version = kernel_version().expect("uname");
        eprintln!("kernel {version:?}");
        if version >= (6, 6) {
            assert!(tcx_supported(), "tcx (Linux 6.6)");
        }
        if version >= (5, 17) {
            assert!(
                helper_supported(libbpf_sys::BPF_FUNC_loop, "bpf_loop"),
                "bpf_loop (Linux 5.17)"
            );
        }
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_version("6.18.44-fc-v1272"), Some((6, 18)));
        assert_eq!(parse_version("5.14.0-427.el9.x86_64"), Some((5, 14)));
        assert_eq!(parse_version("6.1"), Some((6, 1)));
        assert_eq!(parse_version("x"), None);
    }
}
