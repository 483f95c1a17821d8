//! Building one client's packet: AOI with hysteresis, the delta against the acknowledged
//! baseline, and the priority accumulator that fits it into the packet budget.
//!
//! Priority is importance (closeness, kind of change) times staleness: how many ticks old the
//! client's acknowledged copy of an entity is (or how long a spawn or removal has waited).
//! Staleness only resets when a snapshot carrying the change is acknowledged, so what is
//! deferred keeps rising until it is delivered: the closest go first and nothing starves.

use crate::protocol::wire::WireWriter;
use crate::protocol::{EntityUpdate, MAX_RELIABLE_PER_PACKET, NetEntity, ServerPacket};
use crate::{EntityId, SpatialGrid};

use super::link::ClientLink;
use super::{ReplicationConfig, SNAPSHOT_RING};

/// Ticks before an unacknowledged reliable message is sent again (about two round trips).
const RELIABLE_RESEND_TICKS: u64 = 12;

/// Upper bound of the fixed part of a server packet: version, kind, tick, baseline,
/// reliable ack, pong, and the four section counts and reliable start.
const FIXED_OVERHEAD: usize = 1 + 1 + 9 + 9 + 3 + 10 + 4 * 3 + 3;

#[derive(Clone, Copy, Debug)]
enum Change {
    Remove {
        index: u32,
    },
    Update {
        update: EntityUpdate,
        now: NetEntity,
    },
    Spawn(NetEntity),
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: EntityId,
    change: Change,
    priority: f32,
    size: u32,
    chosen: bool,
}

/// Reused buffers shared by every client's packet build.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    candidates: Vec<Candidate>,
    order: Vec<u32>,
    visible: Vec<EntityId>,
    pending: Vec<(EntityId, u64)>,
    snapshot: Vec<NetEntity>,
    captured: Vec<u64>,
    message: Vec<u8>,
}

/// What one packet build did.
#[derive(Debug, Default)]
pub(super) struct BuildStats {
    pub visible: usize,
    pub records: usize,
    pub deferred: usize,
    pub full: bool,
}

/// The quantized world with an id -> position index.
#[derive(Clone, Copy, Debug)]
pub(super) struct World<'a> {
    pub entities: &'a [NetEntity],
    pub index: &'a [u32],
}

fn find(world: World<'_>, id: EntityId) -> Option<&NetEntity> {
    match world.index.get(id.0 as usize) {
        Some(&i) => world.entities.get(i as usize),
        // Ghosts (ids past the zone's own) are found by search: the list is sorted by id.
        None => world
            .entities
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .and_then(|i| world.entities.get(i)),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build_packet(
    link: &mut ClientLink,
    tick: u64,
    config: &ReplicationConfig,
    world: World<'_>,
    grid: &SpatialGrid,
    s: &mut Scratch,
    packet: &mut ServerPacket,
    out: &mut Vec<u8>,
) -> BuildStats {
    let me = find(world, link.entity).copied();
    let pong = link.pong.take();
    let reliable_ack = link.reliable_rx.ack();
    let center = me.map(|m| m.position());

    // 1. Area of interest, with hysteresis: enter within aoi_radius, leave beyond aoi_exit_radius.
    //    A client whose avatar left (handoff under way) keeps its view unchanged.
    s.visible.clear();
    if center.is_none() {
        s.visible.extend_from_slice(&link.visible);
    }
    if let Some(c) = center {
        let enter2 = config.aoi_radius * config.aoi_radius;
        let previously = &link.visible;
        grid.for_each_within(c, config.aoi_exit_radius, |id, p| {
            if p.distance_squared(c) <= enter2 || previously.binary_search(&id).is_ok() {
                s.visible.push(id);
            }
        });
        s.visible.sort_unstable();
    }

    // 2. Baseline: the newest snapshot the client acknowledged, if still remembered.
    let baseline = link
        .slot(link.acked)
        .map(|s| (link.acked, s.entities.as_slice(), s.captured.as_slice()));
    let (baseline_tick, base, base_captured) = baseline.unwrap_or((0, &[], &[]));

    // 3. Candidates in id order: removals, updates, spawns, with their priorities.
    s.candidates.clear();
    s.pending.clear();
    let weight = |e: &NetEntity, kind: f32| -> f32 {
        if e.id == link.entity {
            return 1.0e6;
        }
        let d = center.map_or(0.0, |c| c.distance(e.position()));
        kind * (1.0 + config.aoi_radius / (d + 1.0))
    };
    let (mut bi, mut vi, mut pi) = (0usize, 0usize, 0usize);
    while center.is_some() {
        let (b, v) = (base.get(bi), s.visible.get(vi).copied());
        let (id, change, w) = match (b, v) {
            (None, None) => break,
            (Some(b), Some(v)) if b.id == v => {
                bi += 1;
                vi += 1;
                let Some(now) = find(world, v) else { continue };
                let update = EntityUpdate::between((bi - 1) as u32, b, now);
                if update.is_empty() {
                    continue;
                }
                let kind = if update.status.is_some() { 3.0 } else { 1.0 };
                let age = tick
                    .saturating_sub(base_captured.get(bi - 1).copied().unwrap_or(0))
                    .max(1);
                (
                    v,
                    Change::Update { update, now: *now },
                    weight(now, kind) * age as f32,
                )
            }
            (Some(b), Some(v)) if b.id > v => {
                vi += 1;
                let Some(now) = find(world, v) else { continue };
                (v, Change::Spawn(*now), weight(now, 3.0))
            }
            (None, Some(v)) => {
                vi += 1;
                let Some(now) = find(world, v) else { continue };
                (v, Change::Spawn(*now), weight(now, 3.0))
            }
            (Some(b), _) => {
                bi += 1;
                (
                    b.id,
                    Change::Remove {
                        index: (bi - 1) as u32,
                    },
                    weight(b, 3.0),
                )
            }
        };
        let priority = if let Change::Update { .. } = change {
            w
        } else {
            // Spawns and removals: waiting time since they first became due.
            while link.pending.get(pi).is_some_and(|(pid, _)| *pid < id) {
                pi += 1;
            }
            let since = link
                .pending
                .get(pi)
                .filter(|(pid, _)| *pid == id)
                .map_or(tick, |(_, t)| *t);
            s.pending.push((id, since));
            w * (tick - since + 4) as f32
        };
        // Optimistic: as if the index (or id) delta from the previous record fitted one byte.
        let size = match &change {
            Change::Remove { .. } => 1,
            Change::Update { update, .. } => update.encoded_len(Some(update.index.wrapping_sub(1))),
            Change::Spawn(e) => {
                crate::protocol::messages_spawn_len(e, Some(EntityId(e.id.0.wrapping_sub(1))))
            }
        } as u32;
        s.candidates.push(Candidate {
            id,
            change,
            priority,
            size,
            chosen: false,
        });
    }

    // 4. Reliable messages first: those never sent and those due for a resend, within budget.
    packet.clear();
    let mut reliable_bytes = 0usize;
    let (reliable_first, due) = link.reliable_tx.due(tick, RELIABLE_RESEND_TICKS);
    // A frozen view (handoff under way) carries no entity changes: the redirect may use the
    // whole packet.
    let reliable_budget = if center.is_none() {
        config.packet_budget.saturating_sub(FIXED_OVERHEAD)
    } else {
        config.reliable_budget
    };
    for m in due.take(MAX_RELIABLE_PER_PACKET) {
        s.message.clear();
        WireWriter::new(&mut s.message).put(m);
        if reliable_bytes + s.message.len() > reliable_budget {
            break;
        }
        reliable_bytes += s.message.len();
        packet.reliable.push(m.clone());
    }

    // 5. Fit the entity changes into what is left, highest priority first. Sizes are estimated
    //    optimistically (one-byte index headers); if the encoded packet overshoots, the lowest
    //    priority changes are dropped and it is assembled again.
    let avail = config
        .packet_budget
        .saturating_sub(FIXED_OVERHEAD + reliable_bytes);
    let total: usize = s.candidates.iter().map(|c| c.size as usize).sum();
    let mut ordered = false;
    if total <= avail {
        s.candidates.iter_mut().for_each(|c| c.chosen = true);
    } else {
        order_by_priority(&s.candidates, &mut s.order);
        ordered = true;
        let mut used = 0usize;
        for &i in &s.order {
            let c = &mut s.candidates[i as usize];
            if used + c.size as usize <= avail {
                used += c.size as usize;
                c.chosen = true;
            }
        }
    }

    // 6. The packet and the snapshot the client will hold after it.
    packet.tick = tick;
    packet.baseline = baseline_tick;
    packet.reliable_ack = reliable_ack;
    packet.pong = pong;
    packet.reliable_first = reliable_first;
    let start = out.len();
    loop {
        assemble(
            tick,
            base,
            base_captured,
            &s.candidates,
            packet,
            &mut s.snapshot,
            &mut s.captured,
        );
        packet.encode(out);
        let len = out.len() - start;
        if len <= config.packet_budget || !s.candidates.iter().any(|c| c.chosen) {
            break;
        }
        out.truncate(start);
        if !ordered {
            order_by_priority(&s.candidates, &mut s.order);
            ordered = true;
        }
        let mut excess = len - config.packet_budget;
        for &i in s.order.iter().rev() {
            let c = &mut s.candidates[i as usize];
            if c.chosen {
                c.chosen = false;
                excess = excess.saturating_sub(c.size as usize + 2);
                if excess == 0 {
                    break;
                }
            }
        }
    }
    debug_assert!(
        out.len() - start <= config.packet_budget,
        "packet over budget: {}",
        out.len() - start
    );
    let mut stats = BuildStats {
        visible: s.visible.len(),
        full: baseline_tick == 0,
        ..BuildStats::default()
    };
    for c in &s.candidates {
        if c.chosen {
            stats.records += 1;
        } else {
            stats.deferred += 1;
        }
    }

    link.reliable_tx
        .mark_sent(reliable_first, packet.reliable.len(), tick);

    // Swap buffers rather than copy: capacities circulate between clients, so once the
    // largest views have been seen, building a packet allocates nothing.
    let slot = &mut link.ring[(tick % SNAPSHOT_RING as u64) as usize];
    slot.tick = tick;
    std::mem::swap(&mut slot.entities, &mut s.snapshot);
    std::mem::swap(&mut slot.captured, &mut s.captured);
    std::mem::swap(&mut link.visible, &mut s.visible);
    std::mem::swap(&mut link.pending, &mut s.pending);
    stats
}

fn order_by_priority(cands: &[Candidate], order: &mut Vec<u32>) {
    order.clear();
    order.extend(0..cands.len() as u32);
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (&cands[a as usize], &cands[b as usize]);
        b.priority.total_cmp(&a.priority).then(a.id.cmp(&b.id))
    });
}

/// Fills the packet's entity sections and the resulting snapshot (with capture ticks) from the
/// chosen candidates. Candidates and baseline are both in id order.
fn assemble(
    tick: u64,
    base: &[NetEntity],
    base_captured: &[u64],
    cands: &[Candidate],
    packet: &mut ServerPacket,
    snapshot: &mut Vec<NetEntity>,
    captured: &mut Vec<u64>,
) {
    packet.removed.clear();
    packet.updates.clear();
    packet.spawns.clear();
    snapshot.clear();
    captured.clear();
    let mut ci = 0usize;
    let flush_spawns_before = |limit: Option<EntityId>,
                               ci: &mut usize,
                               packet: &mut ServerPacket,
                               snapshot: &mut Vec<NetEntity>,
                               captured: &mut Vec<u64>| {
        while let Some(c) = cands.get(*ci) {
            let Change::Spawn(e) = c.change else { break };
            if limit.is_some_and(|l| c.id > l) {
                break;
            }
            if c.chosen {
                snapshot.push(e);
                captured.push(tick);
                packet.spawns.push(e);
            }
            *ci += 1;
        }
    };
    for (bi, b) in base.iter().enumerate() {
        flush_spawns_before(Some(b.id), &mut ci, packet, snapshot, captured);
        let kept_since = base_captured.get(bi).copied().unwrap_or(0);
        match cands.get(ci) {
            Some(c) if c.id == b.id => {
                ci += 1;
                match c.change {
                    Change::Remove { index } if c.chosen => packet.removed.push(index),
                    Change::Update { update, now } if c.chosen => {
                        packet.updates.push(update);
                        snapshot.push(now);
                        captured.push(tick);
                    }
                    _ => {
                        snapshot.push(*b);
                        captured.push(kept_since);
                    }
                }
            }
            _ => {
                snapshot.push(*b);
                captured.push(kept_since);
            }
        }
    }
    flush_spawns_before(None, &mut ci, packet, snapshot, captured);
}
