//! The world as a grid of zones (groundwork for multi-zone hosting): `columns x rows` equal
//! rectangles of world space, zone ids assigned row by row from `first_zone`. It answers which
//! zone owns a world position, each zone's bounds and neighbours, and which neighbours are
//! within a margin of a position (the zones that must see it as a ghost). Pure arithmetic, no
//! floating-point surprises at borders: a position on a shared edge belongs to the zone to its
//! right/top, so every point of the world has exactly one owner.

use glam::Vec2;
use smallvec::SmallVec;

use crate::ZoneId;

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
        let mut out = SmallVec::new();
        let Some(home) = self.zone_at(p) else {
            return out;
        };
        for n in self.neighbours(home) {
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
    fn bad_grids_are_refused() {
        assert!(WorldGrid::new(0, 2, Vec2::ONE, 1).is_err());
        assert!(WorldGrid::new(2, 2, Vec2::new(0.0, 1.0), 1).is_err());
        assert!(WorldGrid::new(2, 2, Vec2::new(f32::INFINITY, 1.0), 1).is_err());
        assert!(WorldGrid::new(2, 2, Vec2::ONE, u32::MAX).is_err());
    }
}
