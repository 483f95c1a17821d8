//! Headless bot clients: each connects over UDP with a connect token, plays through
//! `core::client::ClientSession` (walks, turns, fights back), follows zone redirects like a game
//! client (disconnect, connect to the new zone with the token it was given) and reports what it
//! saw. In a world they roam: they walk to random places, over borders. `zone-server bots` runs
//! them against any server; `zone-server run --bots N` runs a few in-process for the demo;
//! tests and load runs use them too.

use std::net::SocketAddr;
use std::time::Duration;

use crate::socket::DatagramSocket;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use zone_capture::{Flag, PlantFlag};
use zone_core::client::interpolation::{Interpolator, Rendered};
use zone_core::client::prediction::{Predictor, Smoothing};
use zone_core::client::timesync::TimeSync;
use zone_core::client::{ClientEvent as GameEvent, ClientSession};
use zone_core::game::WireLayout;
use zone_core::netcode::{Client, ClientEvent, ClientState, Key};
use zone_core::protocol::ServerMessage;
use zone_core::protocol::{NetEntity, NetKind};
use zone_core::rng::{self, Purpose};
use zone_core::world::WorldGrid;
use zone_core::{AbilityId, AbilityUse, EntityId, PlayerId, PlayerInput, Vec2, ZoneConfig, ZoneId};

/// How far a bot goes out of its way to capture a point it sees, units.
const CAPTURE_REACH: f32 = 20.0;
/// One bot in this many goes for capture points (where the game has them); the others only
/// roam and fight, so a crowd still crosses borders.
const CAPTURERS: u64 = 4;
/// Steps (ticks) a capturing bot rests between two pursuits, roaming.
const CAPTURE_REST: u64 = 1_800;
/// Steps a bot spends on one pursuit at most (walking there, holding the point).
const CAPTURE_PURSUIT: u64 = 600;

use crate::tokens::{TokenRequest, mint};

/// How to run a crowd of bots.
#[derive(Clone, Debug)]
pub struct BotConfig {
    /// Server to connect to.
    pub server: SocketAddr,
    /// Servers to spread the bots over (bot `i` starts on `servers[i % len]`); empty: `server`.
    pub servers: Vec<SocketAddr>,
    /// netcode protocol id.
    pub protocol_id: u64,
    /// First player id; bot `i` plays `first_player + i`.
    pub first_player: u64,
    /// Number of bots.
    pub count: u32,
    /// Inputs per second (the server's tick rate).
    pub tick_hz: u32,
    /// How long to play; `None` until stopped.
    pub duration: Option<Duration>,
    /// Seed of the bots' choices.
    pub seed: u64,
    /// A world to roam: bots walk to random places of it, over its borders.
    pub roam: Option<WorldGrid>,
    /// The world's layout, for predicting the avatar on its zones' generated maps (default:
    /// `roam`'s, else the embedded default of one 128-tile zone; on another map a bot is
    /// corrected at walls, which its figures count).
    pub layout: Option<WorldGrid>,
    /// Without a world to roam: stand where they spawned (fighting back at whoever comes
    /// close) instead of walking about at random. A player who stays in one zone for long.
    pub stand: bool,
    /// The server's game (its plugins' wire layout): the bots declare it, read the plugins'
    /// state and, where the game has capture points, walk to a nearby point and capture it.
    pub game: WireLayout,
}

/// What one bot saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotReport {
    /// Player id.
    pub player: u64,
    /// Completed the handshake.
    pub connected: bool,
    /// Got the reliable welcome.
    pub welcomed: bool,
    /// Snapshots applied.
    pub snapshots: u64,
    /// Payload bytes received (game packets).
    pub payload_bytes_in: u64,
    /// UDP bytes received (with netcode overhead).
    pub wire_bytes_in: u64,
    /// UDP bytes sent.
    pub wire_bytes_out: u64,
    /// Most entities in view at once.
    pub max_visible: usize,
    /// Plugin actions sent (capture flags planted).
    pub actions_sent: u64,
    /// The server runs another game than `BotConfig::game`.
    pub game_mismatch: bool,
    /// Hits involving this bot (combat log).
    pub hits: u64,
    /// Server packets the session refused.
    pub refused: u64,
    /// Terminal netcode state reached while playing (disconnect, timeout), if any.
    pub lost: Option<String>,
    /// Disconnected by the server's goodbye (shutdown) rather than by a fault.
    pub server_closed: bool,
    /// Seconds from start to connected.
    pub connect_ms: u64,
    /// The bot's own avatar as its newest snapshot showed it: (snapshot tick, state). Lets a
    /// test compare the client's view with the server's state at that tick.
    pub last_self: Option<(u64, zone_core::protocol::NetEntity)>,
    /// The zone of the newest snapshot (after redirects, the last zone).
    pub zone: Option<ZoneId>,
    /// The zones played in, in order (the first 64).
    pub path: Vec<ZoneId>,
    /// Zone redirects followed.
    pub redirects: u64,
    /// For each redirect followed: milliseconds from the first snapshot that showed the avatar
    /// over its zone's border to the first snapshot from the new zone.
    pub handoff_ms: Vec<u64>,
    /// Client-side prediction, interpolation and their CPU (every zone played in).
    pub client: ClientFigures,
}

/// What a bot's prediction and interpolation did (integers, so reports compare exactly).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFigures {
    /// Reconciliations that had a predicted tick to compare.
    pub compared: u64,
    /// Of those, predictions that were not exact.
    pub corrected: u64,
    /// Of the corrections, those explained by a late or lost input or a death or respawn.
    pub explained: u64,
    /// The errors of those that were not (micro-units), the first 256.
    pub errors_um: Vec<u32>,
    /// Inputs replayed.
    pub replayed: u64,
    /// Frames drawn by the interpolator.
    pub frames: u64,
    /// Of those, frames past the newest view.
    pub extrapolated: u64,
    /// Sum of the interpolation delays over the frames, thousandths of a tick.
    pub delay_milliticks: u64,
    /// Wall nanoseconds spent on time sync, prediction and reconciliation (preemption on a
    /// busy machine included).
    pub cpu_ns: u64,
    /// Wall nanoseconds spent drawing the frames (interpolation).
    pub draw_ns: u64,
}

impl ClientFigures {
    /// Adds what one zone's predictor and interpolator did.
    fn absorb(&mut self, p: &Predictor, i: &Interpolator) {
        let (s, st) = (p.stats(), i.stats());
        self.compared += s.compared;
        self.corrected += s.corrected;
        self.explained += s.explained;
        self.replayed += s.replayed;
        self.frames += st.frames;
        self.extrapolated += st.extrapolated;
        self.delay_milliticks += (st.delay_sum * 1_000.0) as u64;
    }
}

/// Aggregate over a crowd.
#[derive(Clone, Debug, Default)]
pub struct CrowdReport {
    /// Every bot's report.
    pub bots: Vec<BotReport>,
    /// Seconds played.
    pub seconds: f64,
}

impl CrowdReport {
    /// Bots that connected.
    pub fn connected(&self) -> usize {
        self.bots.iter().filter(|b| b.connected).count()
    }

    /// Bots that lost their connection to a fault (not a server shutdown).
    pub fn faulted(&self) -> usize {
        self.bots
            .iter()
            .filter(|b| b.lost.is_some() && !b.server_closed)
            .count()
    }

    /// Mean UDP bytes received per connected bot per second.
    pub fn wire_bytes_in_per_bot_s(&self) -> f64 {
        let n = self.connected().max(1) as f64;
        self.bots
            .iter()
            .map(|b| b.wire_bytes_in as f64)
            .sum::<f64>()
            / n
            / self.seconds.max(1e-9)
    }

    /// Redirects followed by all bots.
    pub fn redirects(&self) -> u64 {
        self.bots.iter().map(|b| b.redirects).sum()
    }

    /// Every bot's client figures, summed (errors: all of them).
    pub fn client_figures(&self) -> ClientFigures {
        let mut all = ClientFigures::default();
        for b in &self.bots {
            let c = &b.client;
            all.compared += c.compared;
            all.corrected += c.corrected;
            all.explained += c.explained;
            all.errors_um.extend_from_slice(&c.errors_um);
            all.replayed += c.replayed;
            all.frames += c.frames;
            all.extrapolated += c.extrapolated;
            all.delay_milliticks += c.delay_milliticks;
            all.cpu_ns += c.cpu_ns;
            all.draw_ns += c.draw_ns;
        }
        all
    }

    /// Mean snapshots per connected bot per second.
    pub fn snapshots_per_bot_s(&self) -> f64 {
        let n = self.connected().max(1) as f64;
        self.bots.iter().map(|b| b.snapshots as f64).sum::<f64>() / n / self.seconds.max(1e-9)
    }
}

/// Player ids from here up are reserved for bots (`zone-server bots`, the demo bots of
/// `run --bots`): a login backend must never give them to accounts, so a load test against a
/// production world never logs in as a real player.
pub const FIRST_BOT_PLAYER: u64 = 1 << 62;

/// Why a bot could not play.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// Its connect token could not be minted.
    #[error("minting a bot's connect token")]
    Mint(#[from] crate::tokens::MintError),
    /// Its socket could not be bound.
    #[error("binding a bot's socket")]
    Socket(#[from] std::io::Error),
    /// Its task panicked or was cancelled.
    #[error("bot task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// One wake-up per tick of the server's rate; a late one is skipped, not made up.
fn step_interval(config: &BotConfig) -> tokio::time::Interval {
    let period = Duration::from_secs_f64(1.0 / f64::from(config.tick_hz.max(1)));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticker
}

/// A bot draws its interpolated world every this many steps (2 Hz at 60 Hz): a game client
/// draws every frame on its own machine; a thousand bots doing so would take a core of the
/// machine they load-test from. The render clock (the view tick abilities name) advances every
/// step. The report gives the cost per frame.
const DRAW_EVERY: u64 = 30;

/// Bots one shard task plays, at most: each shard wakes once per tick for all of its bots.
const BOTS_PER_SHARD: usize = 128;

/// Runs a crowd of bots until `duration` elapses or `stop` turns true. The bots are played
/// in shards of up to 128: one task and one timer per shard, a plain non-blocking socket per
/// bot (its own address, as a game client has), so a thousand bots cost a few wake-ups per
/// tick rather than a thousand.
pub async fn run_crowd(
    config: BotConfig,
    private_key: &Key,
    stop: watch::Receiver<bool>,
) -> Result<CrowdReport, BotError> {
    let started = Instant::now();
    raise_open_file_limit(u64::from(config.count) + 64);
    let mut members = Vec::with_capacity(config.count as usize);
    for i in 0..u64::from(config.count) {
        let player = config.first_player + i;
        let server = config
            .servers
            .get(i as usize % config.servers.len().max(1))
            .copied()
            .unwrap_or(config.server);
        let token = mint(
            &TokenRequest {
                protocol_id: config.protocol_id,
                client_id: player,
                servers: vec![server],
                expiry_s: 3_600,
                timeout_s: 10,
            },
            private_key,
        )?;
        members.push((player, token, server));
    }
    let mut shards = Vec::new();
    while !members.is_empty() {
        let rest = members.split_off(members.len().min(BOTS_PER_SHARD));
        let shard = std::mem::replace(&mut members, rest);
        let (config, stop) = (config.clone(), stop.clone());
        shards.push(tokio::spawn(async move {
            play_shard(config, shard, stop).await
        }));
    }
    let mut bots = Vec::with_capacity(config.count as usize);
    for shard in shards {
        bots.extend(shard.await??);
    }
    Ok(CrowdReport {
        bots,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Raises the soft limit of open files towards `wanted` (a socket per bot), within the hard
/// limit; a failure only means fewer bots can bind.
fn raise_open_file_limit(wanted: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < wanted) {
        let mut raised = limit;
        raised.current = Some(limit.maximum.map_or(wanted, |m| m.min(wanted)));
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, wanted, "could not raise the open-file limit for the bots");
        }
    }
}

/// One shard of bots: one timer for all, each bot with its own non-blocking socket.
async fn play_shard(
    config: BotConfig,
    members: Vec<(u64, [u8; 2048], SocketAddr)>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<BotReport>, BotError> {
    let epoch = Instant::now();
    let mut bots = Vec::with_capacity(members.len());
    for (player, token, server) in members {
        let bind = if server.is_ipv4() {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
        };
        let socket = std::net::UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        bots.push((Bot::new(player, &token, epoch, &config.game), socket, false));
    }
    let mut ticker = step_interval(&config);
    let deadline = config.duration.map(|d| epoch + d);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut playing = 0;
        for (bot, socket, done) in bots.iter_mut().filter(|(_, _, done)| !*done) {
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                if let Some(datagram) = buf.get_mut(..len) {
                    bot.receive(from, datagram);
                }
            }
            *done = bot.step(&config) == Next::Done;
            send_outbox_now(socket, bot);
            playing += usize::from(!*done);
        }
        if playing == 0 {
            break;
        }
    }
    Ok(bots
        .into_iter()
        .map(|(mut bot, socket, _)| {
            bot.leave();
            send_outbox_now(&socket, &mut bot);
            bot.report
        })
        .collect())
}

/// Sends a bot's outbox on its non-blocking socket (what the kernel refuses at once is lost,
/// as on a congested link).
fn send_outbox_now(socket: &std::net::UdpSocket, bot: &mut Bot) {
    let mut bytes = 0;
    for (to, payload) in bot.outbox() {
        if let Ok(n) = socket.send_to(payload, to) {
            bytes += n as u64;
        }
    }
    bot.sent(bytes);
}

/// Where a roaming bot is going and how it is doing.
#[derive(Debug, Default)]
struct Roam {
    waypoint: Option<Vec2>,
    best: f32,
    since_progress: u32,
}

impl Roam {
    /// The direction to walk from `at` in `world`, picking a new waypoint when the last is
    /// reached or the bot has been stuck (a wall) for three seconds.
    fn direction(&mut self, world: &WorldGrid, at: Vec2, seed: u64, player: u64, n: u64) -> Vec2 {
        let size = world.zone_size() * Vec2::new(world.columns() as f32, world.rows() as f32);
        let reached = self.waypoint.is_none_or(|w| w.distance(at) < 2.0);
        if reached || self.since_progress > 180 {
            let mut d = rng::stream(seed, player, n, Purpose::Script);
            self.waypoint = Some(Vec2::new(
                d.range(3.0, size.x - 3.0),
                d.range(3.0, size.y - 3.0),
            ));
            self.best = f32::INFINITY;
            self.since_progress = 0;
        }
        let to = self.waypoint.unwrap_or(at) - at;
        let dist = to.length();
        if dist < self.best - 0.5 {
            (self.best, self.since_progress) = (dist, 0);
        } else {
            self.since_progress += 1;
        }
        to.normalize_or_zero()
    }
}

/// One bot's state between ticks: its netcode client and game session, its choices, what it
/// saw. Sans-IO: datagrams in ([`Bot::receive`]), one input step per tick ([`Bot::step`]),
/// datagrams out through [`Bot::poll_transmit`]. [`play_on`] and the crowd's shards drive it.
struct Bot {
    player: u64,
    client: Client,
    session: ClientSession,
    report: BotReport,
    epoch: Instant,
    dir: Vec2,
    run: bool,
    n: u64,
    roam: Roam,
    /// When the avatar was first seen over its zone's border (for the handoff latency), and
    /// whether a redirect is being followed (the next snapshot closes the measurement).
    crossed_at: Option<Instant>,
    redirected: bool,
    out: Vec<u8>,
    /// Datagrams to send, back to back, and where each goes.
    outbox: Vec<u8>,
    outbox_list: Vec<(SocketAddr, usize, usize)>,
    /// Clock, prediction and interpolation of the zone played in (from its welcome on).
    responsive: Option<Responsive>,
    /// The step the current capture pursuit began at, if one is on.
    capture_since: Option<u64>,
    /// No pursuit before this step.
    capture_rest_until: u64,
}

/// A game client's responsive half, as a bot runs it: the server's clock, the own avatar
/// predicted, everything else interpolated and drawn now and then ([`DRAW_EVERY`]).
struct Responsive {
    sync: TimeSync,
    predictor: Predictor,
    interpolator: Interpolator,
    drawn: Vec<Rendered>,
    /// The render tick of the last frame drawn (the view abilities are aimed in).
    render: Option<f64>,
}

impl Responsive {
    /// For a zone at `tick_hz`: predicts on `zone`'s generated map (the server's embedded
    /// defaults; on another map the bot is corrected at walls, which the figures count).
    fn new(tick_hz: u16, zone: Option<ZoneConfig>) -> Self {
        let zone = zone.unwrap_or_else(|| ZoneConfig::arena(ZoneId(1), 128, 128, 0));
        let max_speed = zone.rules.run_speed.max(zone.rules.npc.chase_speed);
        Self {
            sync: TimeSync::new(tick_hz),
            predictor: Predictor::new(
                zone.rules,
                zone.map,
                Smoothing::Smooth {
                    half_life_ticks: 4.0,
                },
            ),
            interpolator: Interpolator::new(tick_hz, max_speed),
            drawn: Vec::with_capacity(256),
            render: None,
        }
    }
}

/// What a bot wants after a step.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Play on.
    Play,
    /// The connection ended (a fault, or the server closed it): the bot is done.
    Done,
}

impl Bot {
    fn new(player: u64, token: &[u8; 2048], epoch: Instant, game: &WireLayout) -> Self {
        Self {
            player,
            client: Client::new(epoch.elapsed(), token),
            session: ClientSession::with_game(PlayerId(player), game.clone()),
            report: BotReport {
                player,
                ..BotReport::default()
            },
            epoch,
            dir: Vec2::ZERO,
            run: false,
            n: 0,
            roam: Roam::default(),
            crossed_at: None,
            redirected: false,
            out: Vec::with_capacity(1_200),
            outbox: Vec::with_capacity(4 * 1_300),
            outbox_list: Vec::with_capacity(4),
            responsive: None,
            capture_since: None,
            capture_rest_until: if player.is_multiple_of(CAPTURERS) {
                0
            } else {
                u64::MAX
            },
        }
    }

    fn now_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// After a snapshot applied: the clock and the reconciliation.
    fn on_snapshot(&mut self) {
        let started = std::time::Instant::now();
        let now = self.now_s();
        let Some(r) = &mut self.responsive else {
            return;
        };
        let tick = self.session.newest_tick();
        r.sync.on_snapshot(tick, now);
        if let Some(avatar) = self.session.avatar() {
            let rec = r.predictor.reconcile(tick, &avatar);
            if !rec.exact
                && let Some(e) = rec.error
                && self.report.client.errors_um.len() < 256
            {
                self.report
                    .client
                    .errors_um
                    .push((e * 1e6).min(u32::MAX as f32) as u32);
            }
        }
        self.report.client.cpu_ns += started.elapsed().as_nanos() as u64;
    }

    /// Ends the responsive half of a zone (a redirect), keeping its figures.
    fn forget_zone(&mut self) {
        if let Some(r) = self.responsive.take() {
            self.report.client.absorb(&r.predictor, &r.interpolator);
        }
    }

    /// The datagrams this step queued, to send now (then [`Bot::sent`]).
    fn outbox(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.outbox_list
            .iter()
            .map(|&(to, a, b)| (to, self.outbox.get(a..b).unwrap_or(&[])))
    }

    /// Empties the outbox, counting what went out.
    fn sent(&mut self, bytes: u64) {
        self.report.wire_bytes_out += bytes;
        self.outbox.clear();
        self.outbox_list.clear();
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Takes one datagram from the server.
    fn receive(&mut self, from: SocketAddr, datagram: &mut [u8]) {
        self.report.wire_bytes_in += datagram.len() as u64;
        let now = self.now();
        match self.client.process(now, from, datagram) {
            Some(ClientEvent::Payload(data)) => {
                self.report.payload_bytes_in += data.len() as u64;
                let before = self.session.newest_tick();
                if self.session.handle_packet(data).is_err() {
                    self.report.refused += 1;
                } else if self.session.newest_tick() > before {
                    self.report.snapshots += 1;
                    self.on_snapshot();
                }
            }
            Some(ClientEvent::Connected { .. }) => connected(&mut self.report, self.epoch),
            Some(ClientEvent::Disconnected { state }) => {
                self.report.lost = Some(format!("{state:?}"))
            }
            None => {}
        }
    }

    /// One tick: take the events, follow a redirect (the old zone's goodbye datagrams are
    /// queued before the new client's), choose and send the next input.
    fn step(&mut self, config: &BotConfig) -> Next {
        while let Some(ev) = self.client.poll_event() {
            match ev {
                ClientEvent::Connected { .. } => connected(&mut self.report, self.epoch),
                ClientEvent::Disconnected { state } => {
                    self.report.lost = Some(format!("{state:?}"))
                }
                ClientEvent::Payload(_) => {}
            }
        }
        let mut redirect = None;
        while let Some(ev) = self.session.poll_event() {
            match ev {
                GameEvent::Message(ServerMessage::Welcome { .. }) => self.report.welcomed = true,
                GameEvent::GameMismatch { ours, theirs } => {
                    tracing::warn!(
                        player = self.player,
                        ?ours,
                        ?theirs,
                        "the server runs another game than the bots"
                    );
                    self.report.game_mismatch = true;
                }
                GameEvent::Message(ServerMessage::Hit { .. }) => self.report.hits += 1,
                GameEvent::Message(ServerMessage::Goodbye { .. }) => {
                    self.report.server_closed = true
                }
                GameEvent::Redirect(r) => redirect = Some(r),
                GameEvent::Pong(n) => {
                    let now = self.now_s();
                    if let Some(r) = &mut self.responsive {
                        r.sync.on_pong(n, now);
                    }
                }
                _ => {}
            }
        }
        if let Some(r) = redirect {
            // Leave the old zone properly, then connect to the new one with its token.
            let _ = self.client.disconnect();
            while let Some(t) = self.client.poll_transmit() {
                let (to, a) = (t.destination, self.outbox.len());
                self.outbox.extend_from_slice(t.payload);
                self.outbox_list.push((to, a, self.outbox.len()));
            }
            self.client = Client::new(self.now(), &r.token[..]);
            self.session =
                ClientSession::with_game(PlayerId(self.player), self.session.wire().clone());
            self.forget_zone();
            self.report.redirects += 1;
            self.report.lost = None;
            self.redirected = true;
            tracing::debug!(player = self.player, zone = r.zone.0, address = %r.address, "bot follows a redirect");
        }
        self.report.max_visible = self.report.max_visible.max(self.session.entities().len());
        let me = self
            .session
            .entity()
            .and_then(|id| self.session.entity_state(id))
            .copied();
        if let Some(me) = me {
            self.observe(config, &me);
        }
        if self.report.lost.is_some() {
            if self.client.state() == ClientState::Disconnected {
                // A server-side disconnect (shutdown) is an orderly close, not a fault.
                self.report.server_closed = true;
            }
            return Next::Done;
        }
        if self.responsive.is_none() && self.session.tick_hz() != 0 {
            let map = match (
                config.layout.as_ref().or(config.roam.as_ref()),
                self.session.zone(),
            ) {
                (Some(world), Some(z)) => world.zone_config(z, 0),
                _ => None,
            };
            self.responsive = Some(Responsive::new(self.session.tick_hz(), map));
        }
        if self.client.state() == ClientState::Connected {
            self.play(config, me);
        }
        let now = self.now();
        self.client.update(now);
        while let Some(t) = self.client.poll_transmit() {
            let (to, a) = (t.destination, self.outbox.len());
            self.outbox.extend_from_slice(t.payload);
            self.outbox_list.push((to, a, self.outbox.len()));
        }
        Next::Play
    }

    /// Leaves properly if still connected (the disconnect datagrams go to the outbox) and
    /// hands back what the bot saw.
    fn leave(&mut self) {
        self.forget_zone();
        if self.client.state() == ClientState::Connected {
            let _ = self.client.disconnect();
            while let Some(t) = self.client.poll_transmit() {
                let (to, a) = (t.destination, self.outbox.len());
                self.outbox.extend_from_slice(t.payload);
                self.outbox_list.push((to, a, self.outbox.len()));
            }
        }
    }

    /// Records where the avatar is (its zone, its path, the handoff latency).
    fn observe(&mut self, config: &BotConfig, me: &NetEntity) {
        self.report.last_self = Some((self.session.newest_tick(), *me));
        self.report.zone = self.session.zone();
        if let Some(z) = self.report.zone
            && self.report.path.last() != Some(&z)
            && self.report.path.len() < 64
        {
            self.report.path.push(z);
        }
        let at = self.session.position_vec(me);
        if self.redirected {
            self.redirected = false;
            if let Some(t) = self.crossed_at.take() {
                self.report.handoff_ms.push(t.elapsed().as_millis() as u64);
            }
        } else if let (Some(world), Some(zone)) = (&config.roam, self.session.zone()) {
            let over = world.bounds(zone).is_some_and(|b| !b.contains(at));
            if over && self.crossed_at.is_none() {
                self.crossed_at = Some(Instant::now());
            } else if !over {
                self.crossed_at = None;
            }
        }
    }

    /// Chooses this tick's input and sends it with the acks.
    /// The nearest capture point in view within [`CAPTURE_REACH`] whose flag is not this
    /// bot's: its id, where it is and its flag.
    fn capture_goal(&self, me: &NetEntity) -> Option<(EntityId, Vec2, Flag)> {
        let at = self.session.position_vec(me);
        self.session
            .entities()
            .iter()
            .filter(|e| e.kind == NetKind::Prop)
            .filter_map(|e| {
                let flag = self.session.component::<Flag>(e.id)?;
                let spot = self.session.position_vec(e);
                (flag.owner != Some(me.id) && spot.distance(at) < CAPTURE_REACH)
                    .then_some((e.id, spot, flag))
            })
            .min_by(|a, b| a.1.distance(at).total_cmp(&b.1.distance(at)))
    }

    fn play(&mut self, config: &BotConfig, me: Option<NetEntity>) {
        self.n += 1;
        let mut d = rng::stream(config.seed, self.player, self.n, Purpose::Script);
        let at = me.map(|m| self.session.position_vec(&m));
        match (&config.roam, at) {
            (Some(world), Some(at)) => {
                self.dir = self
                    .roam
                    .direction(world, at, config.seed, self.player, self.n);
                self.run = true;
            }
            _ if config.stand => {
                self.dir = Vec2::ZERO;
                self.run = false;
            }
            _ => {
                if self.dir == Vec2::ZERO || d.below(90) == 0 {
                    let a = d.range(0.0, std::f32::consts::TAU);
                    self.dir = if d.below(5) == 0 {
                        Vec2::ZERO
                    } else {
                        Vec2::new(a.cos(), a.sin())
                    };
                    self.run = d.below(3) == 0;
                }
            }
        }
        // For one bot in CAPTURERS, a capture point nearby that is not its own: walk onto it,
        // plant a flag, hold it (at most CAPTURE_PURSUIT steps, then CAPTURE_REST of roaming).
        let goal = me
            .filter(|_| self.n >= self.capture_rest_until)
            .and_then(|me| Some((me, self.capture_goal(&me)?)));
        let since = goal.map(|_| *self.capture_since.get_or_insert(self.n));
        if goal.is_none() && self.capture_since.is_some()
            || since.is_some_and(|s| self.n - s > CAPTURE_PURSUIT)
        {
            (self.capture_since, self.capture_rest_until) = (None, self.n + CAPTURE_REST);
        } else if let Some((me, (point, spot, flag))) = goal {
            let at = self.session.position_vec(&me);
            let to = spot - at;
            if to.length() > 1.5 {
                self.dir = to.normalize_or_zero();
                self.run = to.length() > 6.0;
            } else {
                self.dir = Vec2::ZERO;
                // Plant on a free point while alive; a point someone else is capturing is
                // contested by standing on it.
                if me.alive
                    && flag.claimant.is_none()
                    && self.n.is_multiple_of(30)
                    && self.session.send_action(&PlantFlag { point }).is_ok()
                {
                    self.report.actions_sent += 1;
                }
            }
        }
        // The target to fight back at, now and then: the nearest living entity in view.
        let target = me.filter(|_| d.below(20) == 0).and_then(|me| {
            let (mx, my) = self.session.position(&me);
            self.session
                .entities()
                .iter()
                .filter(|e| e.id != me.id && e.alive)
                .min_by_key(|e| {
                    let (x, y) = self.session.position(e);
                    let (dx, dy) = (i64::from(x - mx), i64::from(y - my));
                    dx * dx + dy * dy
                })
                .map(|e| e.id)
        });
        let started = std::time::Instant::now();
        let mut draw_ns = 0;
        let now = self.now_s();
        match &mut self.responsive {
            Some(r) => {
                if let Some(n) = r.sync.ping_due(now) {
                    self.session.ping(n);
                }
                // The render clock every step; the world drawn (what a game client would
                // show) every DRAW_EVERY steps.
                if let Some(render) = r.interpolator.advance(now, &r.sync) {
                    if self.n.is_multiple_of(DRAW_EVERY) {
                        let drawing = std::time::Instant::now();
                        r.interpolator
                            .view_at(render, self.session.views(), &mut r.drawn);
                        draw_ns = drawing.elapsed().as_nanos() as u64;
                    }
                    r.render = Some(render);
                }
                // Inputs for every tick up to the one the clock says is due, each predicted.
                if let Some(due) = r.sync.input_tick(now)
                    && r.predictor.is_started()
                {
                    // From the last tick predicted, or after a stall from the earliest tick an
                    // input can still make (the ticks between keep the input in effect).
                    let first = r.sync.earliest_input_tick(now).unwrap_or(due).min(due);
                    let mut made = 0;
                    while r.predictor.tick() < due && made < 8 {
                        let t = (r.predictor.tick() + 1).max(first);
                        let mut input = PlayerInput::movement(0, t, self.dir, self.run);
                        input.facing = self.dir.y.atan2(self.dir.x);
                        if made == 0
                            && let Some(target) = target
                        {
                            input.ability = Some(AbilityUse {
                                ability: AbilityId(1),
                                target,
                                view_tick: r.render.map_or(0, |t| t.max(0.0) as u64),
                            });
                        }
                        input.seq = self.session.push_input(input);
                        r.predictor.predict(&input);
                        made += 1;
                    }
                }
            }
            None => {
                // No clock before the welcome: no inputs, acks only.
            }
        }
        let spent = started.elapsed().as_nanos() as u64;
        self.report.client.cpu_ns += spent.saturating_sub(draw_ns);
        self.report.client.draw_ns += draw_ns;
        self.out.clear();
        self.session.write_packet(&mut self.out);
        let _ = self.client.send_payload(&self.out);
    }
}

/// One bot on any datagram socket (tokio's, or a simulated one): connects with `token`, plays
/// until `config.duration`, `stop`, or the connection ends, follows redirects to other zones
/// (on the same socket), and reports what it saw.
pub async fn play_on<S: DatagramSocket>(
    socket: &S,
    config: &BotConfig,
    player: u64,
    token: [u8; 2048],
    stop: &mut watch::Receiver<bool>,
) -> Result<BotReport, BotError> {
    let epoch = Instant::now();
    let mut bot = Bot::new(player, &token, epoch, &config.game);
    let mut ticker = step_interval(config);
    let deadline = config.duration.map(|d| epoch + d);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // Everything that arrived.
        while let Ok((len, from)) = socket.try_recv_from(&mut buf) {
            if let Some(datagram) = buf.get_mut(..len) {
                bot.receive(from, datagram);
            }
        }
        let next = bot.step(config);
        send_outbox(socket, &mut bot).await;
        if next == Next::Done {
            break;
        }
    }
    bot.leave();
    send_outbox(socket, &mut bot).await;
    Ok(bot.report)
}

async fn send_outbox<S: DatagramSocket>(socket: &S, bot: &mut Bot) {
    let mut bytes = 0;
    for (to, payload) in bot.outbox() {
        if let Ok(n) = socket.send_to(payload, to).await {
            bytes += n as u64;
        }
    }
    bot.sent(bytes);
}

fn connected(report: &mut BotReport, epoch: Instant) {
    if !report.connected {
        report.connected = true;
        report.connect_ms = epoch.elapsed().as_millis() as u64;
    }
}
