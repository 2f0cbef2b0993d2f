//! Test helpers: network-namespace pairs that clean up after themselves, child processes that
//! are killed if a test fails, and the root check.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_trafficgen");

/// Tests that push traffic run one at a time: on a 2-core machine, two at once would measure
/// each other (rate accuracy) and overflow each other's buffers (loss).
pub static TRAFFIC: Mutex<()> = Mutex::new(());

pub fn traffic_lock() -> std::sync::MutexGuard<'static, ()> {
    TRAFFIC
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether namespace tests can run. Without root they are skipped with a message on stderr,
/// unless `MCR_E2E_REQUIRED=1` (CI), where a skip is a failure.
pub fn namespaces_available(test: &str) -> bool {
    let root = unsafe_free_is_root();
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    if root && has_ip {
        return true;
    }
    let why = if root {
        "the `ip` tool is missing"
    } else {
        "not running as root"
    };
    if std::env::var("MCR_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!("{test}: cannot run ({why}) and MCR_E2E_REQUIRED=1");
    }
    skip(&format!("SKIPPED {test}: needs network namespaces, {why}"));
    false
}

fn unsafe_free_is_root() -> bool {
    // /proc/self/status has "Uid: real effective saved fs"; effective uid 0 is root.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Runs a command and panics with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Prints a skip notice straight to the process's stderr: the test harness captures `eprintln!`
/// of passing tests, and a skip must be visible.
pub fn skip(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Two namespaces joined by a veth pair: `tx` (sender side, 10.200.N.1 on `tx_if`, a multicast
/// route out of it) and `rx` (10.200.N.2 on `rx_if`). Deleted on drop, even when a test panics.
pub struct NetnsPair {
    pub tx: String,
    pub rx: String,
    pub tx_if: String,
    pub rx_if: String,
    pub tx_addr: String,
    pub rx_addr: String,
}

impl NetnsPair {
    pub fn new() -> NetnsPair {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let pair = NetnsPair {
            tx: format!("tg{pid}t{n}"),
            rx: format!("tg{pid}r{n}"),
            tx_if: format!("tg{pid}a{n}"),
            rx_if: format!("tg{pid}b{n}"),
            tx_addr: format!("10.200.{}.1", n % 250),
            rx_addr: format!("10.200.{}.2", n % 250),
        };
        // Constructed before the commands so a failure half way still deletes what exists.
        sh(&["ip", "netns", "add", &pair.tx]);
        sh(&["ip", "netns", "add", &pair.rx]);
        sh(&[
            "ip",
            "link",
            "add",
            &pair.tx_if,
            "netns",
            &pair.tx,
            "type",
            "veth",
            "peer",
            "name",
            &pair.rx_if,
            "netns",
            &pair.rx,
        ]);
        for (ns, dev, addr) in [
            (&pair.tx, &pair.tx_if, &pair.tx_addr),
            (&pair.rx, &pair.rx_if, &pair.rx_addr),
        ] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip",
            "-n",
            &pair.tx,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            &pair.tx_if,
        ]);
        // As on a real NIC, every datagram crosses the wire as its own frame. With the veth's
        // default UDP segmentation offload a GSO batch would stay one buffer up to the
        // receiving socket, and a firewall rule would see (and drop) it as one packet.
        sh(&[
            "ip",
            "netns",
            "exec",
            &pair.tx,
            "ethtool",
            "-K",
            &pair.tx_if,
            "tx-udp-segmentation",
            "off",
        ]);
        pair.wait_until_up();
        pair
    }

    /// Waits until both ends are operationally up with their real qdisc attached. Until the
    /// kernel's link watcher (which may lag up to a second) has activated the device, it still
    /// has the `noop` qdisc, which silently drops everything sent.
    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for (ns, dev) in [(&self.tx, &self.tx_if), (&self.rx, &self.rx_if)] {
            loop {
                let text = sh(&["ip", "-n", ns, "-j", "link", "show", "dev", dev]);
                let json: serde_json::Value = serde_json::from_str(&text).expect("ip -j output");
                let up = json[0]["operstate"] == "UP" && json[0]["qdisc"] != "noop";
                if up {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{dev} in {ns} did not come up: {text}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Datagrams the sending veth dropped so far (its `tx_dropped`). When the receiving
    /// CPU's backlog is full (`net.core.netdev_max_backlog`), veth drops the datagram before
    /// any firewall and counts it here (and again as the peer's `rx_dropped`: count one side
    /// only); UDP hides the ENOBUFS from a sender without `IP_RECVERR`, so the sender believes
    /// it sent it and the receiver sees it lost, with no socket drop.
    pub fn tx_dropped(&self) -> u64 {
        let text = sh(&[
            "ip",
            "-n",
            &self.tx,
            "-j",
            "-s",
            "link",
            "show",
            "dev",
            &self.tx_if,
        ]);
        let json: serde_json::Value = serde_json::from_str(&text).expect("ip -j output");
        json[0]["stats64"]["tx"]["dropped"]
            .as_u64()
            .unwrap_or_else(|| panic!("no tx dropped counter in {text}"))
    }

    /// A command that runs `trafficgen ARGS` inside namespace `ns`.
    pub fn trafficgen(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, BIN]).args(args);
        c
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.tx, &self.rx] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A child process killed (by its pid) if still running when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A receiver started with `--ready-line`, already joined when `start` returns.
pub struct Receiver {
    child: ChildGuard,
    stdout: BufReader<ChildStdout>,
}

impl Receiver {
    pub fn start(mut command: Command) -> Receiver {
        command
            .arg("--ready-line")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(command.spawn().expect("spawn receiver"));
        let mut stdout = BufReader::new(child.0.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read receiver's ready line");
        if line.trim() != "ready" {
            let mut err = String::new();
            let _ = child
                .0
                .stderr
                .take()
                .map(|mut e| e.read_to_string(&mut err));
            panic!("receiver did not become ready: {line:?} {err}");
        }
        Receiver { child, stdout }
    }

    /// Whether the receiver has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    /// The receiver's process id (`ip netns exec` execs it, so this is the receiver itself).
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Waits (at most `limit`) for the receiver to exit; returns its stdout after the ready line.
    pub fn finish(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.0.try_wait().expect("wait receiver") {
                let mut out = String::new();
                let _ = self.stdout.read_to_string(&mut out);
                let mut err = String::new();
                let _ = self
                    .child
                    .0
                    .stderr
                    .take()
                    .map(|mut e| e.read_to_string(&mut err));
                assert!(status.success(), "receiver failed: {status} {out} {err}");
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "receiver did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs a command to completion, panicking with its output unless it succeeds.
pub fn run_ok(mut command: Command) -> Output {
    let out = command.output().expect("run command");
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// Asserts that every key of the JSON record at `path` is documented in the crate README's
/// field tables (as "| `key` |"), so the documented contract cannot fall behind the code.
pub fn assert_fields_documented(path: &Path) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let value: serde_json::Value = read_json(path);
    let mut keys = Vec::new();
    collect_keys(&value, &mut keys);
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "fields of {} missing from README.md: {missing:?}",
        path.display()
    );
}

fn collect_keys(value: &serde_json::Value, keys: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                // Maps keyed by data (errno names, malformation reasons) are not fields.
                if k != "send_errors_by_errno" && k != "malformed_datagrams" {
                    collect_keys(v, keys);
                }
                keys.push(k.clone());
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_keys(v, keys)),
        _ => {}
    }
}

/// Runs `f` on a thread inside network namespace `ns` (for making sockets there: a socket
/// belongs to the namespace it was created in, whichever thread uses it later).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsRawFd;
    let path = Path::new("/var/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            // SAFETY: setns on a valid namespace fd; it changes only this thread's namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in namespace panicked")
    })
}

/// Whether `program` runs (`program version_arg` succeeds to start); like
/// [`namespaces_available`], a missing tool fails the test under `MCR_E2E_REQUIRED=1`.
pub fn tool_available(test: &str, program: &str, version_arg: &str) -> bool {
    if Command::new(program)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        return true;
    }
    if std::env::var("MCR_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!(
            "{test}: `{program}` is missing (scripts/setup.sh installs it) and MCR_E2E_REQUIRED=1"
        );
    }
    skip(&format!("SKIPPED {test}: `{program}` is not installed"));
    false
}

/// Loads nftables `rules` into namespace `ns`.
pub fn nft_load(ns: &str, rules: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rules).unwrap();
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "-f",
        file.path().to_str().unwrap(),
    ]);
}

/// Packet counts of every `counter` in nftables table `inet TABLE` of namespace `ns`, in rule
/// order.
pub fn nft_counters(ns: &str, table: &str) -> Vec<u64> {
    let text = sh(&[
        "ip", "netns", "exec", ns, "nft", "list", "table", "inet", table,
    ]);
    text.split("counter packets ")
        .skip(1)
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// A packet capture (`dumpcap`) on `iface` in namespace `ns`, stopped with SIGINT so that the
/// file is complete.
pub struct Capture {
    child: ChildGuard,
    pub path: std::path::PathBuf,
}

impl Capture {
    /// Starts capturing packets matching the BPF `filter` and waits until dumpcap is.
    pub fn start(ns: &str, iface: &str, filter: &str, path: &Path) -> Capture {
        let mut child = ChildGuard(
            Command::new("ip")
                .args([
                    "netns", "exec", ns, "dumpcap", "-q", "-i", iface, "-f", filter,
                ])
                .arg("-w")
                .arg(path)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn dumpcap"),
        );
        let mut stderr = BufReader::new(child.0.stderr.take().expect("piped stderr"));
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).expect("read dumpcap's stderr");
            seen.push_str(&line);
            assert!(n > 0, "dumpcap exited before capturing: {seen}");
            if line.contains("Capturing on") {
                break;
            }
        }
        // dumpcap says so just before its capture loop starts.
        std::thread::sleep(Duration::from_millis(300));
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
        });
        Capture {
            child,
            path: path.to_path_buf(),
        }
    }

    /// Stops the capture and waits for dumpcap to close the file.
    pub fn stop(mut self) {
        std::thread::sleep(Duration::from_millis(200));
        sh(&["kill", "-INT", &self.child.0.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.0.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "dumpcap did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
