//! The zone's tile map: bounds, blocked cells, spawn points, and the geometry queries on it
//! (walkability, line of sight).
//!
//! One tile is one world unit; world position `(x, y)` lies in tile `(floor(x), floor(y))`.
//! A map covers `width x height` tiles from its origin (a whole-tile world position: zones of a
//! world grid sit side by side). Outside the map counts as blocked, except across an *open*
//! edge, where a neighbouring zone continues the world: there the ground is walkable, so a
//! player can step over the border and be handed off. The map is immutable once a zone is built.

use glam::Vec2;

/// Where NPCs of one kind are spawned and where they return to.
#[derive(Clone, Debug, PartialEq)]
pub struct NpcSpawnRegion {
    /// Centre of the region.
    pub center: Vec2,
    /// NPCs spawn and idle within this radius of the centre.
    pub radius: f32,
    /// How many NPCs live in the region.
    pub count: u32,
}

/// Which edges of a map continue into a neighbouring zone (walkable beyond), rather than
/// ending the world (blocked beyond).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpenEdges {
    /// The edge at the smallest x.
    pub min_x: bool,
    /// The edge at the largest x.
    pub max_x: bool,
    /// The edge at the smallest y.
    pub min_y: bool,
    /// The edge at the largest y.
    pub max_y: bool,
}

impl OpenEdges {
    /// Every edge closed: a map that is the whole world.
    pub const NONE: Self = Self {
        min_x: false,
        max_x: false,
        min_y: false,
        max_y: false,
    };

    /// Whether any edge is open.
    pub fn any(self) -> bool {
        self.min_x || self.max_x || self.min_y || self.max_y
    }
}

/// A grid of walkable and blocked tiles.
#[derive(Clone, Debug, PartialEq)]
pub struct TileMap {
    width: u32,
    height: u32,
    /// World tile of the map's first tile.
    origin: (i64, i64),
    open: OpenEdges,
    blocked: Vec<bool>,
    player_spawns: Vec<Vec2>,
}

/// Tiles kept clear of walls along each open edge of a generated arena.
pub const BORDER_STRIP: u32 = 3;

/// A map text that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    /// The text has no rows, or rows of different lengths.
    #[error(
        "map: rows must be non-empty and all the same length (row {row} has {got}, expected {expected})"
    )]
    Ragged {
        /// Zero-based row.
        row: usize,
        /// Its length.
        got: usize,
        /// The first row's length.
        expected: usize,
    },
    /// An unknown character.
    #[error(
        "map: unexpected character {ch:?} at row {row}, column {col} (expected '.', '#' or 'P')"
    )]
    BadChar {
        /// The character.
        ch: char,
        /// Zero-based row.
        row: usize,
        /// Zero-based column.
        col: usize,
    },
    /// The map is too small or too large.
    #[error("map: size {width}x{height} is out of range (1..=4096 on each side)")]
    Size {
        /// Tiles across.
        width: usize,
        /// Tiles down.
        height: usize,
    },
    /// No walkable player spawn point.
    #[error("map: no player spawn point ('P') on a walkable tile")]
    NoSpawn,
}

impl TileMap {
    /// Parses a map from text: one line per row (top row is `y = 0`), `.` walkable, `#` blocked,
    /// `P` a walkable player spawn point.
    pub fn parse(text: &str) -> Result<Self, MapError> {
        let rows: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        let width = rows.first().map_or(0, |r| r.chars().count());
        let height = rows.len();
        if !(1..=4096).contains(&width) || !(1..=4096).contains(&height) {
            return Err(MapError::Size { width, height });
        }
        let mut blocked = Vec::with_capacity(width * height);
        let mut player_spawns = Vec::new();
        for (row, line) in rows.iter().enumerate() {
            let len = line.chars().count();
            if len != width {
                return Err(MapError::Ragged {
                    row,
                    got: len,
                    expected: width,
                });
            }
            for (col, ch) in line.chars().enumerate() {
                match ch {
                    '.' => blocked.push(false),
                    '#' => blocked.push(true),
                    'P' => {
                        blocked.push(false);
                        player_spawns.push(Vec2::new(col as f32 + 0.5, row as f32 + 0.5));
                    }
                    _ => return Err(MapError::BadChar { ch, row, col }),
                }
            }
        }
        if player_spawns.is_empty() {
            return Err(MapError::NoSpawn);
        }
        Ok(Self {
            width: width as u32,
            height: height as u32,
            origin: (0, 0),
            open: OpenEdges::NONE,
            blocked,
            player_spawns,
        })
    }

    /// A deterministic arena of `width` x `height` tiles: walls around the edge, rows of pillars
    /// and short wall segments inside, and a spawn point near the middle of each quarter.
    pub fn arena(width: u32, height: u32) -> Self {
        Self::arena_in((0, 0), width, height, OpenEdges::NONE)
    }

    /// The arena of [`TileMap::arena`] placed with its first tile at world tile `origin`, as one
    /// zone of a world grid: no wall along the `open` edges, and a strip of [`BORDER_STRIP`]
    /// tiles along each open edge kept clear, so that the ground on both sides of a border is
    /// walkable and a player handed over it never lands inside a wall.
    pub fn arena_in(origin: (i64, i64), width: u32, height: u32, open: OpenEdges) -> Self {
        let (w, h) = (width.clamp(16, 4096), height.clamp(16, 4096));
        let mut blocked = vec![false; (w * h) as usize];
        let strip = BORDER_STRIP;
        for y in 0..h {
            for x in 0..w {
                let edge = (x == 0 && !open.min_x)
                    || (y == 0 && !open.min_y)
                    || (x == w - 1 && !open.max_x)
                    || (y == h - 1 && !open.max_y);
                let near_open = (open.min_x && x < strip)
                    || (open.max_x && x + strip >= w)
                    || (open.min_y && y < strip)
                    || (open.max_y && y + strip >= h);
                // Pillars on a 12-tile lattice, and a short wall every third lattice cell.
                let pillar = x % 12 == 6 && y % 12 == 6;
                let wall = (x / 12 + y / 12) % 3 == 0 && y % 12 == 3 && (x % 12) < 5;
                blocked[(y * w + x) as usize] = edge || (!near_open && (pillar || wall));
            }
        }
        let mut map = Self {
            width: w,
            height: h,
            origin,
            open,
            blocked,
            player_spawns: Vec::new(),
        };
        for (fx, fy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
            let p = map.nearest_walkable(map.origin() + Vec2::new(w as f32 * fx, h as f32 * fy));
            map.player_spawns.push(p);
        }
        map
    }

    /// World position of the map's first tile's corner.
    pub fn origin(&self) -> Vec2 {
        Vec2::new(self.origin.0 as f32, self.origin.1 as f32)
    }

    /// Which edges continue into a neighbouring zone.
    pub fn open_edges(&self) -> OpenEdges {
        self.open
    }

    /// Whether world position `p` lies inside the map's own rectangle (what the zone owns).
    pub fn contains(&self, p: Vec2) -> bool {
        let (min, max) = (self.origin(), self.origin() + self.size());
        p.x >= min.x && p.y >= min.y && p.x < max.x && p.y < max.y
    }

    /// The point of the map's rectangle, shrunk by `inset` on every side, nearest to `p`.
    pub fn clamp_inside(&self, p: Vec2, inset: f32) -> Vec2 {
        let inset = inset.clamp(0.0, 0.5 * self.size().min_element());
        let (min, max) = (self.origin(), self.origin() + self.size());
        let p = if p.is_finite() { p } else { min };
        p.clamp(min + Vec2::splat(inset), max - Vec2::splat(inset.max(1e-3)))
    }

    /// Whether a body of `radius` at `p` touches no blocked tile and stays inside the map's own
    /// rectangle, open edges or not (what keeps NPCs in their zone).
    pub fn body_fits_within(&self, p: Vec2, radius: f32) -> bool {
        let (min, max) = (self.origin(), self.origin() + self.size());
        p.x - radius >= min.x
            && p.y - radius >= min.y
            && p.x + radius < max.x
            && p.y + radius < max.y
            && self.body_fits(p, radius)
    }

    /// Tiles across.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Tiles down.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The size of the map in world units.
    pub fn size(&self) -> Vec2 {
        Vec2::new(self.width as f32, self.height as f32)
    }

    /// Player spawn points, in map order.
    pub fn player_spawns(&self) -> &[Vec2] {
        &self.player_spawns
    }

    /// Whether the tile at integer world coordinates is blocked. Outside the map it is, unless
    /// every edge the tile lies beyond is open.
    pub fn tile_blocked(&self, tx: i64, ty: i64) -> bool {
        let (lx, ly) = (tx - self.origin.0, ty - self.origin.1);
        let beyond = |l: i64, n: u32, min: bool, max: bool| {
            if l < 0 {
                Some(min)
            } else if l >= i64::from(n) {
                Some(max)
            } else {
                None
            }
        };
        let o = self.open;
        match (
            beyond(lx, self.width, o.min_x, o.max_x),
            beyond(ly, self.height, o.min_y, o.max_y),
        ) {
            (None, None) => self
                .blocked
                .get((ly as usize) * self.width as usize + lx as usize)
                .copied()
                .unwrap_or(true),
            (Some(open), None) | (None, Some(open)) => !open,
            (Some(a), Some(b)) => !(a && b),
        }
    }

    /// Whether a world position lies on a walkable tile (of the map, or beyond an open edge).
    pub fn walkable(&self, p: Vec2) -> bool {
        p.is_finite() && !self.tile_blocked(p.x.floor() as i64, p.y.floor() as i64)
    }

    /// Whether a body of `radius` centred at `p` touches no blocked tile.
    pub fn body_fits(&self, p: Vec2, radius: f32) -> bool {
        if !p.is_finite() {
            return false;
        }
        let (x0, x1) = ((p.x - radius).floor() as i64, (p.x + radius).floor() as i64);
        let (y0, y1) = ((p.y - radius).floor() as i64, (p.y + radius).floor() as i64);
        for ty in y0..=y1 {
            for tx in x0..=x1 {
                if self.tile_blocked(tx, ty) {
                    return false;
                }
            }
        }
        true
    }

    /// The centre of the walkable tile nearest to `p` (searching outwards ring by ring).
    pub fn nearest_walkable(&self, p: Vec2) -> Vec2 {
        let (ox, oy) = self.origin;
        let cx = (p.x.floor() as i64).clamp(ox, ox + self.width as i64 - 1);
        let cy = (p.y.floor() as i64).clamp(oy, oy + self.height as i64 - 1);
        let max_r = self.width.max(self.height) as i64;
        for r in 0..=max_r {
            for dy in -r..=r {
                for dx in -r..=r {
                    if dx.abs() != r && dy.abs() != r {
                        continue;
                    }
                    let (tx, ty) = (cx + dx, cy + dy);
                    let inside = (ox..ox + i64::from(self.width)).contains(&tx)
                        && (oy..oy + i64::from(self.height)).contains(&ty);
                    if inside && !self.tile_blocked(tx, ty) {
                        return Vec2::new(tx as f32 + 0.5, ty as f32 + 0.5);
                    }
                }
            }
        }
        self.player_spawns
            .first()
            .copied()
            .unwrap_or(self.origin() + Vec2::splat(0.5))
    }

    /// Whether the straight segment from `a` to `b` crosses no blocked tile
    /// (grid traversal of every tile the segment touches). Returns the tiles visited via `steps`.
    pub fn line_of_sight(&self, a: Vec2, b: Vec2, steps: &mut u32) -> bool {
        if !a.is_finite() || !b.is_finite() {
            return false;
        }
        let (mut tx, mut ty) = (a.x.floor() as i64, a.y.floor() as i64);
        let (ex, ey) = (b.x.floor() as i64, b.y.floor() as i64);
        let d = b - a;
        let step_x: i64 = if d.x > 0.0 { 1 } else { -1 };
        let step_y: i64 = if d.y > 0.0 { 1 } else { -1 };
        let inv_x = if d.x != 0.0 {
            (1.0 / d.x).abs()
        } else {
            f32::INFINITY
        };
        let inv_y = if d.y != 0.0 {
            (1.0 / d.y).abs()
        } else {
            f32::INFINITY
        };
        let frac_x = if d.x > 0.0 {
            tx as f32 + 1.0 - a.x
        } else {
            a.x - tx as f32
        };
        let frac_y = if d.y > 0.0 {
            ty as f32 + 1.0 - a.y
        } else {
            a.y - ty as f32
        };
        let mut t_max_x = if d.x != 0.0 {
            frac_x * inv_x
        } else {
            f32::INFINITY
        };
        let mut t_max_y = if d.y != 0.0 {
            frac_y * inv_y
        } else {
            f32::INFINITY
        };
        let budget = (ex - tx).unsigned_abs() + (ey - ty).unsigned_abs() + 1;
        for _ in 0..=budget {
            *steps += 1;
            if self.tile_blocked(tx, ty) {
                return false;
            }
            if tx == ex && ty == ey {
                return true;
            }
            if t_max_x < t_max_y {
                tx += step_x;
                t_max_x += inv_x;
            } else {
                ty += step_y;
                t_max_y += inv_y;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "\
#######
#P....#
#..#..#
#.....#
#######
";

    #[test]
    fn parses_walls_spawns_and_bounds() {
        let map = TileMap::parse(SMALL).unwrap();
        assert_eq!((map.width(), map.height()), (7, 5));
        assert_eq!(map.player_spawns(), &[Vec2::new(1.5, 1.5)]);
        assert!(map.walkable(Vec2::new(1.5, 1.5)));
        assert!(!map.walkable(Vec2::new(3.5, 2.5)));
        assert!(!map.walkable(Vec2::new(-0.1, 2.0)));
        assert!(!map.walkable(Vec2::new(f32::NAN, 2.0)));
    }

    #[test]
    fn rejects_bad_maps_with_a_reason() {
        assert!(matches!(
            TileMap::parse("#.\n#"),
            Err(MapError::Ragged { row: 1, .. })
        ));
        assert!(matches!(
            TileMap::parse("#x"),
            Err(MapError::BadChar { ch: 'x', .. })
        ));
        assert_eq!(TileMap::parse("..."), Err(MapError::NoSpawn));
        assert!(matches!(TileMap::parse(""), Err(MapError::Size { .. })));
    }

    #[test]
    fn line_of_sight_is_blocked_by_walls() {
        let map = TileMap::parse(SMALL).unwrap();
        let mut steps = 0;
        assert!(map.line_of_sight(Vec2::new(1.5, 1.5), Vec2::new(5.5, 1.5), &mut steps));
        assert!(!map.line_of_sight(Vec2::new(1.5, 2.5), Vec2::new(5.5, 2.5), &mut steps));
        assert!(map.line_of_sight(Vec2::new(1.5, 3.5), Vec2::new(5.5, 3.5), &mut steps));
        assert!(steps > 0);
    }

    #[test]
    fn a_placed_arena_is_open_only_across_its_open_edges() {
        let open = OpenEdges {
            max_x: true,
            min_y: true,
            ..OpenEdges::NONE
        };
        let map = TileMap::arena_in((64, 128), 64, 32, open);
        assert_eq!(map.origin(), Vec2::new(64.0, 128.0));
        assert!(map.contains(Vec2::new(64.0, 128.0)));
        assert!(!map.contains(Vec2::new(128.0, 140.0)));
        // Beyond the open east edge the ground continues; beyond the closed west edge it ends.
        assert!(map.walkable(Vec2::new(129.5, 140.5)));
        assert!(!map.walkable(Vec2::new(63.5, 140.5)));
        assert!(!map.walkable(Vec2::new(64.5, 140.5)), "west wall");
        // Corners: open only where both edges are.
        assert!(map.walkable(Vec2::new(128.5, 127.5)));
        assert!(!map.walkable(Vec2::new(63.5, 127.5)));
        // The strip along an open edge has no walls, so bodies fit on the border.
        for y in 129..159 {
            let p = Vec2::new(127.5, y as f32 + 0.5);
            assert!(map.body_fits(p, 0.4), "{p}");
            assert!(!map.body_fits_within(Vec2::new(127.9, p.y), 0.4));
        }
        for s in map.player_spawns() {
            assert!(map.contains(*s) && map.walkable(*s), "{s}");
        }
        let inside = map.clamp_inside(Vec2::new(200.0, 100.0), 0.5);
        assert!(
            map.contains(inside) && map.body_fits_within(inside, 0.4),
            "{inside}"
        );
        let near = map.nearest_walkable(Vec2::new(300.0, 0.0));
        assert!(map.contains(near), "nearest walkable stays inside: {near}");
    }

    #[test]
    fn arena_is_deterministic_and_has_walkable_spawns() {
        let a = TileMap::arena(200, 120);
        assert_eq!(a, TileMap::arena(200, 120));
        assert_eq!(a.player_spawns().len(), 4);
        for s in a.player_spawns() {
            assert!(a.walkable(*s));
        }
    }
}
