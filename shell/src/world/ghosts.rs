//! Ghosts: read-only copies of the entities a neighbouring zone simulates near the border, so a
//! player at the border sees across it and nothing pops in when they cross.
//!
//! [`collect`] picks, from a zone, the entities within the margin of each neighbour; the
//! neighbour's [`GhostTable`] keeps the newest batch from every zone around it, forgets a batch
//! that is not refreshed in time (that neighbour counts as down), and merges what it holds into
//! the id-sorted list the replicator takes, under ids from [`zone_core::world::ghost_id`].

use std::collections::BTreeMap;
use std::time::Duration;

use zone_core::protocol::EntitySample;
use zone_core::world::{WorldGrid, ghost_id};
use zone_core::{EntityKind, PlayerId, Zone, ZoneId};

use super::bus::{GhostEntity, MAX_GHOSTS};

/// Fills `out` (neighbour zone -> ghosts, vectors reused) with the entities of `zone` lying
/// within `margin` of each neighbour's rectangle. Every neighbour gets an entry, empty or not.
pub fn collect(
    zone: &Zone,
    grid: &WorldGrid,
    margin: f32,
    out: &mut BTreeMap<ZoneId, Vec<GhostEntity>>,
) {
    let me = zone.zone_id();
    let neighbours = grid.neighbours(me);
    out.retain(|z, _| neighbours.contains(z));
    for n in &neighbours {
        out.entry(*n).or_default().clear();
    }
    let Some(bounds) = grid.bounds(me) else {
        return;
    };
    for view in zone.entities() {
        // Cheap test first: most entities are nowhere near an edge.
        if bounds.contains(view.position) && bounds.distance_to_edge(view.position) > margin {
            continue;
        }
        let player = match view.kind {
            EntityKind::Player(p) => Some(p),
            EntityKind::Npc | EntityKind::Prop => None,
        };
        let ghost = GhostEntity {
            entity: EntitySample::from_view(&view),
            player,
        };
        for n in grid.ghost_zones_of(me, view.position, margin) {
            if let Some(list) = out.get_mut(&n)
                && list.len() < MAX_GHOSTS
            {
                list.push(ghost);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Batch {
    tick: u64,
    received: Duration,
    entities: Vec<GhostEntity>,
}

/// The ghost batches a zone holds from its neighbours.
#[derive(Debug, Default)]
pub struct GhostTable {
    batches: BTreeMap<ZoneId, Batch>,
    merged: Vec<EntitySample>,
}

impl GhostTable {
    /// Takes a batch from zone `from` of its tick `tick`, received at `now`. An older tick
    /// than the one held is ignored (pub/sub may reorder across reconnects), unless the
    /// sender restarted (its tick went back a long way).
    pub fn insert(&mut self, from: ZoneId, tick: u64, entities: Vec<GhostEntity>, now: Duration) {
        let b = self.batches.entry(from).or_default();
        // Saturating: a forged tick near u64::MAX must not overflow.
        let restarted = tick.saturating_add(600) < b.tick;
        if tick >= b.tick || restarted {
            *b = Batch {
                tick,
                received: now,
                entities,
            };
        }
    }

    /// Whether zone `zone` sent a batch within `timeout` of `now`: it is up and simulating.
    pub fn alive(&self, zone: ZoneId, now: Duration, timeout: Duration) -> bool {
        self.batches
            .get(&zone)
            .is_some_and(|b| now.saturating_sub(b.received) <= timeout)
    }

    /// Zones heard from within `timeout`.
    pub fn live_zones(
        &self,
        now: Duration,
        timeout: Duration,
    ) -> impl Iterator<Item = ZoneId> + '_ {
        self.batches
            .iter()
            .filter(move |(_, b)| now.saturating_sub(b.received) <= timeout)
            .map(|(z, _)| *z)
    }

    /// What the last [`GhostTable::merged`] returned.
    pub fn last_merged(&self) -> &[EntitySample] {
        &self.merged
    }

    /// Forgets batches older than `timeout`, then returns every ghost held, as zone `me` of
    /// `grid` replicates them: ghost ids, sorted. Avatars of players `here` says are in this
    /// zone are left out (a batch sent just before their handoff would show them twice).
    pub fn merged(
        &mut self,
        grid: &WorldGrid,
        me: ZoneId,
        now: Duration,
        timeout: Duration,
        here: impl Fn(PlayerId) -> bool,
    ) -> &[EntitySample] {
        self.batches
            .retain(|_, b| now.saturating_sub(b.received) <= timeout);
        self.merged.clear();
        for (from, batch) in &self.batches {
            let Some(slot) = grid.neighbour_slot(me, *from) else {
                continue;
            };
            for g in &batch.entities {
                if g.player.is_some_and(&here) {
                    continue;
                }
                self.merged.push(EntitySample {
                    id: ghost_id(slot, g.entity.id),
                    ..g.entity
                });
            }
        }
        self.merged.sort_unstable_by_key(|e| e.id);
        self.merged.dedup_by_key(|e| e.id);
        &self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zone_core::EntityId;
    use zone_core::replication::GHOST_ID_BASE;

    #[test]
    fn a_forged_tick_at_the_end_of_time_neither_overflows_nor_sticks() {
        let mut t = GhostTable::default();
        let now = Duration::from_secs(1);
        t.insert(ZoneId(2), u64::MAX - 3, Vec::new(), now);
        t.insert(ZoneId(2), u64::MAX, Vec::new(), now);
        // The real zone, far behind the forged tick, reads as a restart and is taken.
        t.insert(ZoneId(2), 10, Vec::new(), now);
        assert_eq!(t.batches[&ZoneId(2)].tick, 10);
    }

    #[test]
    fn border_entities_go_to_the_neighbours_they_are_near_and_come_back_as_sorted_ghosts() {
        let grid = WorldGrid::of_tiles(2, 2, 64, 1).unwrap();
        let zone = Zone::new(grid.zone_config(ZoneId(1), 300).unwrap(), 3).unwrap();
        let mut out = BTreeMap::new();
        collect(&zone, &grid, 25.0, &mut out);
        assert_eq!(
            out.keys().copied().collect::<Vec<_>>(),
            [ZoneId(2), ZoneId(3), ZoneId(4)]
        );
        let bounds2 = grid.bounds(ZoneId(2)).unwrap();
        for g in &out[&ZoneId(2)] {
            let p = g.entity.position();
            let nearest = p.clamp(bounds2.min, bounds2.max);
            assert!(nearest.distance(p) <= 25.01, "{p}");
        }
        assert!(
            !out[&ZoneId(2)].is_empty(),
            "some NPCs live near the east border"
        );
        assert!(
            out[&ZoneId(4)].len() <= out[&ZoneId(2)].len().min(out[&ZoneId(3)].len()),
            "the corner is narrower"
        );

        let mut table = GhostTable::default();
        let now = Duration::from_secs(10);
        table.insert(ZoneId(1), 50, out[&ZoneId(2)].clone(), now);
        let timeout = Duration::from_secs(1);
        assert!(table.alive(ZoneId(1), now + timeout, timeout));
        assert!(!table.alive(ZoneId(1), now + timeout * 2, timeout));
        assert!(!table.alive(ZoneId(3), now, timeout));
        let ghosts = table
            .merged(&grid, ZoneId(2), now, timeout, |_| false)
            .to_vec();
        assert_eq!(ghosts.len(), out[&ZoneId(2)].len());
        assert!(ghosts.windows(2).all(|w| w[0].id < w[1].id));
        assert!(ghosts.iter().all(|g| g.id.0 >= GHOST_ID_BASE));
        // An older batch does not replace a newer one; silence expires the batch.
        table.insert(ZoneId(1), 40, Vec::new(), now);
        assert_eq!(
            table
                .merged(&grid, ZoneId(2), now, timeout, |_| false)
                .len(),
            ghosts.len()
        );
        assert!(
            table
                .merged(&grid, ZoneId(2), now + timeout * 3, timeout, |_| false)
                .is_empty()
        );
    }

    #[test]
    fn a_player_hosted_here_is_not_shown_as_its_own_ghost() {
        let grid = WorldGrid::of_tiles(2, 1, 64, 1).unwrap();
        let mut table = GhostTable::default();
        let g = |id, player| GhostEntity {
            entity: EntitySample {
                id: EntityId(id),
                kind: zone_core::protocol::NetKind::Npc,
                x: 63 * 64,
                y: 64,
                vx: 0,
                vy: 0,
                facing: 0,
                health: 1,
                max_health: 1,
                alive: true,
                ext: Default::default(),
            },
            player,
        };
        table.insert(
            ZoneId(1),
            1,
            vec![g(1, None), g(2, Some(PlayerId(9)))],
            Duration::ZERO,
        );
        let shown = table.merged(
            &grid,
            ZoneId(2),
            Duration::ZERO,
            Duration::from_secs(1),
            |p| p == PlayerId(9),
        );
        assert_eq!(shown.len(), 1);
    }
}
