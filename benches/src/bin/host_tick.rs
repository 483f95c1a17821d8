//! Runs the host-tick rig ([`benches::host_rig`]) and prints the timed part's p50 / p99:
//! `cargo run --release -p benches --bin host_tick -- [clients] [ticks] [warm]`.
//! Under callgrind, count the tick alone with
//! `valgrind --tool=callgrind --toggle-collect='*ZoneHost*tick*' target/release/host_tick 1000 20 60`.

fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = args.first().copied().unwrap_or(1_000) as u32;
    let ticks = args.get(1).copied().unwrap_or(600);
    let warm = args.get(2).copied().unwrap_or(120);
    let threads = args.get(3).copied().unwrap_or(2) as usize;
    let mut rig = benches::standard_rig(clients, threads, 1)?;
    for _ in 0..warm {
        rig.step();
    }
    let mut times: Vec<f64> = (0..ticks).map(|_| rig.step().as_secs_f64() * 1e3).collect();
    times.sort_unstable_by(f64::total_cmp);
    let q = |f: f64| times[((times.len() - 1) as f64 * f).round() as usize];
    println!(
        "host tick, {clients} clients, {threads} threads: p50 {:.2} ms, p99 {:.2} ms; {} connected, {:.1} visible/client, {} datagrams sent ({} B), {} send errors, {} awaited",
        q(0.5),
        q(0.99),
        rig.connected(),
        rig.visible_per_client(),
        rig.sent.0,
        rig.sent.1,
        rig.send_errors,
        rig.waited
    );
    let m = rig.host.replication_metrics();
    println!(
        "replication: {:.1} visible per packet, {:.1} B per packet, {:.2} deferred per packet",
        m.visible as f64 / m.packets.max(1) as f64,
        m.bytes as f64 / m.packets.max(1) as f64,
        m.deferred as f64 / m.packets.max(1) as f64
    );
    Ok(())
}
