//! The analyzer reads the producers' JSON contracts without building the producers: no
//! io_uring, perf events or BPF toolchain in its dependency graph (README.md at the top,
//! "Architecture"). Checked on the graph cargo resolves for the analyzer alone, beside the
//! relay's, where the same crates must be found (so the check can tell them apart).

use std::process::Command;

/// Crates only the daemon and the generator need.
const DAEMON_ONLY: [&str; 4] = ["io-uring", "perf-event2", "libbpf-rs", "libbpf-sys"];

/// The names of the crates in the normal (non-dev, non-build) dependency graph of `package`.
fn normal_dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree", "--locked", "-e", "normal", "--prefix", "none", "-f", "{p}", "-p", package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_analyzer_does_not_depend_on_the_daemon() {
    let analyzer = normal_dependencies("analyzer");
    let relay = normal_dependencies("relay");
    assert!(
        analyzer.iter().any(|c| c == "relay"),
        "the analyzer reads relay::stats::report"
    );
    for krate in DAEMON_ONLY {
        assert!(
            relay.iter().any(|c| c == krate),
            "the daemon's graph lists {krate}"
        );
        assert!(
            !analyzer.iter().any(|c| c == krate),
            "the analyzer depends on {krate}: a relay or trafficgen dependency lost \
             `default-features = false`, or the contracts gained a daemon dependency"
        );
    }
}

/// The cloud and network stack polars' lazy engine brings (polars-stream turns on polars-io's
/// `cloud` and `file_cache`): half a clean build for reading a local directory of small files.
const NETWORK_STACK: [&str; 6] = [
    "object_store",
    "reqwest",
    "rustls",
    "ring",
    "hyper",
    "tokio-rustls",
];

#[test]
fn the_analyzer_builds_no_network_stack() {
    let analyzer = normal_dependencies("analyzer");
    assert!(
        analyzer.iter().any(|c| c == "polars-io"),
        "the analyzer reads its history with polars-io"
    );
    for krate in NETWORK_STACK {
        assert!(
            !analyzer.iter().any(|c| c == krate),
            "the analyzer depends on {krate}: a polars feature that needs the lazy engine \
             (`lazy`, `streaming`, `cloud`) came back into analyzer/Cargo.toml"
        );
    }
}
