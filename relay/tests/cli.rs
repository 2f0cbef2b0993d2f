//! `mcrd` and `mcrctl` as a user runs them, without a network: error messages name what is
//! wrong, once.

use std::process::Command;

fn stderr_of(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_file_or_socket_is_named_with_its_cause_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let missing = missing.to_str().unwrap();
    let sock = dir.path().join("nope.sock");
    let sock = sock.to_str().unwrap();
    for (bin, args, code) in [
        (env!("CARGO_BIN_EXE_mcrd"), vec!["--config", missing], 1),
        (
            env!("CARGO_BIN_EXE_mcrctl"),
            vec!["config", "check", missing],
            1,
        ),
        (
            env!("CARGO_BIN_EXE_mcrctl"),
            vec!["--socket", sock, "ping"],
            2,
        ),
    ] {
        let (rc, err) = stderr_of(bin, &args);
        assert_eq!(rc, Some(code), "{args:?}: {err}");
        assert!(err.contains("nope."), "{args:?} names the path: {err}");
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "{args:?}: the cause once: {err}"
        );
    }
}

#[test]
fn out_of_range_values_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    for (text, field) in [
        ("[[rule]]\ninput = \"lo\"\ngroup = \"239.1.1.1\"\nport = 70000\noutputs = [{ dest = \"239.2.2.2\", port = 1, interface = \"lo\" }]\n", "relay.toml:4:8: rule[0].port"),
        ("[[rule]]\ninput = \"lo\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [{ dest = \"239.2.2.2\", port = 1, interface = \"lo\", ttl = 300 }]\n", "rule[0].outputs[0].ttl: 300 is not a TTL"),
        ("[dataplane]\nworkers = 1\nbuffer_size = 100\n", "relay.toml:3:1: dataplane.buffer_size"),
    ] {
        std::fs::write(&path, text).unwrap();
        for bin in [env!("CARGO_BIN_EXE_mcrd"), env!("CARGO_BIN_EXE_mcrctl")] {
            let args: &[&str] = if bin.ends_with("mcrd") {
                &["--config", path.to_str().unwrap()]
            } else {
                &["config", "check", path.to_str().unwrap()]
            };
            let (rc, err) = stderr_of(bin, args);
            assert_eq!(rc, Some(1), "{bin}: {err}");
            assert!(err.contains(field), "{bin} {field}: {err}");
        }
    }
}

/// Issue 10, item 1: a typo in `[control] socket` naming an existing file must not delete it.
#[test]
fn only_a_socket_is_ever_removed_from_the_control_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("relay-precious.toml");
    std::fs::write(&precious, "log_level = \"info\"\n").unwrap();
    let a_dir = dir.path().join("a-directory");
    std::fs::create_dir(&a_dir).unwrap();
    let link = dir.path().join("a-link");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    for (at, kind) in [
        (&precious, "a regular file"),
        (&a_dir, "a directory"),
        (&link, "a symbolic link"),
    ] {
        let config = dir.path().join("relay.toml");
        std::fs::write(
            &config,
            format!("[control]\nsocket = \"{}\"\n", at.display()),
        )
        .unwrap();
        let (rc, err) = stderr_of(
            env!("CARGO_BIN_EXE_mcrd"),
            &["--config", config.to_str().unwrap()],
        );
        assert_eq!(rc, Some(1), "{kind}: {err}");
        assert!(
            err.contains(&at.display().to_string()) && err.contains(kind),
            "{kind}: the error names the path and what is there: {err}"
        );
        // `--socket` is checked the same way.
        let (rc, _) = stderr_of(
            env!("CARGO_BIN_EXE_mcrd"),
            &[
                "--config",
                config.to_str().unwrap(),
                "--socket",
                at.to_str().unwrap(),
            ],
        );
        assert_eq!(rc, Some(1));
        let out = Command::new(env!("CARGO_BIN_EXE_mcrctl"))
            .args(["config", "check"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("warning") && err.contains(&at.display().to_string()),
            "config check warns: {err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "log_level = \"info\"\n",
        "the file survives"
    );
    assert!(a_dir.is_dir());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    use relay::control::server::{check_path, ServerError, SocketPath};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    assert_eq!(check_path(&path).unwrap(), SocketPath::Free);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    assert!(matches!(check_path(&path), Err(ServerError::InUse(_))));
    drop(listener);
    // Another test thread forking a child at that moment holds a copy of the listener until
    // the child's exec closes it (close-on-exec): the socket is stale once that copy is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while matches!(check_path(&path), Err(ServerError::InUse(_)))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(check_path(&path).unwrap(), SocketPath::Stale);
}

/// Issue 10, item 9: a pool of 68 GB passed the check and aborted mcrd (rc 134).
#[test]
fn a_data_plane_larger_than_the_machine_is_refused_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(
        &path,
        format!(
            "[control]\nsocket = \"{}\"\n[dataplane]\nbuffer_count = 1048576\nbuffer_size = 65507\n",
            dir.path().join("s.sock").display()
        ),
    )
    .unwrap();
    let p = path.to_str().unwrap();
    for (bin, args) in [
        (env!("CARGO_BIN_EXE_mcrctl"), vec!["config", "check", p]),
        (env!("CARGO_BIN_EXE_mcrd"), vec!["--config", p]),
    ] {
        let (rc, err) = stderr_of(bin, &args);
        assert_eq!(rc, Some(1), "{bin}: refused, not aborted: {err}");
        assert!(
            err.contains("buffer_count 1048576 x buffer_size 65507")
                && err.contains("MemAvailable")
                && err.contains("64.0 GiB"),
            "{bin}: {err}"
        );
    }
}

/// Issue 18: a control socket path longer than a socket address holds failed at bind with
/// "path must be shorter than SUN_LEN", naming neither the path nor the limit (the nightly job
/// from any checkout deeper than 8 characters). mcrd and `config check` refuse it by name.
#[test]
fn a_control_socket_path_too_long_is_refused_with_its_length_and_the_limit() {
    use relay::control::server::MAX_SOCKET_PATH_LEN;
    let dir = tempfile::tempdir().unwrap();
    // Deep enough on any temporary directory, and not created: nothing is made for it.
    let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
    let socket = deep.join("mcrd.sock");
    let len = socket.as_os_str().len();
    assert!(len > MAX_SOCKET_PATH_LEN);
    assert_eq!(
        MAX_SOCKET_PATH_LEN, 107,
        "Linux's sun_path holds 108 bytes with its NUL"
    );
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!("[control]\nsocket = \"{}\"\n", socket.display()),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let expected = [
        socket.display().to_string(),
        format!("{len} bytes"),
        format!("at most {MAX_SOCKET_PATH_LEN}"),
    ];
    for (bin, args) in [
        (env!("CARGO_BIN_EXE_mcrctl"), vec!["config", "check", c]),
        (env!("CARGO_BIN_EXE_mcrd"), vec!["--config", c]),
    ] {
        let (rc, err) = stderr_of(bin, &args);
        assert_eq!(rc, Some(1), "{bin}: {err}");
        for e in &expected {
            assert!(err.contains(e.as_str()), "{bin} names {e}: {err}");
        }
    }
    assert!(!deep.exists(), "nothing was created for the refused path");
    // One byte under the limit is accepted by the check.
    let short = std::path::PathBuf::from(format!("/tmp/{}", "s".repeat(MAX_SOCKET_PATH_LEN - 5)));
    assert_eq!(short.as_os_str().len(), MAX_SOCKET_PATH_LEN);
    assert!(relay::control::server::check_path(&short).is_ok());
}

/// Issue 23: the unit is `Type=notify`: mcrd says READY=1 once its rules are installed and its
/// control socket answers, RELOADING=1 (with the monotonic time) and READY=1 around a SIGHUP
/// reload, and STOPPING=1 when it stops.
#[test]
fn mcrd_notifies_systemd_of_ready_reload_and_stop() {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let socket = dir.path().join("mcrd.sock");
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!("[control]\nsocket = \"{}\"\n", socket.display()),
    )
    .unwrap();
    let mut mcrd = Command::new(env!("CARGO_BIN_EXE_mcrd"))
        .args(["--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = mcrd.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    };
    let next = || {
        let mut buf = [0u8; 512];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
                // A signal for another test of this process (a child's exit) interrupted the
                // wait: wait again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    signal("-KILL");
                    panic!("no notification from mcrd: {e}");
                }
            }
        }
    };
    let ready = next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=forwarding: 0 rules"), "{ready}");
    // Ready means the control socket answers.
    let ping = Command::new(env!("CARGO_BIN_EXE_mcrctl"))
        .args(["--socket", socket.to_str().unwrap(), "ping"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{ping:?}");
    signal("-HUP");
    let reloading = next();
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading}");
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading}"
    );
    assert!(next().lines().any(|l| l == "READY=1"));
    signal("-TERM");
    let stopping = next();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    assert!(mcrd.wait().unwrap().success());
}
