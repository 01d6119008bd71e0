//! Every input in `fuzz/corpus/<target>/` (the seeds and what the fuzzer kept) and in
//! `fuzz/regressions/<target>/` (every crash, hang or out-of-memory it ever found, fixed since)
//! is run through its target, so the test suite catches a regression without a fuzzer. The local
//! `fuzz/photos/` seeds replay too when they are there.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

use imagelake_fuzzing::{Meter, TARGETS};

#[global_allocator]
static METER: Meter = Meter;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_replays() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut failed = Vec::new();
    for (name, target) in TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(name));
        assert!(!corpus.is_empty(), "{name} has no committed seeds");
        let regressions = inputs(&fuzz.join("regressions").join(name));
        let photos = inputs(&fuzz.join("photos").join(name));
        for file in corpus.iter().chain(&regressions).chain(&photos) {
            let bytes = std::fs::read(file).unwrap();
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&bytes))) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{name} {}: {why}", file.display()));
            }
        }
        println!(
            "{name}: {} corpus, {} regression, {} photo inputs",
            corpus.len(),
            regressions.len(),
            photos.len()
        );
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
