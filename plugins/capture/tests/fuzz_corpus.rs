//! Replays the checked-in corpus of the `capture` fuzz target (`fuzz/corpus/capture`) through
//! the body cargo fuzz runs, so plain `cargo test` exercises it and every crash found so far.

#![allow(clippy::unwrap_used)]

#[test]
fn the_capture_corpus_survives() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/capture");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "seed corpus in {}", dir.display());
    for f in files {
        zone_capture::fuzz(&std::fs::read(&f).unwrap());
    }
    // A well-formed plant on the zone path, and tiny inputs.
    let kind = zone_core::game::action_kind::<zone_capture::PlantFlag>().to_le_bytes();
    zone_capture::fuzz(&[2, kind[0], kind[1], 4, 1, 0, 0, 0]);
    for tiny in [&[][..], &[0], &[1], &[2], &[0xFF; 9]] {
        zone_capture::fuzz(tiny);
    }
}
