//! Building one client's packet from the tick's shared [`Frame`]: AOI with hysteresis, the
//! changes against the acknowledged baseline, the priority accumulator that fits them into the
//! packet budget, and the bytes, written straight into the worker's output.
//!
//! Most of a packet is copied, not encoded: an entity whose record did not change since the
//! client's baseline costs nothing; one whose baseline is its previous version gets the update
//! body the tick prepared once for every client. Only a client holding an older version gets
//! a body encoded for it; one holding a version nobody remembers gets the entity replaced
//! (removed and spawned again in the same packet).
//!
//! Priority is importance (closeness, kind of change) times staleness: how many ticks old the
//! client's acknowledged copy of an entity is (or how long a spawn or removal has waited).
//! Staleness only resets when a snapshot carrying the change is acknowledged, so what is
//! deferred keeps rising until it is delivered: the closest go first and nothing starves.

use crate::EntityId;
use crate::protocol::wire::{WireWriter, put_varint, varint_len};
use crate::protocol::{
    AVATAR_MAX_LEN, AvatarUpdate, MAX_RELIABLE_PER_PACKET, SECTION_AVATAR, UPDATE_TRACK,
    anchor_field, server_sections, update_header, write_server_header, write_spawn,
    write_update_body,
};

use super::SNAPSHOT_RING;
use super::frame::Frame;
use super::link::{ClientLink, Held};
use super::track::Tracked;

/// Ticks before an unacknowledged reliable message is sent again (about two round trips).
const RELIABLE_RESEND_TICKS: u64 = 12;

/// Upper bound of a server packet's header: version, kind, tick, baseline age, reliable ack,
/// sections, pong, and the section counts and reliable start.
const FIXED_OVERHEAD: usize = 1 + 1 + 9 + 9 + 3 + 1 + 9 + 4 * 3 + 3 + AVATAR_MAX_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Leaves the view (baseline index).
    Remove,
    /// Changed since the baseline: an update (shared body, or one encoded for this client).
    Update,
    /// The baseline's version is unknown: removed and spawned again.
    Replace,
    /// New to the view.
    Spawn,
    /// Changed and changed back: the snapshot takes the new version, the wire nothing.
    Refresh,
}

/// Spawns and removals whose waiting time a client's link remembers, at most (the lowest ids
/// of a larger burst; the rest count their wait from now until there is room). Bounds the
/// link's list, which never grows.
pub(super) const PENDING_CAP: usize = 256;

/// Where an update's body is: the tick's shared bytes, or this client's scratch.
const SHARED: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: EntityId,
    kind: Kind,
    /// Index in the baseline (removals, updates, replacements).
    base: u32,
    /// The entity's slot in the frame (not for removals of gone entities).
    slot: u32,
    /// Update body: [`SHARED`] (then `shared` is the prepared update's slot), or its start in
    /// the scratch bodies.
    body: u32,
    shared: u8,
    body_len: u8,
    mask: u8,
    /// Estimated encoded size.
    size: u16,
    chosen: bool,
    priority: f32,
}

/// Reused buffers of one worker's packet builds.
#[derive(Debug)]
pub(super) struct Scratch {
    candidates: Vec<Candidate>,
    order: Vec<u32>,
    visible: Vec<EntityId>,
    /// Frame slot of each visible entity.
    slots: Vec<u32>,
    /// The view as a bitset over frame slots.
    bits: Vec<u64>,
    pending: Vec<(EntityId, u64)>,
    snapshot: Vec<Held>,
    bodies: Vec<u8>,
    reliable: Vec<u8>,
    message: Vec<u8>,
}

impl Default for Scratch {
    /// Sized for large views and full packets at once: a worker's own buffers never grow in
    /// a warm server.
    fn default() -> Self {
        Self {
            candidates: Vec::with_capacity(1_024),
            order: Vec::with_capacity(1_024),
            visible: Vec::with_capacity(1_024),
            slots: Vec::with_capacity(1_024),
            bits: Vec::with_capacity(1_024),
            pending: Vec::with_capacity(1_024),
            snapshot: Vec::with_capacity(1_024),
            bodies: Vec::with_capacity(16_384),
            reliable: Vec::with_capacity(crate::protocol::MAX_PACKET),
            message: Vec::with_capacity(crate::protocol::MAX_PACKET),
        }
    }
}

/// What one packet build did.
#[derive(Debug, Default)]
pub(super) struct BuildStats {
    pub visible: usize,
    pub records: usize,
    pub deferred: usize,
    pub shared: usize,
    pub encoded: usize,
    pub replaced: usize,
    pub full: bool,
}

/// Builds `link`'s packet for the frame's tick, appending it to `out`.
pub(super) fn build_packet(
    link: &mut ClientLink,
    frame: &Frame<'_>,
    s: &mut Scratch,
    out: &mut Vec<u8>,
) -> BuildStats {
    let tick = frame.tick;
    let config = frame.config;
    let me = frame.slot_of(link.entity).map(|i| frame.entity(i));
    let center = me.map(|m| frame.position(m));
    let pong = link.pong.take();
    let reliable_ack = link.reliable_rx.ack();

    aoi(link, frame, center, s);

    // Baseline: the newest snapshot the client acknowledged, if still remembered.
    let (baseline_tick, base) = match link.slot(link.acked) {
        Some(snap) => (link.acked, snap.entities.as_slice()),
        None => (0, &[][..]),
    };

    // The avatar section: the fields that differ from the baseline's avatar.
    let base_avatar = if baseline_tick == 0 {
        None
    } else {
        link.slot(baseline_tick).and_then(|b| b.avatar)
    };
    let avatar = link
        .avatar
        .and_then(|now| AvatarUpdate::between(base_avatar.as_ref(), &now));

    let mut stats = BuildStats {
        full: baseline_tick == 0,
        ..BuildStats::default()
    };
    if center.is_some() {
        // Also the view's ids and the snapshot as it is if every change fits (the usual case).
        candidates(link, frame, base, s, &mut stats);
    } else {
        s.candidates.clear();
        s.pending.clear();
        s.snapshot.clear();
        s.snapshot.extend_from_slice(base);
    }
    stats.visible = s.visible.len();

    // Reliable messages first: those never sent and those due for a resend, within budget.
    // A frozen view (handoff under way) carries no entity changes: the redirect may use the
    // whole packet.
    let reliable_budget = if center.is_none() {
        config.packet_budget.saturating_sub(FIXED_OVERHEAD)
    } else {
        config.reliable_budget
    };
    let (reliable_first, due) = link.reliable_tx.due(tick, RELIABLE_RESEND_TICKS);
    s.reliable.clear();
    let mut reliable_count = 0usize;
    for m in due.take(MAX_RELIABLE_PER_PACKET) {
        s.message.clear();
        WireWriter::new(&mut s.message).put(m);
        if s.reliable.len() + s.message.len() > reliable_budget {
            break;
        }
        s.reliable.extend_from_slice(&s.message);
        reliable_count += 1;
    }

    // Fit the entity changes into what is left, highest priority first.
    let avail = config
        .packet_budget
        .saturating_sub(FIXED_OVERHEAD + s.reliable.len());
    let total: usize = s.candidates.iter().map(|c| usize::from(c.size)).sum();
    let mut ordered = false;
    if total <= avail {
        s.candidates.iter_mut().for_each(|c| c.chosen = true);
    } else {
        prioritize(link, frame, center, base, s);
        ordered = true;
        let mut used = 0usize;
        for &i in &s.order {
            let c = &mut s.candidates[i as usize];
            if c.kind == Kind::Refresh || used + usize::from(c.size) <= avail {
                used += usize::from(c.size);
                c.chosen = true;
            }
        }
    }

    let start = out.len();
    loop {
        write(
            frame,
            s,
            (baseline_tick, reliable_ack, pong),
            (reliable_first, reliable_count),
            avatar.as_ref(),
            out,
        );
        let len = out.len() - start;
        if len <= config.packet_budget || !s.candidates.iter().any(|c| c.chosen) {
            break;
        }
        // The estimate was short (wide index deltas): drop the least important and rewrite.
        out.truncate(start);
        if !ordered {
            prioritize(link, frame, center, base, s);
            ordered = true;
        }
        let mut excess = len - config.packet_budget;
        for &i in s.order.iter().rev() {
            let c = &mut s.candidates[i as usize];
            if c.chosen && c.kind != Kind::Refresh {
                c.chosen = false;
                excess = excess.saturating_sub(usize::from(c.size) + 2);
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
    for c in &s.candidates {
        if c.kind == Kind::Refresh {
            continue;
        }
        if c.chosen {
            stats.records += 1;
        } else {
            stats.deferred += 1;
        }
    }
    if stats.deferred > 0 {
        // Some changes wait: the client holds the baseline's versions of those.
        snapshot(frame, base, s);
    }
    link.reliable_tx
        .mark_sent(reliable_first, reliable_count, tick);
    // Swap buffers rather than copy: capacities circulate between clients, and one that must
    // grow grows with room to spare, so once the largest views have been seen, building a
    // packet allocates nothing.
    let slot = &mut link.ring[(tick % SNAPSHOT_RING as u64) as usize];
    slot.tick = tick;
    slot.avatar = avatar
        .map(|a| a.apply(base_avatar.as_ref()))
        .or(base_avatar);
    std::mem::swap(&mut slot.entities, &mut s.snapshot);
    std::mem::swap(&mut link.visible, &mut s.visible);
    // Spawns and removals waiting (at most PENDING_CAP): copied into the client's own list.
    link.pending.clear();
    link.pending.extend_from_slice(&s.pending);
    stats
}

/// Area of interest, with hysteresis: enter within `aoi_radius`, leave beyond
/// `aoi_exit_radius`. Entrants are searched every `aoi_refresh_ticks` (staggered over the
/// clients), exits checked every time. A client whose avatar left (handoff under way) keeps
/// its view. The grid holds frame slots, which are in id order: the view comes out sorted
/// from a bitset, with no sort.
fn aoi(link: &ClientLink, frame: &Frame<'_>, center: Option<glam::Vec2>, s: &mut Scratch) {
    s.visible.clear();
    s.slots.clear();
    let Some(c) = center else {
        s.visible.extend_from_slice(&link.visible);
        return;
    };
    let config = frame.config;
    let refresh = u64::from(config.aoi_refresh_ticks.max(1));
    let search = link.visible.is_empty() || (frame.tick + link.player.0).is_multiple_of(refresh);
    let positions = frame.tracker.positions();
    if !search {
        let exit2 = config.aoi_exit_radius * config.aoi_exit_radius;
        for &id in &link.visible {
            if let Some(slot) = frame.slot_of(id)
                && positions
                    .get(slot)
                    .is_some_and(|p| p.distance_squared(c) <= exit2)
            {
                s.slots.push(slot as u32);
            }
        }
        return;
    }
    let enter2 = config.aoi_radius * config.aoi_radius;
    let exit2 = config.aoi_exit_radius * config.aoi_exit_radius;
    let previously = &link.visible;
    let words = positions.len().div_ceil(64);
    s.bits.clear();
    s.bits.resize(words, 0);
    let bits = &mut s.bits;
    let ids = frame.tracker.ids();
    frame
        .grid
        .for_each_run_near(c, config.aoi_exit_radius, |run| {
            for &(slot, p) in run {
                let d2 = p.distance_squared(c);
                let slot = slot.0 as usize;
                let seen = d2 <= enter2
                    || (d2 <= exit2
                        && ids
                            .get(slot)
                            .is_some_and(|id| previously.binary_search(id).is_ok()));
                if seen && let Some(w) = bits.get_mut(slot / 64) {
                    *w |= 1 << (slot % 64);
                }
            }
        });
    for (w, &word) in s.bits.iter().enumerate() {
        let mut x = word;
        while x != 0 {
            s.slots.push((w * 64 + x.trailing_zeros() as usize) as u32);
            x &= x - 1;
        }
    }
}

/// The changes in id order: removals, updates (or replacements) and spawns; in the same
/// pass the view's ids and the snapshot the client holds if every change is sent.
fn candidates(
    link: &ClientLink,
    frame: &Frame<'_>,
    base: &[Held],
    s: &mut Scratch,
    stats: &mut BuildStats,
) {
    s.candidates.clear();
    s.pending.clear();
    s.bodies.clear();
    s.visible.clear();
    s.snapshot.clear();
    // Buffers circulate between clients (the snapshot, the view): one that must grow grows
    // with room to spare at once, so a warm server soon stops allocating.
    reserve_with_room(&mut s.snapshot, base.len() + s.slots.len());
    reserve_with_room(&mut s.visible, s.slots.len());
    let tick = frame.tick;
    let (versions, ids) = (frame.tracker.versions(), frame.tracker.ids());
    let (mut bi, mut vi, mut pi) = (0usize, 0usize, 0usize);
    loop {
        let b = base.get(bi);
        let v = s.slots.get(vi).map(|&slot| slot as usize);
        let vid = v.and_then(|slot| ids.get(slot).copied());
        let mut c = match (b, v, vid) {
            (None, None, _) | (_, Some(_), None) => break,
            (Some(b), Some(slot), Some(id)) if b.id == id => {
                bi += 1;
                vi += 1;
                s.visible.push(id);
                let version = versions.get(slot).copied().unwrap_or(0);
                if b.holds(version) {
                    s.snapshot.push(*b);
                    continue;
                }
                s.snapshot.push(Held::new(id, version));
                change(
                    frame,
                    frame.entity(slot),
                    b,
                    (bi - 1) as u32,
                    slot,
                    &mut s.bodies,
                    stats,
                )
            }
            (Some(b), Some(slot), Some(id)) if b.id > id => {
                vi += 1;
                s.visible.push(id);
                let t = frame.entity(slot);
                s.snapshot.push(Held::new(id, t.version));
                spawn(t, slot, tick)
            }
            (None, Some(slot), Some(id)) => {
                vi += 1;
                s.visible.push(id);
                let t = frame.entity(slot);
                s.snapshot.push(Held::new(id, t.version));
                spawn(t, slot, tick)
            }
            (Some(b), _, _) => {
                bi += 1;
                Candidate {
                    id: b.id,
                    kind: Kind::Remove,
                    base: (bi - 1) as u32,
                    slot: u32::MAX,
                    body: SHARED,
                    shared: 0,
                    body_len: 0,
                    mask: 0,
                    size: 1,
                    chosen: false,
                    priority: 0.0,
                }
            }
        };
        if matches!(c.kind, Kind::Remove | Kind::Spawn | Kind::Replace) {
            // Spawns and removals: remember since when they are due (for their priority).
            while link.pending.get(pi).is_some_and(|(pid, _)| *pid < c.id) {
                pi += 1;
            }
            let since = link
                .pending
                .get(pi)
                .filter(|(pid, _)| *pid == c.id)
                .map_or(tick, |(_, t)| *t);
            if s.pending.len() < PENDING_CAP {
                s.pending.push((c.id, since));
            }
        }
        c.chosen = false;
        s.candidates.push(c);
    }
}

/// Makes room for `n` items in an empty `v`: when it must grow, to the power of two past half
/// again `n`, at least 256.
fn reserve_with_room<T>(v: &mut Vec<T>, n: usize) {
    if v.capacity() < n {
        v.reserve((n + n / 2).next_power_of_two().max(256));
    }
}

/// Encoded size of an entity's anchor age in a spawn (moving entities only).
fn spawn_age_len(t: &Tracked, tick: u64) -> usize {
    if t.record.moving() {
        varint_len(tick.saturating_sub(t.record.anchor))
    } else {
        0
    }
}

fn spawn(t: &Tracked, slot: usize, tick: u64) -> Candidate {
    let size = 1 + spawn_age_len(t, tick) + t.spawn.len();
    Candidate {
        id: t.record.id,
        kind: Kind::Spawn,
        base: u32::MAX,
        slot: slot as u32,
        body: SHARED,
        shared: 0,
        body_len: 0,
        mask: 0,
        size: size as u16,
        chosen: false,
        priority: 0.0,
    }
}

/// The change of an entity whose version differs from the client's.
fn change(
    frame: &Frame<'_>,
    t: &Tracked,
    held: &Held,
    base: u32,
    slot: usize,
    bodies: &mut Vec<u8>,
    stats: &mut BuildStats,
) -> Candidate {
    let tick = frame.tick;
    let mut c = Candidate {
        id: t.record.id,
        kind: Kind::Update,
        base,
        slot: slot as u32,
        body: SHARED,
        shared: 0,
        body_len: 0,
        mask: 0,
        size: 0,
        chosen: false,
        priority: 0.0,
    };
    let age = |mask: u8| {
        if mask & UPDATE_TRACK != 0 {
            varint_len(anchor_field(&t.record, tick))
        } else {
            0
        }
    };
    if let Some(i) = t.from.iter().position(|&f| held.holds(f))
        && let Some(p) = t.deltas.get(i)
    {
        if p.mask == 0 {
            // It changed and changed back: nothing to send.
            c.kind = Kind::Refresh;
            return c;
        }
        stats.shared += 1;
        (c.shared, c.mask) = (i as u8, p.mask);
        c.size = (1 + age(c.mask) + p.body.len()) as u16;
        return c;
    }
    match frame.record(t, held.version()) {
        Some(old) => {
            let start = bodies.len();
            c.mask = write_update_body(&old, &t.record, frame.tick_hz, bodies);
            c.body = start as u32;
            c.body_len = (bodies.len() - start) as u8;
            if c.mask == 0 {
                c.kind = Kind::Refresh;
                c.size = 0;
            } else {
                stats.encoded += 1;
                c.size = (1 + age(c.mask) + usize::from(c.body_len)) as u16;
            }
        }
        None => {
            stats.replaced += 1;
            c.kind = Kind::Replace;
            c.size = (2 + spawn_age_len(t, tick) + t.spawn.len()) as u16;
        }
    }
    c
}

/// Orders the candidates by priority (importance times staleness), highest first.
fn prioritize(
    link: &ClientLink,
    frame: &Frame<'_>,
    center: Option<glam::Vec2>,
    base: &[Held],
    s: &mut Scratch,
) {
    let tick = frame.tick;
    let aoi = frame.config.aoi_radius;
    let mut pi = 0usize;
    for c in s.candidates.iter_mut() {
        let at = if c.slot == u32::MAX {
            None
        } else {
            Some(frame.position(frame.entity(c.slot as usize)))
        };
        let weight = |kind: f32| -> f32 {
            if c.id == link.entity {
                return 1.0e6;
            }
            let d = match (center, at) {
                (Some(c), Some(p)) => c.distance(p),
                _ => aoi,
            };
            kind * (1.0 + aoi / (d + 1.0))
        };
        c.priority = match c.kind {
            Kind::Update | Kind::Refresh => {
                let status = c.mask & crate::protocol::UPDATE_STATUS != 0;
                // How long the client's copy has been current: a long-resting entity that moved
                // goes early, and what waits grows older.
                let since = base.get(c.base as usize).map_or(tick, Held::version);
                let age = tick.saturating_sub(since).clamp(1, 1 << 20);
                weight(if status { 3.0 } else { 1.0 }) * age as f32
            }
            Kind::Remove | Kind::Spawn | Kind::Replace => {
                while s.pending.get(pi).is_some_and(|(pid, _)| *pid < c.id) {
                    pi += 1;
                }
                let since = s
                    .pending
                    .get(pi)
                    .filter(|(pid, _)| *pid == c.id)
                    .map_or(tick, |(_, t)| *t);
                weight(3.0) * (tick.saturating_sub(since) + 4) as f32
            }
        };
    }
    s.order.clear();
    s.order.extend(0..s.candidates.len() as u32);
    let cands = &s.candidates;
    s.order.sort_unstable_by(|&a, &b| {
        let (a, b) = (&cands[a as usize], &cands[b as usize]);
        b.priority.total_cmp(&a.priority).then(a.id.cmp(&b.id))
    });
}

/// Writes the packet: header, reliable messages, then the chosen removals, updates, spawns.
fn write(
    frame: &Frame<'_>,
    s: &Scratch,
    (baseline_tick, reliable_ack, pong): (u64, u16, Option<u64>),
    (reliable_first, reliable_count): (u16, usize),
    avatar: Option<&AvatarUpdate>,
    out: &mut Vec<u8>,
) {
    let tick = frame.tick;
    let (mut removals, mut updates, mut spawns) = (0usize, 0usize, 0usize);
    for c in s.candidates.iter().filter(|c| c.chosen) {
        match c.kind {
            Kind::Remove => removals += 1,
            Kind::Update => updates += 1,
            Kind::Spawn => spawns += 1,
            Kind::Replace => {
                removals += 1;
                spawns += 1;
            }
            Kind::Refresh => {}
        }
    }
    let sections = server_sections(reliable_count, removals, updates, spawns)
        | if avatar.is_some() { SECTION_AVATAR } else { 0 };
    write_server_header(out, tick, baseline_tick, reliable_ack, pong, sections);
    if reliable_count > 0 {
        put_varint(out, reliable_count as u64);
        put_varint(out, reliable_first.into());
        out.extend_from_slice(&s.reliable);
    }
    let chosen = || s.candidates.iter().filter(|c| c.chosen);
    if removals > 0 {
        put_varint(out, removals as u64);
        let mut next = 0u32;
        for c in chosen().filter(|c| matches!(c.kind, Kind::Remove | Kind::Replace)) {
            put_varint(out, c.base.wrapping_sub(next).into());
            next = c.base.wrapping_add(1);
        }
    }
    if updates > 0 {
        put_varint(out, updates as u64);
        let mut next = 0u32;
        for c in chosen().filter(|c| c.kind == Kind::Update) {
            let t = frame.entity(c.slot as usize);
            put_varint(out, update_header(c.base.wrapping_sub(next), c.mask));
            next = c.base.wrapping_add(1);
            if c.mask & UPDATE_TRACK != 0 {
                put_varint(out, anchor_field(&t.record, tick));
            }
            let body = if c.body == SHARED {
                t.deltas
                    .get(usize::from(c.shared))
                    .map_or(&[][..], |p| p.body.as_slice())
            } else {
                let start = c.body as usize;
                s.bodies
                    .get(start..start + usize::from(c.body_len))
                    .unwrap_or(&[])
            };
            out.extend_from_slice(body);
        }
    }
    if spawns > 0 {
        put_varint(out, spawns as u64);
        let mut next = 0u32;
        for c in chosen().filter(|c| matches!(c.kind, Kind::Spawn | Kind::Replace)) {
            let t = frame.entity(c.slot as usize);
            put_varint(out, c.id.0.wrapping_sub(next).into());
            next = c.id.0.wrapping_add(1);
            let age = t
                .record
                .moving()
                .then(|| tick.saturating_sub(t.record.anchor));
            write_spawn(out, &t.spawn, age);
        }
    }
    if let Some(a) = avatar {
        a.write(out);
    }
}

/// The snapshot the client holds after this packet: the baseline with the chosen changes.
fn snapshot(frame: &Frame<'_>, base: &[Held], s: &mut Scratch) {
    s.snapshot.clear();
    let versions = frame.tracker.versions();
    let now = |c: &Candidate| Held::new(c.id, versions.get(c.slot as usize).copied().unwrap_or(0));
    let mut ci = 0usize;
    let cands = &s.candidates;
    for b in base {
        while let Some(c) = cands.get(ci).filter(|c| c.id < b.id) {
            // Only spawns come before the next baseline entity.
            if c.chosen && c.kind == Kind::Spawn {
                s.snapshot.push(now(c));
            }
            ci += 1;
        }
        match cands.get(ci).filter(|c| c.id == b.id) {
            Some(c) => {
                ci += 1;
                match (c.kind, c.chosen) {
                    (Kind::Remove, true) => {}
                    (Kind::Update | Kind::Replace | Kind::Refresh, true) => {
                        s.snapshot.push(now(c));
                    }
                    _ => s.snapshot.push(*b),
                }
            }
            None => s.snapshot.push(*b),
        }
    }
    for c in cands.get(ci..).unwrap_or_default() {
        if c.chosen && c.kind == Kind::Spawn {
            s.snapshot.push(now(c));
        }
    }
}
