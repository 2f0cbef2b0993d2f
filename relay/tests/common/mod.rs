//! Test harness for end-to-end tests in real network namespaces.
//!
//! Everything created here is removed on drop (namespaces, daemons), also when a test fails.
//! Sockets are made inside a namespace from a short-lived thread that enters it with
//! `setns` (which affects only that thread); the socket then belongs to that namespace and
//! can be used from the test thread.

// Each test binary uses its own part of this harness.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use relay::control::protocol::{Command as Ctl, Reply, Response};
use relay::stats::report::StatsReport;

/// True when end-to-end tests can run. When they cannot, the test prints why and returns,
/// unless `MCR_E2E_REQUIRED=1` (set by CI), in which case it fails.
pub fn e2e_allowed(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if root && ip {
        return true;
    }
    let why = if !root {
        "not running as root"
    } else {
        "the `ip` command is missing"
    };
    if std::env::var("MCR_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!("{test}: end-to-end test required (MCR_E2E_REQUIRED=1) but {why}");
    }
    eprintln!("SKIP {test}: {why}; end-to-end tests need root and iproute2");
    false
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("running a setup command");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip ARGS...`, which must succeed.
pub fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Counter `field` of the `proto` line of `/proc/net/snmp` in `ns`.
pub fn snmp(ns: &Netns, proto: &str, field: &str) -> u64 {
    let out = ns.command("cat").arg("/proc/net/snmp").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with(proto));
    let (Some(h), Some(v)) = (lines.next(), lines.next()) else {
        return 0;
    };
    let i = h.split_whitespace().position(|f| f == field).unwrap();
    v.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("mcrt{}-{n}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS...`.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// `ip netns exec NS PROGRAM ARGS...` as a command to spawn.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        run(self
            .command("sysctl")
            .args(["-qw", &format!("{key}={value}")]));
    }

    /// Runs `f` on a thread inside this namespace (for making sockets there).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = PathBuf::from("/var/run/netns").join(&self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).expect("opening the namespace file");
                // SAFETY: setns on a valid netns fd; it changes only this thread's namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in namespace panicked")
        })
    }

    /// Interface counters (from /sys inside the namespace).
    pub fn link_stat(&self, ifname: &str, stat: &str) -> u64 {
        let out = self
            .command("cat")
            .arg(format!("/sys/class/net/{ifname}/statistics/{stat}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Connects `a:a_if` and `b:b_if` with a veth pair, addresses them, brings them up, and
/// routes multicast out of each end. UDP segmentation offload is off (every datagram is its
/// own frame, as on a real NIC) unless `gso_offload` is set.
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_addr: &str,
    b: &Netns,
    b_if: &str,
    b_addr: &str,
    gso_offload: bool,
) {
    // Tests run in parallel: create under names unique on the host, then rename inside the
    // namespaces (interface names there are private).
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let (ta, tb) = (
        format!("mt{}a{n}", std::process::id() % 100_000),
        format!("mt{}b{n}", std::process::id() % 100_000),
    );
    ip(&["link", "add", &ta, "type", "veth", "peer", "name", &tb]);
    ip(&["link", "set", &ta, "netns", &a.name]);
    ip(&["link", "set", &tb, "netns", &b.name]);
    a.ip(&["link", "set", &ta, "name", a_if]);
    b.ip(&["link", "set", &tb, "name", b_if]);
    for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", ifname]);
        ns.ip(&["link", "set", ifname, "up"]);
        if !gso_offload {
            let _ = ns
                .command("ethtool")
                .args(["-K", ifname, "tx-udp-segmentation", "off"])
                .output();
        }
    }
}

/// Writes `to`'s `to_if` MAC as the neighbour entry for `addr` (IPv4 or IPv6) on `from`'s
/// `from_if`, so that the first datagrams to a unicast address are not queued (and some
/// dropped) while the kernel resolves it.
pub fn pin_neighbour(from: &Netns, from_if: &str, to: &Netns, to_if: &str, addr: &str) {
    let mac = to
        .command("cat")
        .arg(format!("/sys/class/net/{to_if}/address"))
        .output()
        .unwrap();
    let mac = String::from_utf8_lossy(&mac.stdout).trim().to_string();
    from.ip(&["neigh", "replace", addr, "lladdr", &mac, "dev", from_if]);
}

/// How many packet (AF_PACKET) sockets of `ns` are bound to `ifname` there, from
/// `/proc/net/packet`: every socket of the namespace, also one only an io_uring operation
/// still holds open.
pub fn packet_sockets_on(ns: &Netns, ifname: &str) -> usize {
    let ifindex = ns.enter(|| relay::netif::index(ifname).unwrap());
    let out = ns.command("cat").arg("/proc/net/packet").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let iface = header.iter().position(|f| *f == "Iface").unwrap();
    lines
        .filter(|l| l.split_whitespace().nth(iface) == Some(ifindex.to_string().as_str()))
        .count()
}

/// A UDP socket in `ns` that sends multicast out of `ifname`'s address with TTL 8.
pub fn sender(ns: &Netns, local: Ipv4Addr) -> UdpSocket {
    ns.enter(|| {
        let s = UdpSocket::bind(SocketAddrV4::new(local, 0)).expect("binding the sender");
        s.set_multicast_ttl_v4(8).unwrap();
        let sock = socket2::SockRef::from(&s);
        sock.set_multicast_if_v4(&local).unwrap();
        s
    })
}

/// A UDP socket in `ns` bound to `group:port`, joined on the interface with address `local`
/// (unless `group` is unicast), with a large receive buffer.
pub fn receiver(ns: &Netns, group: Ipv4Addr, port: u16, local: Ipv4Addr) -> UdpSocket {
    ns.enter(|| {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        sock.set_reuse_address(true).unwrap();
        // Root may exceed rmem_max; the receiver must not be the place packets get lost.
        let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(16 << 20);
        let size: libc::c_int = 16 << 20;
        // SAFETY: plain setsockopt with an int.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                4,
            )
        };
        let bind = if group.is_multicast() {
            group
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        sock.bind(&SocketAddrV4::new(bind, port).into()).unwrap();
        if group.is_multicast() {
            sock.join_multicast_v4(&group, &local).unwrap();
        }
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        sock.into()
    })
}

/// Receives until `idle` passes with nothing; returns the payloads.
pub fn drain(sock: &UdpSocket, idle: Duration, max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut last = Instant::now();
    while out.len() < max && last.elapsed() < idle {
        match sock.recv(&mut buf) {
            Ok(n) => {
                out.push(buf[..n].to_vec());
                last = Instant::now();
            }
            Err(_) => continue,
        }
    }
    out
}

/// A test payload: sequence number, then bytes derived from it (so corruption shows).
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&seq.to_be_bytes());
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    p.truncate(len);
    p
}

/// Sends `count` payloads of `len` bytes to `dest`, paced at about `pps`.
pub fn send_paced(
    sock: &UdpSocket,
    dest: SocketAddrV4,
    first_seq: u64,
    count: u64,
    len: usize,
    pps: u64,
) {
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / pps.max(1));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        sock.send_to(&payload(first_seq + i, len), dest)
            .expect("send");
    }
}

/// The hook a fast-path test has mcrd attach its program with (`[dataplane]
/// fast_path_attach`): the fast-path suites run each test once per hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    Tcx,
    Clsact,
}

impl Attach {
    /// The config's and the stats' name of the hook.
    pub fn name(self) -> &'static str {
        match self {
            Attach::Tcx => "tcx",
            Attach::Clsact => "clsact",
        }
    }
}

/// The `[dataplane]` lines of a daemon that must run the fast path on hook `mode`.
pub fn required(mode: Attach) -> String {
    format!(
        "fast_path = \"required\"\nfast_path_attach = \"{}\"",
        mode.name()
    )
}

/// The `[dataplane]` lines of a daemon that uses the fast path if it can, on hook `mode`.
pub fn auto(mode: Attach) -> String {
    format!(
        "fast_path = \"auto\"\nfast_path_attach = \"{}\"",
        mode.name()
    )
}

/// For each test function `NAME(mode: Attach)` given, a module `NAME` with the tests `tcx`
/// and `clsact` that run it on each hook (`cargo test -p relay --test fastpath clsact` runs
/// the clsact half of a suite).
#[macro_export]
macro_rules! on_each_hook {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[test]
            fn tcx() {
                super::$test($crate::common::Attach::Tcx)
            }
            #[test]
            fn clsact() {
                super::$test($crate::common::Attach::Clsact)
            }
        }
    )*};
}

/// Runs mcrd as `nobody` with only CAP_NET_RAW (what it needs for the userspace path).
pub const NET_RAW_ONLY: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_raw",
    "--ambient-caps=-all,+net_raw",
    "--bounding-set=-all,+net_raw",
];

/// A prefix for [`Relay::start_as`]: mcrd as user nobody with the capabilities of
/// packaging/mcrd.service (CAP_NET_RAW, CAP_BPF, CAP_NET_ADMIN; no CAP_PERFMON).
pub const UNIT_CAPS: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_raw,+bpf,+net_admin",
    "--ambient-caps=-all,+net_raw,+bpf,+net_admin",
    "--bounding-set=-all,+net_raw,+bpf,+net_admin",
];

/// Runs mcrd on `config` in `ns` until it exits, as a daemon expected to refuse to start: its
/// exit code and standard error. Its control socket goes to a temporary directory (open to
/// all, so that `prefix`, a command such as `setpriv` that runs it as another user, can
/// create it); `env` is set for it.
pub fn mcrd_refusing(
    ns: &Netns,
    config: &str,
    prefix: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("relay.toml");
    let socket = dir.path().join("s.sock");
    std::fs::write(
        &path,
        format!("[control]\nsocket = \"{}\"\n\n{config}", socket.display()),
    )
    .unwrap();
    let mcrd = env!("CARGO_BIN_EXE_mcrd");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = ns.command(first);
            c.args(rest).arg(mcrd);
            c
        }
        None => ns.command(mcrd),
    };
    let out = cmd
        .envs(env.iter().copied())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tc ARGS...` in `ns`, its output (which must be a success).
pub fn tc(ns: &Netns, args: &[&str]) -> String {
    let out = ns.command("tc").args(args).output().expect("running tc");
    assert!(
        out.status.success(),
        "tc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ids of the mcrd programs on `ifname`'s ingress in `ns`, tcx and clsact.
pub fn mcrd_programs(ns: &Netns, ifname: &str) -> Vec<u32> {
    ns.enter(|| {
        let idx = relay::netif::index(ifname).unwrap();
        relay::fastpath::mcrd_programs_on(idx).unwrap()
    })
}

/// A running `mcrd` in a namespace; killed on drop if still running.
pub struct Relay {
    child: Option<Child>,
    pub socket: PathBuf,
    pub final_stats: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// Starts mcrd with `config` (the `[control]` section is added after it) and waits until it
    /// answers on its control socket.
    pub fn start(ns: &Netns, config: &str) -> Relay {
        Self::start_as(ns, config, None)
    }

    /// Like [`Relay::start`], but runs mcrd through `PREFIX...` (e.g. `setpriv` to drop
    /// privileges). The temporary directory is made world-writable for that case.
    pub fn start_as(ns: &Netns, config: &str, prefix: Option<&[&str]>) -> Relay {
        Self::start_with(ns, config, prefix, Duration::from_secs(10), &[])
    }

    /// Like [`Relay::start`], with a longer wait for the daemon to answer (a config of tens
    /// of thousands of rules).
    pub fn start_within(ns: &Netns, config: &str, within: Duration) -> Relay {
        Self::start_with(ns, config, None, within, &[])
    }

    /// Like [`Relay::start`], with these environment variables set for mcrd.
    pub fn start_env(ns: &Netns, config: &str, env: &[(&str, &str)]) -> Relay {
        Self::start_with(ns, config, None, Duration::from_secs(10), env)
    }

    fn start_with(
        ns: &Netns,
        config: &str,
        prefix: Option<&[&str]>,
        within: Duration,
        env: &[(&str, &str)],
    ) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("mcrd.sock");
        let final_stats = dir.path().join("final.json");
        let config_path = dir.path().join("relay.toml");
        let log = dir.path().join("mcrd.log");
        // `[control]` after the config, so that the config may open with top-level keys.
        std::fs::write(
            &config_path,
            format!("{config}\n\n[control]\nsocket = \"{}\"\n", socket.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut command = match prefix {
            Some(p) => {
                let mut c = ns.command(p[0]);
                c.args(&p[1..]).arg(env!("CARGO_BIN_EXE_mcrd"));
                c
            }
            None => ns.command(env!("CARGO_BIN_EXE_mcrd")),
        };
        let child = command
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&config_path)
            .arg("--final-stats")
            .arg(&final_stats)
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("stdout")).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawning mcrd");
        let mut relay = Relay {
            child: Some(child),
            socket,
            final_stats,
            config: config_path,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = relay::control::client::call(&relay.socket, Ctl::Ping) {
                if r.ok {
                    break;
                }
            }
            if let Some(status) = relay.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "mcrd exited during start-up ({status}):\n{}",
                    relay.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mcrd did not come up in {within:?}:\n{}",
                relay.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        relay
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn call(&self, cmd: Ctl) -> Response {
        relay::control::client::call(&self.socket, cmd).expect("control call")
    }

    pub fn stats(&self) -> StatsReport {
        match self.call(Ctl::Stats).result {
            Some(Reply::Stats(s)) => *s,
            other => panic!("no stats: {other:?}"),
        }
    }

    /// `mcrctl --socket S ARGS...` (the real binary), returning (exit code, stdout, stderr).
    pub fn mcrctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_mcrctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().unwrap().id();
        // The child is `ip netns exec`, which execs mcrd in place: same pid.
        // SAFETY: kill with a pid we spawned and still own.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM, wait, and return the final report the daemon wrote.
    pub fn stop(mut self) -> StatsReport {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "mcrd exited with {status}:\n{}",
                    self.log_text()
                );
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "mcrd did not stop within 10 s of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.final_stats).expect("final stats file");
        serde_json::from_str(&text).expect("final stats parse as the documented schema")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Asserts the conservation laws (relay/README.md, "Counters and the laws they obey") on a report.
pub fn assert_conserves(r: &StatsReport) {
    for w in r
        .workers
        .iter()
        .map(|w| (&w.counters, format!("worker {}", w.id)))
        .chain([(&r.totals, "totals".to_string())])
    {
        let (c, name) = w;
        assert_eq!(
            c.rx,
            c.filtered + c.malformed + c.no_match + c.matched,
            "{name}: rx != filtered + malformed + no_match + matched: {c:?}"
        );
    }
    for f in &r.flows {
        for o in &f.outputs {
            assert_eq!(
                o.matched,
                o.tx_sent + o.tx_errors + o.buf_exhaust + o.in_flight,
                "flow {} output {}: matched != sent + errors + exhaust + in_flight: {o:?}",
                f.rule,
                o.output
            );
        }
    }
}

/// Reads a receiver socket's kernel drop counter (`SO_RXQ_OVFL` is per-packet; use /proc).
pub fn udp_rcvbuf_errors(ns: &Netns) -> u64 {
    let out = ns.command("cat").arg("/proc/net/snmp").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(h), Some(v)) = (lines.next(), lines.next()) else {
        return 0;
    };
    let idx = h.split_whitespace().position(|f| f == "RcvbufErrors");
    idx.and_then(|i| v.split_whitespace().nth(i))
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
pub const PORT: u16 = 5000;
pub const SRC_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

/// `src --veth--> relay_1 --veth--> ... relay_n --veth--> dst`: each node's `out0` joins the
/// next node's `in0`. The sender's address is in a subnet the first relay has no route to, with
/// strict reverse-path filtering on: the kernel itself would drop this traffic.
pub struct Chain {
    pub src: Netns,
    pub relays: Vec<Netns>,
    pub dst: Netns,
}

impl Chain {
    /// Address of `dst`'s `up` interface.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, self.relays.len() as u8, 2)
    }
}

pub fn chain(hops: usize, gso_offload: bool) -> Chain {
    let src = Netns::new("src");
    let relays: Vec<Netns> = (0..hops).map(|i| Netns::new(&format!("r{i}"))).collect();
    let dst = Netns::new("dst");
    let nodes: Vec<&Netns> = std::iter::once(&src)
        .chain(relays.iter())
        .chain(std::iter::once(&dst))
        .collect();
    for k in 0..nodes.len() - 1 {
        // Link k: node k `out0` <-> node k+1 `in0`. Link 0's ends are in different subnets.
        let a_addr = if k == 0 {
            format!("{SRC_ADDR}/24")
        } else {
            format!("10.0.{k}.1/24")
        };
        veth(
            nodes[k],
            "out0",
            &a_addr,
            nodes[k + 1],
            "in0",
            &format!("10.0.{k}.2/24"),
            gso_offload,
        );
    }
    src.ip(&["route", "add", "224.0.0.0/4", "dev", "out0"]);
    for r in &relays {
        r.sysctl("net.ipv4.conf.all.rp_filter", "1");
        r.sysctl("net.ipv4.conf.in0.rp_filter", "1");
    }
    Chain { src, relays, dst }
}

pub fn relay_config(workers: u32, extra_dataplane: &str, rules: &str) -> String {
    format!("[dataplane]\nworkers = {workers}\n{extra_dataplane}\n\n{rules}")
}

pub fn rule(name: &str, group: Ipv4Addr, port: u16, outputs: &str) -> String {
    format!("[[rule]]\nname = \"{name}\"\ninput = \"in0\"\ngroup = \"{group}\"\nport = {port}\noutputs = [{outputs}]\n")
}

pub fn chain_rule() -> String {
    rule(
        "chain",
        GROUP,
        PORT,
        &format!("{{ dest = \"{GROUP}\", port = {PORT}, interface = \"out0\", ttl = 8 }}"),
    )
}

/// Checks every received payload against what was sent; returns the sequence numbers seen.
pub fn check_payloads(got: &[Vec<u8>], len: usize) -> Vec<u64> {
    let mut seqs: Vec<u64> = got
        .iter()
        .map(|p| {
            assert_eq!(p.len(), len, "datagram length changed in flight");
            let seq = u64::from_be_bytes(p[..8].try_into().unwrap());
            assert!(
                p == &payload(seq, len),
                "payload of datagram {seq} changed in flight"
            );
            seq
        })
        .collect();
    seqs.sort_unstable();
    seqs
}

/// Receives until `rx` has been quiet for `idle`, and checks that datagrams `0..n` of `len`
/// bytes each all arrived, once each and unchanged.
pub fn expect_all(rx: &std::net::UdpSocket, n: u64, len: usize, idle: Duration) {
    let got = drain(rx, idle, n as usize + 10);
    assert_eq!(check_payloads(&got, len), (0..n).collect::<Vec<_>>());
}

/// An untagged Ethernet/IPv4/UDP frame from `SRC_ADDR` to `GROUP:PORT`, checksums filled in.
pub fn frame(payload: &[u8], src_port: u16) -> Vec<u8> {
    use relay::wire::{ethernet, ipv4, udp};
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN];
    f.extend_from_slice(payload);
    let (eth, rest) = f.split_at_mut(ethernet::HEADER_LEN);
    let (ip, datagram) = rest.split_at_mut(ipv4::MIN_HEADER_LEN);
    ethernet::Frame::emit(
        eth,
        [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
        [0x02, 0, 0, 0, 0, 1],
        0x0800,
    )
    .unwrap();
    let ip_repr = ipv4::Repr {
        source: SRC_ADDR,
        destination: GROUP,
        protocol: ipv4::protocol::UDP,
        ttl: 8,
        payload_len: datagram.len() as u16,
    };
    ip_repr.emit(ip).unwrap();
    let udp_repr = udp::Repr {
        source_port: src_port,
        destination_port: PORT,
    };
    udp_repr.emit(datagram, SRC_ADDR, GROUP).unwrap();
    f
}

/// Recomputes the IPv4 header checksum of a frame whose header a test changed on purpose.
pub fn refresh_ip_checksum(f: &mut [u8]) {
    use relay::wire::checksum;
    f[24] = 0;
    f[25] = 0;
    let ihl = (f[14] & 0x0f) as usize * 4;
    let c = checksum::finish(checksum::sum(&f[14..14 + ihl]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// An AF_PACKET socket bound to `ifname` in `ns`, for injecting raw frames.
pub fn raw_socket(ns: &Netns, ifname: &str) -> std::os::fd::OwnedFd {
    ns.enter(|| {
        // SAFETY: plain socket(2); ownership of the descriptor passes to OwnedFd below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a descriptor we just opened and own.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = relay::netif::index(ifname).unwrap() as i32;
        // SAFETY: binding our socket to a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        owned
    })
}

pub fn raw_send(fd: &std::os::fd::OwnedFd, f: &[u8]) {
    // SAFETY: sending from a live buffer of the given length.
    let n = unsafe { libc::send(fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
    assert_eq!(
        n as usize,
        f.len(),
        "raw send: {}",
        std::io::Error::last_os_error()
    );
}

/// Sends one `UDP_SEGMENT` send of `segments` datagrams of `size` bytes each, numbered from
/// `first`.
pub fn send_gso(tx: &UdpSocket, dest: SocketAddrV4, first: u64, segments: u64, size: usize) {
    let mut buf = Vec::with_capacity(segments as usize * size);
    for i in 0..segments {
        buf.extend_from_slice(&payload(first + i, size));
    }
    let _ = tx.send_to(&buf, dest);
}

/// Turns on `UDP_SEGMENT` with `size`-byte segments for every send on `tx`.
pub fn set_udp_segment(tx: &UdpSocket, size: libc::c_int) {
    // SAFETY: setsockopt(UDP_SEGMENT) with an int on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&size as *const libc::c_int).cast(),
            4,
        )
    };
    assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
}

/// `inner` in VXLAN (VNI 42) from the sender's `out0` (10.99.0.1) to the relay's `in0`
/// (10.0.0.2, UDP port 4789, MAC `dst_mac`), with a full outer UDP checksum: sent from a raw
/// socket, it arrives without offload (CHECKSUM_NONE).
pub fn in_vxlan(dst_mac: [u8; 6], inner: &[u8]) -> Vec<u8> {
    use relay::wire::{ethernet, ipv4, udp};
    let (outer_src, outer_dst) = (SRC_ADDR, std::net::Ipv4Addr::new(10, 0, 0, 2));
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN];
    // VXLAN header: the I flag, VNI 42.
    f.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]);
    f.extend_from_slice(inner);
    let (eth, rest) = f.split_at_mut(ethernet::HEADER_LEN);
    let (ip, datagram) = rest.split_at_mut(ipv4::MIN_HEADER_LEN);
    ethernet::Frame::emit(eth, dst_mac, [0x02, 0, 0, 0, 0, 1], 0x0800).unwrap();
    ipv4::Repr {
        source: outer_src,
        destination: outer_dst,
        protocol: ipv4::protocol::UDP,
        ttl: 64,
        payload_len: datagram.len() as u16,
    }
    .emit(ip)
    .unwrap();
    udp::Repr {
        source_port: 40000,
        destination_port: 4789,
    }
    .emit(datagram, outer_src, outer_dst)
    .unwrap();
    f
}

/// Gives `relay_ns` a VXLAN interface `vx0` (VNI 42, UDP 4789 on `in0`'s 10.0.0.2) whose frames
/// reach it as CHECKSUM_COMPLETE when they came with an outer UDP checksum (see
/// [`in_vxlan`]), and a route back to the sender (strict reverse-path filtering on `in0`
/// drops the outer frames from 10.99.0.1 without one).
pub fn add_vxlan_input(relay_ns: &Netns) {
    relay_ns.ip(&["route", "add", "10.99.0.0/24", "dev", "in0"]);
    relay_ns.ip(&[
        "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "local", "10.0.0.2",
        "dev", "in0",
    ]);
    relay_ns.ip(&["addr", "add", "10.42.0.1/24", "dev", "vx0"]);
    relay_ns.ip(&["link", "set", "vx0", "up"]);
}

/// Sends `n` pairs of inner frames in VXLAN from `raw` to `dst_mac`: `good(i)`, then
/// `good(10_000 + i)` with byte `csum_at` flipped (a wrong UDP checksum), pausing a little
/// every ten pairs. Returns the program `id`'s run time (ns) and runs over the sends.
pub fn send_good_and_bad_in_vxlan(
    raw: &std::os::fd::OwnedFd,
    dst_mac: [u8; 6],
    id: u32,
    n: u64,
    good: impl Fn(u64) -> Vec<u8>,
    csum_at: usize,
) -> (u64, u64) {
    let stats_on = relay::fastpath::enable_run_stats().expect("BPF_ENABLE_STATS");
    let (t0, runs0) = relay::fastpath::program_run_stats(id).unwrap();
    for i in 0..n {
        raw_send(raw, &in_vxlan(dst_mac, &good(i)));
        let mut bad = good(10_000 + i);
        bad[csum_at] ^= 0x5a;
        raw_send(raw, &in_vxlan(dst_mac, &bad));
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // The last frames' runs are counted once they arrived.
    std::thread::sleep(Duration::from_millis(300));
    let (t1, runs1) = relay::fastpath::program_run_stats(id).unwrap();
    drop(stats_on);
    (t1 - t0, runs1 - runs0)
}
