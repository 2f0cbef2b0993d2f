//! Entry points of the fuzz targets (`relay/fuzz/`, run with `cargo +nightly fuzz`), kept in
//! the library so that the committed corpora also replay as ordinary tests on the stable
//! toolchain (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes, must never panic, and
//! checks the invariants the rest of the daemon relies on.

use std::sync::Arc;

use crate::config::{self, validate_rule};
use crate::control::protocol::Response;
use crate::control::Controller;
use crate::dataplane::Shared;
use crate::membership::Memberships;
use crate::rules::RuleSet;
use crate::stats::collect::Identity;
use crate::wire::{parse_frame, ChecksumHint, Parsed, VnetHeader};

/// The frame parser. Byte 0 chooses the context the ring would give: bit 0 a vnet header
/// (the next 10 bytes), bit 1 a stripped VLAN tag (the next 2 bytes), bits 2-3 the checksum
/// hint, bit 4 the largest payload (9216 or 65507). The rest is the frame.
pub fn frame(data: &[u8]) {
    let Some((&ctl, mut rest)) = data.split_first() else {
        return;
    };
    let mut vnet = None;
    if ctl & 1 != 0 {
        let Some((head, tail)) = rest.split_at_checked(10) else {
            return;
        };
        vnet = VnetHeader::parse(head);
        rest = tail;
    }
    let mut vlan = None;
    if ctl & 2 != 0 {
        let Some((head, tail)) = rest.split_first_chunk::<2>() else {
            return;
        };
        vlan = Some(u16::from_be_bytes(*head));
        rest = tail;
    }
    let hint = match (ctl >> 2) & 3 {
        0 => ChecksumHint::Unverified,
        1 => ChecksumHint::Verified,
        _ => ChecksumHint::Partial,
    };
    let max_payload = if ctl & 16 != 0 { 65_507 } else { 9216 };
    let parsed = parse_frame(rest, vnet.as_ref(), vlan, hint, max_payload);
    if let Parsed::Segmented { segment_size, .. } = parsed {
        assert!((1..=max_payload).contains(&(segment_size as usize)));
    }
    let frame_range = rest.as_ptr_range();
    let mut count = 0usize;
    for d in parsed.datagrams() {
        assert!(d.payload.len() <= max_payload, "payload above max_payload");
        let r = d.payload.as_ptr_range();
        assert!(
            d.payload.is_empty() || (frame_range.start <= r.start && r.end <= frame_range.end),
            "payload outside the frame"
        );
        count += 1;
        assert!(count <= rest.len().max(1) * 8, "more datagrams than bytes");
    }
}

/// A controller as the daemon has, over a data plane without workers, whose interface
/// lookups resolve to an index no interface has (so rule changes touch no real group
/// membership) and whose log filter only validates.
pub fn controller() -> Controller {
    let shared = Arc::new(Shared::new(1, false));
    shared.adopted[0].store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    Controller::new(
        RuleSet::default(),
        0,
        Arc::new(crate::runtime::Runtime::userspace(shared)),
        Identity::new(None, config::DataplaneConfig::default()).unwrap(),
        Box::new(|level| {
            tracing_subscriber::EnvFilter::try_new(level)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }),
        Memberships::default(),
        |name| {
            if config::validate_interface_name(name).is_ok() {
                Ok(0x7fff_0000)
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        },
    )
}

/// The control protocol: each line of `data` is one request to the same controller, as on
/// one connection. Every reply is one line of JSON that parses back, and every rule in force
/// passes the rule validator.
pub fn control(data: &[u8]) {
    let mut c = controller();
    for line in data.split(|&b| b == b'\n') {
        let reply = c.handle_line(line);
        let text = serde_json::to_string(&reply).expect("a reply serializes");
        assert!(!text.contains('\n'), "a reply is one line");
        let back: Response = serde_json::from_str(&text).expect("a reply parses back");
        assert_eq!(back.ok, reply.ok);
        for rule in c.rules().iter() {
            assert_eq!(validate_rule(rule), Ok(()), "{rule}");
        }
    }
}

/// The config parser: what it accepts is a valid rule set, and its memory estimate does not
/// overflow.
pub fn config_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = config::parse(text, "fuzz.toml") else {
        return;
    };
    for rule in &cfg.rules {
        assert_eq!(validate_rule(rule), Ok(()), "{rule}");
    }
    let n = cfg.rules.len();
    let set = RuleSet::from_specs(cfg.rules).expect("the parser's rules form a rule set");
    assert_eq!(set.len(), n);
    let e = crate::dataplane::memory::estimate(&cfg.dataplane, &[1518, 9018]);
    assert!(e.total() >= e.per_worker() || e.workers == 0);
}
