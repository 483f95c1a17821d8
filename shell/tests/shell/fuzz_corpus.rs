//! Replays every checked-in corpus file of the shell's fuzz targets through the same bodies
//! cargo fuzz runs, so plain `cargo test` on stable exercises them and every crash found so far.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_target_has_a_corpus_and_survives_it() {
    for (name, body) in zone_shell::fuzzing::TARGETS {
        let dir = corpus_dir(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "fuzz corpus {} missing ({e}): run the seed writer (fuzz/README.md)",
                    dir.display()
                )
            })
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "fuzz corpus {} is empty", dir.display());
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            body(&bytes);
        }
    }
}

#[test]
fn empty_and_tiny_inputs_are_harmless() {
    for (_, body) in zone_shell::fuzzing::TARGETS {
        body(&[]);
        body(&[0]);
        body(&[0x5A]);
        body(&[0xFF; 7]);
    }
}

#[test]
fn seeds_survive_their_targets() {
    for (name, seeds) in zone_shell::fuzzing::seeds() {
        let (_, body) = zone_shell::fuzzing::TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("seeds for unknown target {name}"));
        for s in seeds {
            body(&s);
        }
    }
}

/// Writes the seed corpus (run once after changing targets):
/// `cargo test -p zone-shell --test fuzz_corpus -- --ignored write_seed_corpus`
#[test]
#[ignore = "writes files; run by hand to regenerate seeds"]
fn write_seed_corpus() {
    for (name, seeds) in zone_shell::fuzzing::seeds() {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
    }
}
