//! [`Predictor`]: the own avatar predicted with the server's own movement rule
//! ([`crate::motion`]), and reconciled with every snapshot.
//!
//! The client applies each input the moment it makes it, for the tick it stamps it with, and
//! keeps the inputs and the predicted states of the ticks the server has not confirmed yet. A
//! snapshot's avatar section says where the server had the avatar at that tick, exactly, and
//! which input was in effect; reconciling starts from there and replays the newer inputs
//! (unless the prediction for that tick matched bit for bit: then the replay would recompute
//! the same states, and is skipped). The
//! server puts an input into effect at the tick it is stamped for when it arrives in time
//! ([`crate::Zone::handle_input`]), so as long as nothing else moved the avatar (a wall the
//! client's map lacks, a death, a respawn, a handoff) the prediction is exact: error zero, bit
//! for bit, whatever the link did to the packets in between.

use std::collections::VecDeque;

use glam::Vec2;

use crate::motion::{self, Body};
use crate::protocol::{AvatarState, WireInput};
use crate::{PlayerInput, Rules, TileMap};

/// Predicted ticks remembered for reconciliation (at 60 Hz, about two seconds ahead).
pub const PREDICTION_HISTORY: usize = 128;

/// A correction farther than this (units) is always snapped: a respawn or a teleport, not an
/// error to smooth over.
pub const SNAP_DISTANCE: f32 = 2.0;

/// How a correction reaches the screen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smoothing {
    /// Jump to the corrected position at once.
    Snap,
    /// Draw the avatar offset by the correction, the offset halving every `half_life_ticks`
    /// (corrections farther than [`SNAP_DISTANCE`] are snapped anyway).
    Smooth {
        /// Ticks for the offset to halve.
        half_life_ticks: f32,
    },
}

/// What one reconciliation found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reconciliation {
    /// The snapshot's tick.
    pub tick: u64,
    /// Distance between the predicted and the server's position at that tick (units); `None`
    /// when the prediction had nothing for that tick (just started, or far behind).
    pub error: Option<f32>,
    /// Whether the predicted body at that tick was the server's, bit for bit.
    pub exact: bool,
    /// Whether the server's input in effect or the avatar's life differed from what was
    /// predicted (the reason for a correction, when there is one).
    pub explained: bool,
    /// Inputs replayed on top of the server's state (the ticks predicted past it; none when
    /// the prediction matched bit for bit, since replaying would recompute the same states).
    pub replayed: u32,
}

/// Running totals of the reconciliations, for metrics and the report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PredictionStats {
    /// Reconciliations that had a predicted tick to compare.
    pub compared: u64,
    /// Of those, the ones whose prediction was not exact.
    pub corrected: u64,
    /// Of the corrections, those the client can explain: the server had another input in
    /// effect than the client predicted (an input arrived late or never), or the avatar died
    /// or came back to life. The rest (a wall the client's map lacks, a knock) are
    /// `corrected - explained`.
    pub explained: u64,
    /// Sum of the errors (units).
    pub error_sum: f64,
    /// Largest error (units).
    pub error_max: f32,
    /// Inputs replayed in all.
    pub replayed: u64,
}

/// Predicts one client's own avatar (see the module docs).
#[derive(Clone, Debug)]
pub struct Predictor {
    rules: Rules,
    map: TileMap,
    smoothing: Smoothing,
    /// Predicted body at `tick` (valid once started).
    body: Body,
    alive: bool,
    tick: u64,
    started: bool,
    /// Inputs by increasing tick, as the server will see them (quantized).
    inputs: VecDeque<PlayerInput>,
    /// Predicted body at each tick, oldest first.
    history: VecDeque<(u64, Body)>,
    /// Drawn position minus predicted position (smoothing).
    offset: Vec2,
    /// The server's count of this player's late inputs at the last reconciliation.
    late: u32,
    stats: PredictionStats,
}

impl Predictor {
    /// A predictor running `rules` on `map`: the zone's own (a client without the map predicts
    /// on an open one and is corrected at walls).
    pub fn new(rules: Rules, map: TileMap, smoothing: Smoothing) -> Self {
        Self {
            rules,
            map,
            smoothing,
            body: Body::default(),
            alive: true,
            tick: 0,
            started: false,
            inputs: VecDeque::with_capacity(PREDICTION_HISTORY),
            history: VecDeque::with_capacity(PREDICTION_HISTORY),
            offset: Vec2::ZERO,
            late: 0,
            stats: PredictionStats::default(),
        }
    }

    /// Whether a snapshot has given the avatar's state yet.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The newest predicted tick.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The predicted body at [`Predictor::tick`].
    pub fn body(&self) -> Body {
        self.body
    }

    /// Where to draw the avatar: the prediction plus what is left of a smoothed correction.
    pub fn render_position(&self) -> Vec2 {
        self.body.pos + self.offset
    }

    /// The totals so far.
    pub fn stats(&self) -> PredictionStats {
        self.stats
    }

    /// Forgets everything (a redirect to another zone): the next snapshot starts afresh.
    pub fn reset(&mut self) {
        self.started = false;
        self.inputs.clear();
        self.history.clear();
        self.offset = Vec2::ZERO;
        self.tick = 0;
    }

    /// Predicts the tick `input.tick` (the next one after [`Predictor::tick`]; a gap is
    /// filled with the input in effect) with `input`, the input as numbered and sent by
    /// [`crate::client::ClientSession::push_input`]. Does nothing before the first snapshot or
    /// for a tick already predicted.
    pub fn predict(&mut self, input: &PlayerInput) -> Body {
        if !self.started || input.tick <= self.tick {
            return self.body;
        }
        let input = WireInput::from_input(input).to_input();
        while self.tick + 1 < input.tick {
            let t = self.tick + 1;
            self.advance(t, None);
        }
        if self.inputs.len() == PREDICTION_HISTORY {
            self.inputs.pop_front();
        }
        self.inputs.push_back(input);
        self.advance(input.tick, Some(input));
        self.decay_offset();
        self.body
    }

    fn advance(&mut self, tick: u64, input: Option<PlayerInput>) {
        let input = input.or_else(|| self.in_effect(tick));
        self.body = self.step(self.body, input.as_ref());
        self.tick = tick;
        if self.history.len() == PREDICTION_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((tick, self.body));
    }

    /// The newest input stamped at or before `tick`.
    fn in_effect(&self, tick: u64) -> Option<PlayerInput> {
        self.inputs.iter().rev().find(|i| i.tick <= tick).copied()
    }

    fn step(&self, body: Body, input: Option<&PlayerInput>) -> Body {
        if !self.alive {
            return Body {
                pos: body.pos,
                vel: Vec2::ZERO,
            };
        }
        let (dir, speed) = input.map_or((Vec2::ZERO, 0.0), |i| motion::intent_of(&self.rules, i));
        motion::step(&self.rules, &self.map, false, dir, speed, body)
    }

    /// Reconciles with the server's avatar at `tick` (a newly applied snapshot's
    /// [`crate::client::ClientSession::avatar`]): compares, then replays the inputs stamped
    /// after `tick` on top of the server's state.
    pub fn reconcile(&mut self, tick: u64, server: &AvatarState) -> Reconciliation {
        let authoritative = Body {
            pos: server.pos,
            vel: server.vel,
        };
        let predicted = self
            .history
            .iter()
            .find(|(t, _)| *t == tick)
            .map(|(_, b)| *b);
        let drawn_before = self.render_position();
        let predicted_seq = self.in_effect(tick).map_or(0, |i| i.seq);
        let alive_before = self.alive;
        let explained =
            predicted_seq != server.seq || server.late != self.late || !server.alive || !self.alive;
        self.late = server.late;
        self.alive = server.alive;
        if !self.started || tick >= self.tick {
            // Nothing predicted past the server: start (again) from its state.
            self.started = true;
            self.body = authoritative;
            self.tick = tick;
            self.history.clear();
            self.history.push_back((tick, authoritative));
            self.inputs.retain(|i| i.seq >= server.seq);
            self.offset = Vec2::ZERO;
            return self.record(tick, predicted, &authoritative, 0, explained);
        }
        // Keep the input the server had in effect and everything newer.
        let keep_from = self
            .inputs
            .iter()
            .position(|i| i.seq == server.seq)
            .or_else(|| self.inputs.iter().rposition(|i| i.tick <= tick));
        if let Some(k) = keep_from {
            self.inputs.drain(..k);
        }
        // A prediction that matched bit for bit, with the input the server had in effect and
        // the same life: replaying would compute the very states already predicted. Keep them.
        let matched = predicted.is_some_and(|p| same_body(&p, &authoritative))
            && predicted_seq == server.seq
            && alive_before == server.alive;
        if matched {
            self.history.retain(|(t, _)| *t >= tick);
            return self.record(tick, predicted, &authoritative, 0, explained);
        }
        let effect_at_tick = self
            .inputs
            .iter()
            .find(|i| i.seq == server.seq)
            .copied()
            .or_else(|| self.in_effect(tick));
        let newest = self.tick;
        self.history.clear();
        self.history.push_back((tick, authoritative));
        self.body = authoritative;
        let mut replayed = 0u32;
        for t in tick + 1..=newest {
            let input = self
                .inputs
                .iter()
                .rev()
                .find(|i| i.tick <= t && i.tick > tick)
                .copied()
                .or(effect_at_tick);
            self.body = self.step(self.body, input.as_ref());
            if self.history.len() == PREDICTION_HISTORY {
                self.history.pop_front();
            }
            self.history.push_back((t, self.body));
            replayed += 1;
        }
        self.tick = newest;
        let moved = drawn_before - self.body.pos;
        self.offset = match self.smoothing {
            Smoothing::Smooth { .. } if moved.length() <= SNAP_DISTANCE => moved,
            _ => Vec2::ZERO,
        };
        self.record(tick, predicted, &authoritative, replayed, explained)
    }

    fn record(
        &mut self,
        tick: u64,
        predicted: Option<Body>,
        server: &Body,
        replayed: u32,
        explained: bool,
    ) -> Reconciliation {
        let error = predicted.map(|p| p.pos.distance(server.pos));
        let exact = predicted.is_some_and(|p| same_body(&p, server));
        if let Some(e) = error {
            self.stats.compared += 1;
            self.stats.corrected += u64::from(!exact);
            self.stats.explained += u64::from(!exact && explained);
            self.stats.error_sum += f64::from(e);
            self.stats.error_max = self.stats.error_max.max(e);
        }
        self.stats.replayed += u64::from(replayed);
        Reconciliation {
            tick,
            error,
            exact,
            explained,
            replayed,
        }
    }

    fn decay_offset(&mut self) {
        if let Smoothing::Smooth { half_life_ticks } = self.smoothing {
            self.offset *= 0.5f32.powf(1.0 / half_life_ticks.max(0.1));
            if self.offset.length_squared() < 1e-8 {
                self.offset = Vec2::ZERO;
            }
        } else {
            self.offset = Vec2::ZERO;
        }
    }
}

/// Whether two bodies are the same, bit for bit.
fn same_body(a: &Body, b: &Body) -> bool {
    let bits = |v: Vec2| v.to_array().map(f32::to_bits);
    bits(a.pos) == bits(b.pos) && bits(a.vel) == bits(b.vel)
}
