//! The packet phase on threads: a host whose lanes run on a [`LanePool`] sends exactly the
//! datagrams (the same bytes, in the same order) as one building and sealing everything on
//! its tick thread, tick after tick, with clients acking and playing.

use std::net::SocketAddr;

use zone_core::{ZoneConfig, ZoneId};
use zone_shell::rig::{HostRig, RigConfig};

fn datagrams(threads: usize, ticks: usize) -> Vec<Vec<(SocketAddr, Vec<u8>)>> {
    // A thread joins one lane pool for its life: a fresh one per rig.
    std::thread::spawn(move || {
        let mut rig = HostRig::new(RigConfig {
            zone: ZoneConfig::arena(ZoneId(1), 96, 96, 500),
            clients: 60,
            rtt_ticks: 4,
            sockets: false,
            threads,
            snapshot_interval: 1,
        })
        .unwrap();
        rig.record_datagrams();
        (0..ticks)
            .map(|_| {
                rig.step();
                rig.take_datagrams()
            })
            .collect()
    })
    .join()
    .unwrap()
}

#[test]
fn lanes_on_threads_seal_the_same_bytes_as_one_thread() {
    let one = datagrams(1, 150);
    for threads in [2, 3] {
        let many = datagrams(threads, 150);
        let mut sent = 0;
        for (t, (a, b)) in one.iter().zip(&many).enumerate() {
            assert_eq!(
                a.len(),
                b.len(),
                "tick {t}, {threads} threads: as many datagrams"
            );
            assert!(a == b, "tick {t}, {threads} threads: the same datagrams");
            sent += a.len();
        }
        assert!(sent >= 60 * 140, "every client got its snapshots ({sent})");
    }
}
