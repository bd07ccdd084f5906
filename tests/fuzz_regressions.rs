//! Replays every saved fuzz input through the fuzz targets' checks, in the
//! normal test suite: the seeds (`fuzz/seeds/TARGET/`) and every input that
//! once failed (`fuzz/regressions/TARGET/`, copied there from
//! `fuzz/artifacts/` when a fuzz run finds something, or from a property
//! test's minimal failing case). Run the fuzzers themselves with
//! `fuzz/run.sh`.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut count = 0;
    for target in checks::TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| checks::run(target, &data));
            assert!(outcome.is_ok(), "{target} fails on {}", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_seed_passes_every_check() {
    assert!(replay("seeds") >= checks::TARGETS.len());
}

#[test]
fn every_input_that_once_failed_passes_now() {
    assert!(replay("regressions") >= 1);
}
