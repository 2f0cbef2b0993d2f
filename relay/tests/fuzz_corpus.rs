//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/*`) through the same entry
//! functions the fuzz targets call, on the stable toolchain, so CI keeps every seed and every
//! crash input once found.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
        n += 1;
    }
    assert!(n >= 20, "{target}: only {n} corpus files");
}

#[test]
fn frame_corpus_replays() {
    replay("frame", relay::fuzzing::frame);
}

#[test]
fn control_corpus_replays() {
    replay("control", relay::fuzzing::control);
}

#[test]
fn config_corpus_replays() {
    replay("config", relay::fuzzing::config_text);
}
