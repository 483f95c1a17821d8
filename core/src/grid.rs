//! A uniform spatial grid for radius queries, rebuilt in place from scratch each time it is used.
//!
//! Rebuild is a counting sort into reused buffers (no allocation once warm); queries visit only
//! the cells that overlap the query disc. The grid never decides ties: callers that pick "the
//! nearest" break ties by [`EntityId`], so results do not depend on insertion order.

use glam::Vec2;

use crate::EntityId;

/// Entities bucketed by cell.
#[derive(Debug, Default)]
pub struct SpatialGrid {
    origin: Vec2,
    cell: f32,
    cols: u32,
    rows: u32,
    /// `starts[c]..starts[c + 1]` indexes `items` for cell `c`.
    starts: Vec<u32>,
    items: Vec<(EntityId, Vec2)>,
    staged: Vec<(u32, EntityId, Vec2)>,
}

impl SpatialGrid {
    /// A grid covering `size` world units from the origin with square cells of `cell` units.
    pub fn new(size: Vec2, cell: f32) -> Self {
        Self::covering(Vec2::ZERO, size, cell)
    }

    /// A grid covering the rectangle from `origin` of `size` world units (positions outside it
    /// fall into the nearest edge cell: still found, just less cheaply).
    pub fn covering(origin: Vec2, size: Vec2, cell: f32) -> Self {
        let origin = if origin.is_finite() {
            origin
        } else {
            Vec2::ZERO
        };
        let cell = if cell.is_finite() && cell > 0.0 {
            cell
        } else {
            8.0
        };
        let cols = ((size.x / cell).ceil() as u32).max(1);
        let rows = ((size.y / cell).ceil() as u32).max(1);
        Self {
            origin,
            cell,
            cols,
            rows,
            starts: vec![0; (cols * rows + 1) as usize],
            items: Vec::new(),
            staged: Vec::new(),
        }
    }

    /// Cell size in world units.
    pub fn cell_size(&self) -> f32 {
        self.cell
    }

    fn cell_coords(&self, p: Vec2) -> (u32, u32) {
        let p = p - self.origin;
        let cx = (p.x / self.cell).floor().clamp(0.0, (self.cols - 1) as f32) as u32;
        let cy = (p.y / self.cell).floor().clamp(0.0, (self.rows - 1) as f32) as u32;
        (cx, cy)
    }

    /// Replaces the contents with `items`.
    pub fn rebuild(&mut self, items: impl IntoIterator<Item = (EntityId, Vec2)>) {
        self.staged.clear();
        for (id, p) in items {
            let (cx, cy) = self.cell_coords(p);
            self.staged.push((cy * self.cols + cx, id, p));
        }
        self.starts.iter_mut().for_each(|s| *s = 0);
        for &(c, _, _) in &self.staged {
            self.starts[c as usize + 1] += 1;
        }
        for i in 1..self.starts.len() {
            self.starts[i] += self.starts[i - 1];
        }
        self.items.clear();
        self.items
            .resize(self.staged.len(), (EntityId(0), Vec2::ZERO));
        // Place each item at its cell's cursor; `starts[c]` walks forward and is restored below.
        for &(c, id, p) in &self.staged {
            let slot = &mut self.starts[c as usize];
            self.items[*slot as usize] = (id, p);
            *slot += 1;
        }
        for i in (1..self.starts.len()).rev() {
            self.starts[i] = self.starts[i - 1];
        }
        self.starts[0] = 0;
    }

    /// Makes room for `n` entities, so rebuilding with up to `n` never allocates.
    pub fn reserve(&mut self, n: usize) {
        self.items.reserve(n.saturating_sub(self.items.len()));
        self.staged.reserve(n.saturating_sub(self.staged.len()));
    }

    /// Number of entities in the grid.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the grid is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Calls `f` for every entity within `radius` of `center`; returns how many candidates were
    /// examined (a work counter).
    pub fn for_each_within(
        &self,
        center: Vec2,
        radius: f32,
        mut f: impl FnMut(EntityId, Vec2),
    ) -> u32 {
        if !center.is_finite() || !radius.is_finite() || radius < 0.0 {
            return 0;
        }
        let (x0, y0) = self.cell_coords(center - Vec2::splat(radius));
        let (x1, y1) = self.cell_coords(center + Vec2::splat(radius));
        let r2 = radius * radius;
        let mut examined = 0;
        for cy in y0..=y1 {
            let row = cy * self.cols;
            let (a, b) = (
                self.starts[(row + x0) as usize],
                self.starts[(row + x1 + 1) as usize],
            );
            for &(id, p) in &self.items[a as usize..b as usize] {
                examined += 1;
                if p.distance_squared(center) <= r2 {
                    f(id, p);
                }
            }
        }
        examined
    }

    /// Calls `f` with runs of entities that cover every entity within `radius` of `center`:
    /// each row of cells the disc touches, cut to the disc's width in that row. Runs may hold
    /// entities a little outside the disc (callers check the distance); nothing within is
    /// missed. The cheapest way to visit a disc: no callback per entity.
    pub fn for_each_run_near(
        &self,
        center: Vec2,
        radius: f32,
        mut f: impl FnMut(&[(EntityId, Vec2)]),
    ) {
        if !center.is_finite() || !radius.is_finite() || radius < 0.0 {
            return;
        }
        let (_, y0) = self.cell_coords(center - Vec2::splat(radius));
        let (_, y1) = self.cell_coords(center + Vec2::splat(radius));
        let r2 = radius * radius;
        for cy in y0..=y1 {
            let band_low = self.origin.y + cy as f32 * self.cell;
            let nearest_y = center.y.clamp(band_low, band_low + self.cell);
            let dy = nearest_y - center.y;
            let half = (r2 - dy * dy).max(0.0).sqrt();
            let (x0, _) = self.cell_coords(Vec2::new(center.x - half, center.y));
            let (x1, _) = self.cell_coords(Vec2::new(center.x + half, center.y));
            let row = cy * self.cols;
            let (a, b) = (
                self.starts[(row + x0) as usize],
                self.starts[(row + x1 + 1) as usize],
            );
            f(&self.items[a as usize..b as usize]);
        }
    }

    /// The nearest entity within `radius` (ties broken by the smaller id), and the work counter.
    pub fn nearest_within(&self, center: Vec2, radius: f32) -> (Option<(EntityId, Vec2)>, u32) {
        let mut best: Option<(f32, EntityId, Vec2)> = None;
        let examined = self.for_each_within(center, radius, |id, p| {
            let d = p.distance_squared(center);
            if best.is_none_or(|(bd, bid, _)| d < bd || (d == bd && id < bid)) {
                best = Some((d, id, p));
            }
        });
        (best.map(|(_, id, p)| (id, p)), examined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(items: &[(EntityId, Vec2)], c: Vec2, r: f32) -> Vec<EntityId> {
        let mut v: Vec<_> = items
            .iter()
            .filter(|(_, p)| p.distance_squared(c) <= r * r)
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn radius_query_matches_brute_force() {
        let mut grid = SpatialGrid::new(Vec2::new(100.0, 60.0), 7.0);
        let mut d = crate::rng::stream(1, 0, 0, crate::rng::Purpose::Script);
        let items: Vec<_> = (0..500)
            .map(|i| {
                (
                    EntityId(i),
                    Vec2::new(d.range(-5.0, 105.0), d.range(-5.0, 65.0)),
                )
            })
            .collect();
        grid.rebuild(items.iter().copied());
        assert_eq!(grid.len(), 500);
        for _ in 0..200 {
            let c = Vec2::new(d.range(0.0, 100.0), d.range(0.0, 60.0));
            let r = d.range(0.0, 20.0);
            let mut got = Vec::new();
            grid.for_each_within(c, r, |id, _| got.push(id));
            got.sort();
            assert_eq!(got, brute(&items, c, r));
        }
    }

    #[test]
    fn a_grid_away_from_the_origin_answers_like_brute_force() {
        let origin = Vec2::new(512.0, 256.0);
        let mut grid = SpatialGrid::covering(origin, Vec2::new(64.0, 64.0), 8.0);
        let mut d = crate::rng::stream(2, 0, 0, crate::rng::Purpose::Script);
        let items: Vec<_> = (0..300)
            .map(|i| {
                let p = origin + Vec2::new(d.range(-3.0, 67.0), d.range(-3.0, 67.0));
                (EntityId(i), p)
            })
            .collect();
        grid.rebuild(items.iter().copied());
        for _ in 0..100 {
            let c = origin + Vec2::new(d.range(0.0, 64.0), d.range(0.0, 64.0));
            let r = d.range(0.0, 16.0);
            let mut got = Vec::new();
            let examined = grid.for_each_within(c, r, |id, _| got.push(id));
            got.sort();
            assert_eq!(got, brute(&items, c, r));
            assert!(
                examined < 300 || r > 12.0,
                "cells are used, not one edge cell"
            );
        }
    }

    #[test]
    fn runs_near_a_disc_cover_it() {
        let origin = Vec2::new(-20.0, 40.0);
        let mut grid = SpatialGrid::covering(origin, Vec2::new(80.0, 80.0), 16.0);
        let mut d = crate::rng::stream(3, 0, 0, crate::rng::Purpose::Script);
        let items: Vec<_> = (0..800)
            .map(|i| {
                let p = origin + Vec2::new(d.range(-6.0, 86.0), d.range(-6.0, 86.0));
                (EntityId(i), p)
            })
            .collect();
        grid.rebuild(items.iter().copied());
        let mut saved = 0;
        for _ in 0..200 {
            let c = origin + Vec2::new(d.range(-4.0, 84.0), d.range(-4.0, 84.0));
            let r = d.range(0.0, 40.0);
            let (mut got, mut seen) = (Vec::new(), 0);
            grid.for_each_run_near(c, r, |run| {
                seen += run.len();
                got.extend(
                    run.iter()
                        .filter(|(_, p)| p.distance_squared(c) <= r * r)
                        .map(|(id, _)| *id),
                );
            });
            got.sort();
            assert_eq!(got, brute(&items, c, r));
            saved += grid.for_each_within(c, r, |_, _| {}) as usize - seen;
        }
        assert!(saved > 0, "rows cut to the disc visit fewer entities");
    }

    #[test]
    fn nearest_breaks_ties_by_id() {
        let mut grid = SpatialGrid::new(Vec2::splat(10.0), 2.0);
        grid.rebuild([
            (EntityId(9), Vec2::new(6.0, 5.0)),
            (EntityId(4), Vec2::new(4.0, 5.0)),
        ]);
        let (hit, _) = grid.nearest_within(Vec2::new(5.0, 5.0), 3.0);
        assert_eq!(hit.map(|h| h.0), Some(EntityId(4)));
        assert_eq!(grid.nearest_within(Vec2::new(5.0, 5.0), 0.5).0, None);
    }
}
