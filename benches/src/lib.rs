//! Criterion benchmarks of the zone server live in `benches/benches/`; run them with
//! `cargo bench -p benches`. This library is shared scaffolding for them and for the figures
//! report as it grows.
