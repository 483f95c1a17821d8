//! A warm host tick allocates nothing: the simulation, the replication (shared preparation and
//! the lanes' builds on two threads), the netcode sealing and the send path (the sealed batches
//! handed to the kernel with sendmmsg from the lanes' threads), for a hundred clients playing;
//! nor does the world page's sampler copying the zone after the tick while someone looks.
//!
//! Its own test binary: the counting allocator counts every thread (the lanes run on two)
//! while the timed part of a tick runs, and nothing else runs in the process then.

#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zone_core::{ZoneConfig, ZoneId};
use zone_shell::rig::{HostRig, RigConfig};
use zone_shell::view::{Sampler, ZoneView};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only adds a counter.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_warm_host_tick_allocates_nothing() {
    let counted = std::thread::spawn(|| {
        // The standard scenario's calm NPCs (they idle long and aggro close), so views settle.
        let mut zone = ZoneConfig::arena(ZoneId(1), 160, 160, 1_500);
        zone.rules.npc.aggro_radius = 4.0;
        zone.rules.npc.idle_min_ticks = 900;
        zone.rules.npc.idle_max_ticks = 3_600;
        let mut rig = HostRig::new(RigConfig {
            zone,
            clients: 100,
            rtt_ticks: 6,
            sockets: true,
            threads: 2,
            snapshot_interval: 1,
        })
        .unwrap();
        for _ in 0..600 {
            rig.step();
        }
        let sent_before = rig.sent.0;
        let mut mark = |on: bool| COUNTING.store(on, Ordering::SeqCst);
        let mut per_tick = Vec::new();
        for _ in 0..200 {
            let before = ALLOCS.load(Ordering::SeqCst);
            rig.step_marked(&mut mark);
            per_tick.push(ALLOCS.load(Ordering::SeqCst) - before);
        }
        // The world page's sampler, while someone looks: once its buffers have held the
        // zone, copying it allocates nothing either.
        let view = ZoneView::default();
        view.attach();
        let mut sampler = Sampler::new(60);
        let (mut samples, mut sample_allocs) = (0, 0);
        for i in 0..240 {
            let took = rig.step();
            sampler.record(took);
            let before = ALLOCS.load(Ordering::SeqCst);
            mark(i >= 24);
            let copied = sampler.after_tick(&rig.host, &view);
            mark(false);
            if i >= 24 {
                samples += u32::from(copied);
                sample_allocs += ALLOCS.load(Ordering::SeqCst) - before;
            }
        }
        let sampled = (samples, sample_allocs, view.latest().dots.len());
        (per_tick, rig.sent.0 - sent_before, rig.connected(), sampled)
    })
    .join()
    .unwrap();
    let (per_tick, sent, connected, (samples, sample_allocs, dots)) = counted;
    assert!(
        samples >= 15,
        "the sampler copied the zone: {samples} samples"
    );
    assert_eq!(dots, 1_600, "every entity sampled");
    assert_eq!(
        sample_allocs, 0,
        "heap allocations in {samples} warm samples of the world page"
    );
    assert_eq!(connected, 100);
    assert!(sent >= 100 * 200, "the sends were real: {sent} datagrams");
    let total: u64 = per_tick.iter().sum();
    let ticks_with: Vec<(usize, u64)> = per_tick
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| (i, *n))
        .collect();
    assert_eq!(
        total, 0,
        "heap allocations in 200 warm host ticks (tick, count): {ticks_with:?}"
    );
}
