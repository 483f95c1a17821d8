//! The world as a grid of zones (groundwork for multi-zone hosting): `columns x rows` equal
//! rectangles of world space, zone ids assigned row by row from `first_zone`. It answers which
//! zone owns a world position, each zone's bounds and neighbours, and which neighbours are
//! within a margin of a position (the zones that must see it as a ghost). Pure arithmetic, no
//! floating-point surprises at borders: a position on a shared edge belongs to the zone to its
//! right/top, so every point of the world has exactly one owner.

use glam::Vec2;
use smallvec::SmallVec;

use crate::replication::GHOST_ID_BASE;
use crate::{EntityId, OpenEdges, ZoneConfig, ZoneId};

/// A rectangle of world space, `min` inclusive, `max` exclusive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    /// Lower corner (inclusive).
    pub min: Vec2,
    /// Upper corner (exclusive).
    pub max: Vec2,
}

impl Rect {
    /// Whether `p` is inside.
    pub fn contains(&self, p: Vec2) -> bool {
        p.x >= self.min.x && p.y >= self.min.y && p.x < self.max.x && p.y < self.max.y
    }

    /// Distance from `p` (inside) to the nearest point outside, along each axis's nearer edge.
    pub fn distance_to_edge(&self, p: Vec2) -> f32 {
        (p.x - self.min.x)
            .min(self.max.x - p.x)
            .min(p.y - self.min.y)
            .min(self.max.y - p.y)
    }
}

/// A grid that cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorldError {
    /// No zones, or more than the id space holds.
    #[error("world grid of {columns}x{rows} zones from id {first_zone} is empty or overflows u32")]
    Size {
        /// Columns.
        columns: u32,
        /// Rows.
        rows: u32,
        /// First zone id.
        first_zone: u32,
    },
    /// A zone side that is not a positive finite number.
    #[error("zone size {width}x{height} must be positive and finite")]
    ZoneSize {
        /// Width.
        width: f32,
        /// Height.
        height: f32,
    },
}

/// The grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorldGrid {
    columns: u32,
    rows: u32,
    zone_size: Vec2,
    first_zone: u32,
}

impl WorldGrid {
    /// `columns x rows` zones of `zone_size` world units each, numbered from `first_zone`.
    pub fn new(
        columns: u32,
        rows: u32,
        zone_size: Vec2,
        first_zone: u32,
    ) -> Result<Self, WorldError> {
        let count = u64::from(columns) * u64::from(rows);
        if count == 0 || u64::from(first_zone) + count - 1 > u64::from(u32::MAX) {
            return Err(WorldError::Size {
                columns,
                rows,
                first_zone,
            });
        }
        if !(zone_size.is_finite() && zone_size.x > 0.0 && zone_size.y > 0.0) {
            return Err(WorldError::ZoneSize {
                width: zone_size.x,
                height: zone_size.y,
            });
        }
        Ok(Self {
            columns,
            rows,
            zone_size,
            first_zone,
        })
    }

    /// `columns x rows` square zones of `zone_tiles` tiles each (the form zone maps need).
    pub fn of_tiles(
        columns: u32,
        rows: u32,
        zone_tiles: u32,
        first_zone: u32,
    ) -> Result<Self, WorldError> {
        Self::new(columns, rows, Vec2::splat(zone_tiles as f32), first_zone)
    }

    /// Zones across.
    pub fn columns(&self) -> u32 {
        self.columns
    }

    /// Zones down.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// The size of one zone, world units.
    pub fn zone_size(&self) -> Vec2 {
        self.zone_size
    }

    /// Whether `zone` is part of this world.
    pub fn contains_zone(&self, zone: ZoneId) -> bool {
        self.cell(zone).is_some()
    }

    /// The generated arena of one zone (see [`ZoneConfig::placed_arena`]) with `npcs` NPCs:
    /// placed at the zone's corner, open towards every neighbour. `None` for a zone outside
    /// the world or a grid whose zone size is not a whole number of tiles.
    pub fn zone_config(&self, zone: ZoneId, npcs: u32) -> Option<ZoneConfig> {
        let (cx, cy) = self.cell(zone)?;
        let size = self.zone_size;
        if size.fract() != Vec2::ZERO || size.max_element() > 4096.0 {
            return None;
        }
        let r = self.bounds(zone)?;
        let open = OpenEdges {
            min_x: cx > 0,
            max_x: cx + 1 < self.columns,
            min_y: cy > 0,
            max_y: cy + 1 < self.rows,
        };
        Some(ZoneConfig::placed_arena(
            zone,
            (r.min.x as i64, r.min.y as i64),
            size.x as u32,
            size.y as u32,
            open,
            npcs,
        ))
    }

    /// Where `neighbour` lies as seen from `zone`: a slot 0..8 for the eight directions (row
    /// by row, skipping the centre), `None` if they are not neighbours.
    pub fn neighbour_slot(&self, zone: ZoneId, neighbour: ZoneId) -> Option<u8> {
        let (ax, ay) = self.cell(zone)?;
        let (bx, by) = self.cell(neighbour)?;
        let (dx, dy) = (i64::from(bx) - i64::from(ax), i64::from(by) - i64::from(ay));
        if dx.abs() > 1 || dy.abs() > 1 || (dx, dy) == (0, 0) {
            return None;
        }
        let i = (dy + 1) * 3 + (dx + 1);
        Some(if i > 4 { i - 1 } else { i } as u8)
    }

    /// Every zone id, row by row.
    pub fn zones(&self) -> impl Iterator<Item = ZoneId> + '_ {
        (0..self.columns * self.rows).map(|i| ZoneId(self.first_zone + i))
    }

    fn cell(&self, zone: ZoneId) -> Option<(u32, u32)> {
        let i = zone.0.checked_sub(self.first_zone)?;
        (i < self.columns * self.rows).then(|| (i % self.columns, i / self.columns))
    }

    fn zone_of_cell(&self, cx: i64, cy: i64) -> Option<ZoneId> {
        let inside =
            (0..i64::from(self.columns)).contains(&cx) && (0..i64::from(self.rows)).contains(&cy);
        inside.then(|| ZoneId(self.first_zone + (cy as u32) * self.columns + cx as u32))
    }

    /// The zone owning world position `p` (`None` outside the world or for non-finite `p`).
    pub fn zone_at(&self, p: Vec2) -> Option<ZoneId> {
        if !p.is_finite() {
            return None;
        }
        let c = (p / self.zone_size).floor();
        self.zone_of_cell(c.x as i64, c.y as i64)
    }

    /// A zone's rectangle of world space.
    pub fn bounds(&self, zone: ZoneId) -> Option<Rect> {
        let (cx, cy) = self.cell(zone)?;
        let min = Vec2::new(cx as f32, cy as f32) * self.zone_size;
        Some(Rect {
            min,
            max: min + self.zone_size,
        })
    }

    /// The zones sharing an edge or a corner with `zone`, in id order.
    pub fn neighbours(&self, zone: ZoneId) -> SmallVec<[ZoneId; 8]> {
        let mut out = SmallVec::new();
        let Some((cx, cy)) = self.cell(zone) else {
            return out;
        };
        for dy in -1..=1i64 {
            for dx in -1..=1i64 {
                if (dx, dy) != (0, 0)
                    && let Some(z) = self.zone_of_cell(i64::from(cx) + dx, i64::from(cy) + dy)
                {
                    out.push(z);
                }
            }
        }
        out
    }

    /// The neighbours of `p`'s zone whose rectangles lie within `margin` of `p`: the zones that
    /// should show an entity at `p` as a read-only ghost.
    pub fn ghost_zones(&self, p: Vec2, margin: f32) -> SmallVec<[ZoneId; 8]> {
        match self.zone_at(p) {
            Some(home) => self.ghost_zones_of(home, p, margin),
            None => SmallVec::new(),
        }
    }

    /// The neighbours of `zone` whose rectangles lie within `margin` of `p` (an entity `zone`
    /// simulates, wherever exactly it stands).
    pub fn ghost_zones_of(&self, zone: ZoneId, p: Vec2, margin: f32) -> SmallVec<[ZoneId; 8]> {
        let mut out = SmallVec::new();
        if !p.is_finite() {
            return out;
        }
        for n in self.neighbours(zone) {
            if let Some(r) = self.bounds(n) {
                let nearest = p.clamp(r.min, r.max);
                if nearest.distance(p) <= margin {
                    out.push(n);
                }
            }
        }
        out
    }
}

/// The replicated id a zone gives a ghost of entity `id` of the neighbour in `slot` (see
/// [`WorldGrid::neighbour_slot`]): above [`GHOST_ID_BASE`], distinct per neighbour, stable
/// while the entity lives. Ids wrap after 2^28 entities of one zone.
pub fn ghost_id(slot: u8, id: EntityId) -> EntityId {
    EntityId(GHOST_ID_BASE | (u32::from(slot & 7) << 28) | (id.0 & 0x0FFF_FFFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> WorldGrid {
        WorldGrid::new(3, 2, Vec2::new(100.0, 50.0), 10).unwrap()
    }

    #[test]
    fn every_point_has_one_owner_and_lies_in_its_bounds() {
        let g = grid();
        for y in 0..100 {
            for x in 0..300 {
                let p = Vec2::new(x as f32 + 0.5, y as f32 * 0.999);
                let z = g.zone_at(p).unwrap();
                assert!(g.bounds(z).unwrap().contains(p), "{p} in {z:?}");
                let owners = g
                    .zones()
                    .filter(|z| g.bounds(*z).unwrap().contains(p))
                    .count();
                assert_eq!(owners, 1);
            }
        }
        assert_eq!(
            g.zone_at(Vec2::new(100.0, 0.0)),
            Some(ZoneId(11)),
            "edges go right"
        );
        assert_eq!(g.zone_at(Vec2::new(-0.1, 0.0)), None);
        assert_eq!(g.zone_at(Vec2::new(300.0, 10.0)), None);
        assert_eq!(g.zone_at(Vec2::new(f32::NAN, 1.0)), None);
    }

    #[test]
    fn neighbours_are_symmetric_and_counted_by_position() {
        let g = grid();
        for z in g.zones() {
            for n in g.neighbours(z) {
                assert!(g.neighbours(n).contains(&z));
            }
        }
        assert_eq!(
            g.neighbours(ZoneId(10)).as_slice(),
            &[ZoneId(11), ZoneId(13), ZoneId(14)]
        );
        assert_eq!(g.neighbours(ZoneId(11)).len(), 5);
        assert!(g.neighbours(ZoneId(99)).is_empty());
    }

    #[test]
    fn ghosts_appear_only_near_borders() {
        let g = grid();
        assert!(g.ghost_zones(Vec2::new(50.0, 25.0), 10.0).is_empty());
        assert_eq!(
            g.ghost_zones(Vec2::new(95.0, 25.0), 10.0).as_slice(),
            &[ZoneId(11)]
        );
        let corner = g.ghost_zones(Vec2::new(97.0, 48.0), 5.0);
        assert_eq!(corner.as_slice(), &[ZoneId(11), ZoneId(13), ZoneId(14)]);
    }

    #[test]
    fn zone_configs_tile_the_world_and_open_towards_neighbours() {
        let g = WorldGrid::of_tiles(2, 2, 64, 1).unwrap();
        let one = g.zone_config(ZoneId(1), 10).unwrap();
        assert_eq!(one.map.origin(), Vec2::ZERO);
        let e = one.map.open_edges();
        assert!(!e.min_x && e.max_x && !e.min_y && e.max_y);
        let four = g.zone_config(ZoneId(4), 10).unwrap();
        assert_eq!(four.map.origin(), Vec2::new(64.0, 64.0));
        assert!(four.validate().is_ok());
        let e = four.map.open_edges();
        assert!(e.min_x && !e.max_x && e.min_y && !e.max_y);
        assert!(g.zone_config(ZoneId(5), 10).is_none());
        let odd = WorldGrid::new(2, 1, Vec2::new(10.5, 10.0), 1).unwrap();
        assert!(odd.zone_config(ZoneId(1), 0).is_none());
    }

    #[test]
    fn neighbour_slots_are_distinct_and_ghost_ids_never_collide_with_own_ids() {
        let g = grid();
        let slots: Vec<u8> = g
            .neighbours(ZoneId(14))
            .iter()
            .map(|n| g.neighbour_slot(ZoneId(14), *n).unwrap())
            .collect();
        let mut sorted = slots.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), slots.len());
        assert!(slots.iter().all(|s| *s < 8));
        assert_eq!(g.neighbour_slot(ZoneId(10), ZoneId(12)), None);
        assert_eq!(g.neighbour_slot(ZoneId(10), ZoneId(10)), None);
        let a = ghost_id(0, EntityId(5));
        let b = ghost_id(1, EntityId(5));
        assert!(a.0 >= GHOST_ID_BASE && b.0 >= GHOST_ID_BASE && a != b);
    }

    #[test]
    fn bad_grids_are_refused() {
        assert!(WorldGrid::new(0, 2, Vec2::ONE, 1).is_err());
        assert!(WorldGrid::new(2, 2, Vec2::new(0.0, 1.0), 1).is_err());
        assert!(WorldGrid::new(2, 2, Vec2::new(f32::INFINITY, 1.0), 1).is_err());
        assert!(WorldGrid::new(2, 2, Vec2::ONE, u32::MAX).is_err());
    }
}
