//! A warm, busy zone (1,000 players, 5,000 NPCs, combat going on) allocates nothing per tick.
//!
//! A counting global allocator counts heap allocations made by this test's thread only, so
//! other test threads cannot disturb the count.

#![allow(clippy::unwrap_used)]

mod testkit;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only adds a thread-local counter.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn warm_busy_zone_allocates_nothing_per_tick() {
    let (mut zone, mut script) = testkit::busy_zone(3, 1_000, 5_000, 384);
    for _ in 0..600 {
        script.drive(&mut zone);
        zone.tick();
    }
    let (mut hits, mut deaths, mut respawns, mut moved, mut inputs) = (0, 0, 0, 0, 0);
    let before = allocations();
    for _ in 0..300 {
        script.drive(&mut zone);
        let out = zone.tick();
        hits += out.combat_events.len();
        deaths += out.deaths.len();
        respawns += out.respawns.len();
        moved += out.metrics.moved;
        inputs += out.metrics.inputs_applied;
    }
    let allocated = allocations() - before;
    assert!(
        hits > 50 && deaths > 0 && respawns > 0,
        "combat going on: {hits} hits, {deaths} deaths, {respawns} respawns"
    );
    assert!(
        moved > 100_000 && inputs >= 250_000,
        "entities moving ({moved}) and inputs flowing ({inputs})"
    );
    assert_eq!(allocated, 0, "heap allocations in 300 warm ticks");
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let v: Vec<u64> = Vec::with_capacity(16);
    std::hint::black_box(&v);
    assert!(allocations() > before);
}
