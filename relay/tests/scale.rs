//! End-to-end checks of mcrd with many rules (issue 19, item 8), in real namespaces: a
//! channel list of 20,000 groups on one input loads, the control socket stays responsive,
//! and `rules list` and `stats` are paged and filtered. Time bounds are generous (a debug
//! build on a shared machine): they catch work quadratic in the rules, not noise.

mod common;

use std::time::{Duration, Instant};

use common::*;
use relay::control::protocol::{Command as Ctl, ErrorKind, Reply, Response};

const RULES: u32 = 20_000;

fn channel_list(n: u32) -> String {
    let mut rules = String::new();
    for i in 0..n {
        rules.push_str(&format!(
            "[[rule]]\nname = \"ch{i:05}\"\ninput = \"in0\"\ngroup = \"239.{}.{}.{}\"\nport = {PORT}\noutputs = [{{ dest = \"239.200.{}.{}\", port = {PORT}, interface = \"out0\", ttl = 4 }}]\n",
            10 + i / 65536,
            (i / 256) % 256,
            i % 256,
            (i / 256) % 256,
            i % 256,
        ));
    }
    relay_config(
        1,
        "ring_frames = 64\nbuffer_count = 64\nfast_path = \"auto\"",
        &rules,
    )
}

fn listed(r: &Response) -> Vec<String> {
    match &r.result {
        Some(Reply::Rules(rules)) => rules.iter().map(|l| l.rule.name.clone()).collect(),
        other => panic!("no rules: {other:?} {:?}", r.error),
    }
}

#[test]
fn twenty_thousand_rules_load_and_the_control_socket_stays_responsive_and_paged() {
    if !e2e_allowed("twenty_thousand_rules") {
        return;
    }
    let c = chain(1, false);
    let ns = &c.relays[0];
    let started = Instant::now();
    let relay = Relay::start_within(ns, &channel_list(RULES), Duration::from_secs(180));
    // All rules in force (the table is published before the daemon says it is ready).
    wait_for("all rules listed", Duration::from_secs(120), || {
        relay
            .call(Ctl::RulesPage {
                flow: Some(format!("ch{:05}", RULES - 1)),
                after: None,
                limit: None,
            })
            .ok
    });
    eprintln!("{RULES} rules in force after {:?}", started.elapsed());

    // Pings are answered without waiting for the controller, which re-plans every rule for
    // the fast path every second: 10,000 rules made a ping wait up to 233 ms.
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            assert!(relay.call(Ctl::Ping).ok);
            std::thread::sleep(Duration::from_millis(10));
            t.elapsed() - Duration::from_millis(10)
        })
        .collect();
    times.sort();
    let p99 = times[times.len() * 99 / 100 - 1];
    eprintln!("ping p50 {:?} p99 {p99:?}", times[times.len() / 2]);
    assert!(p99 < Duration::from_millis(500), "ping p99 {p99:?}");

    // Pages in name order, each after the last of the one before.
    let page = |after: Option<String>| {
        listed(&relay.call(Ctl::RulesPage {
            flow: None,
            after,
            limit: Some(3),
        }))
    };
    let first = page(None);
    assert_eq!(first, ["ch00000", "ch00001", "ch00002"]);
    assert_eq!(
        page(first.last().cloned()),
        ["ch00003", "ch00004", "ch00005"]
    );
    let one = relay.call(Ctl::RulesPage {
        flow: Some("ch12345".into()),
        after: None,
        limit: None,
    });
    assert_eq!(listed(&one), ["ch12345"]);
    let none = relay.call(Ctl::RulesPage {
        flow: Some("nope".into()),
        after: None,
        limit: None,
    });
    assert_eq!(
        none.error.map(|e| e.kind),
        Some(ErrorKind::NotFound),
        "an unknown flow is named as such"
    );
    // Old clients' request still lists every rule.
    assert_eq!(listed(&relay.call(Ctl::RulesList)).len(), RULES as usize);

    // Stats of one flow, and a bounded number of flows.
    match relay
        .call(Ctl::StatsPage {
            flow: Some("ch00007".into()),
            limit: None,
        })
        .result
    {
        Some(Reply::Stats(s)) => {
            assert_eq!(s.flows.len(), 1);
            assert_eq!(s.flows[0].rule, "ch00007");
        }
        other => panic!("no stats: {other:?}"),
    }
    // The mcrctl flags reach the daemon.
    let (code, out, err) = relay.mcrctl(&["rules", "list", "--limit", "5"]);
    assert_eq!((code, out.lines().count()), (0, 5), "{out}{err}");
    let (code, out, err) = relay.mcrctl(&["stats", "--json", "--limit", "2"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["flows"].as_array().map(Vec::len), Some(2), "{out}");

    // A reload of the whole list (one rule changed) is applied.
    let text = std::fs::read_to_string(&relay.config).unwrap();
    std::fs::write(
        &relay.config,
        text.replacen(
            "outputs = [{ dest = \"239.200.0.0\", port = 5000",
            "outputs = [{ dest = \"239.200.0.0\", port = 5001",
            1,
        ),
    )
    .unwrap();
    let t = Instant::now();
    let r = relay.call(Ctl::ConfigReload);
    assert!(r.ok, "{r:?}");
    eprintln!("reload of {RULES} rules: {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    drop(relay);
}
