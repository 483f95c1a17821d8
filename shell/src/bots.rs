//! Headless bot clients: each connects over UDP with a connect token, plays through
//! `core::client::ClientSession` (walks, turns, fights back), follows zone redirects like a game
//! client (disconnect, connect to the new zone with the token it was given) and reports what it
//! saw. In a world they roam: they walk to random places, over borders. `zone-server bots` runs
//! them against any server; `zone-server run --bots N` runs a few in-process for the demo;
//! tests and load runs use them too.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::socket::DatagramSocket;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use zone_core::client::{ClientEvent as GameEvent, ClientSession};
use zone_core::netcode::{Client, ClientEvent, ClientState, Key};
use zone_core::protocol::ServerMessage;
use zone_core::rng::{self, Purpose};
use zone_core::world::WorldGrid;
use zone_core::{AbilityId, AbilityUse, PlayerId, PlayerInput, Vec2, ZoneId};

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
    /// Without a world to roam: stand where they spawned (fighting back at whoever comes
    /// close) instead of walking about at random. A player who stays in one zone for long.
    pub stand: bool,
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

/// Runs a crowd of bots until `duration` elapses or `stop` turns true.
pub async fn run_crowd(
    config: BotConfig,
    private_key: &Key,
    stop: watch::Receiver<bool>,
) -> Result<CrowdReport, BotError> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(config.count as usize);
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
        let (mut cfg, stop) = (config.clone(), stop.clone());
        cfg.server = server;
        tasks.push(tokio::spawn(
            async move { play(cfg, player, token, stop).await },
        ));
    }
    let mut bots = Vec::with_capacity(tasks.len());
    for t in tasks {
        bots.push(t.await??);
    }
    Ok(CrowdReport {
        bots,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn play(
    config: BotConfig,
    player: u64,
    token: [u8; 2048],
    mut stop: watch::Receiver<bool>,
) -> Result<BotReport, BotError> {
    let bind = if config.server.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    };
    let socket = UdpSocket::bind(bind).await?;
    play_on(&socket, &config, player, token, &mut stop).await
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
    let mut client = Client::new(Duration::ZERO, &token);
    let mut session = ClientSession::new(PlayerId(player));
    let mut report = BotReport {
        player,
        ..BotReport::default()
    };
    let period = Duration::from_secs_f64(1.0 / f64::from(config.tick_hz.max(1)));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let deadline = config.duration.map(|d| epoch + d);
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(1200);
    let (mut dir, mut run, mut n) = (Vec2::ZERO, false, 0u64);
    let mut roam = Roam::default();
    // When the avatar was first seen over its zone's border (for the handoff latency), and
    // whether a redirect is being followed (the next snapshot closes the measurement).
    let (mut crossed_at, mut redirected): (Option<Instant>, bool) = (None, false);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let now = epoch.elapsed();
        // Everything that arrived.
        while let Ok((len, from)) = socket.try_recv_from(&mut buf) {
            report.wire_bytes_in += len as u64;
            let Some(datagram) = buf.get_mut(..len) else {
                continue;
            };
            match client.process(now, from, datagram) {
                Some(ClientEvent::Payload(data)) => {
                    report.payload_bytes_in += data.len() as u64;
                    let before = session.newest_tick();
                    if session.handle_packet(data).is_err() {
                        report.refused += 1;
                    } else if session.newest_tick() > before {
                        report.snapshots += 1;
                    }
                }
                Some(ClientEvent::Connected { .. }) => connected(&mut report, epoch),
                Some(ClientEvent::Disconnected { state }) => {
                    report.lost = Some(format!("{state:?}"))
                }
                None => {}
            }
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Connected { .. } => connected(&mut report, epoch),
                ClientEvent::Disconnected { state } => report.lost = Some(format!("{state:?}")),
                ClientEvent::Payload(_) => {}
            }
        }
        let mut redirect = None;
        while let Some(ev) = session.poll_event() {
            match ev {
                GameEvent::Message(ServerMessage::Welcome { .. }) => report.welcomed = true,
                GameEvent::Message(ServerMessage::Hit { .. }) => report.hits += 1,
                GameEvent::Message(ServerMessage::Goodbye { .. }) => report.server_closed = true,
                GameEvent::Redirect(r) => redirect = Some(r),
                _ => {}
            }
        }
        if let Some(r) = redirect {
            // Leave the old zone properly, then connect to the new one with its token.
            let _ = client.disconnect();
            while let Some(t) = client.poll_transmit() {
                let _ = socket.send_to(t.payload, t.destination).await;
            }
            client = Client::new(epoch.elapsed(), &r.token[..]);
            session = ClientSession::new(PlayerId(player));
            report.redirects += 1;
            report.lost = None;
            redirected = true;
            tracing::debug!(player, zone = r.zone.0, address = %r.address, "bot follows a redirect");
        }
        report.max_visible = report.max_visible.max(session.entities().len());
        let me = session
            .entity()
            .and_then(|id| session.entity_state(id))
            .copied();
        if let Some(me) = me {
            report.last_self = Some((session.newest_tick(), me));
            report.zone = session.zone();
            if let Some(z) = report.zone
                && report.path.last() != Some(&z)
                && report.path.len() < 64
            {
                report.path.push(z);
            }
            let at = session.position_vec(&me);
            if redirected {
                redirected = false;
                if let Some(t) = crossed_at.take() {
                    report.handoff_ms.push(t.elapsed().as_millis() as u64);
                }
            } else if let (Some(world), Some(zone)) = (&config.roam, session.zone()) {
                let over = world.bounds(zone).is_some_and(|b| !b.contains(at));
                if over && crossed_at.is_none() {
                    crossed_at = Some(Instant::now());
                } else if !over {
                    crossed_at = None;
                }
            }
        }
        if report.lost.is_some() {
            if client.state() == ClientState::Disconnected {
                // A server-side disconnect (shutdown) is an orderly close, not a fault.
                report.server_closed = true;
            }
            break;
        }
        if client.state() == ClientState::Connected {
            n += 1;
            let mut d = rng::stream(config.seed, player, n, Purpose::Script);
            let at = me.map(|m| session.position_vec(&m));
            match (&config.roam, at) {
                (Some(world), Some(at)) => {
                    dir = roam.direction(world, at, config.seed, player, n);
                    run = true;
                }
                _ if config.stand => {
                    dir = Vec2::ZERO;
                    run = false;
                }
                _ => {
                    if dir == Vec2::ZERO || d.below(90) == 0 {
                        let a = d.range(0.0, std::f32::consts::TAU);
                        dir = if d.below(5) == 0 {
                            Vec2::ZERO
                        } else {
                            Vec2::new(a.cos(), a.sin())
                        };
                        run = d.below(3) == 0;
                    }
                }
            }
            let mut input = PlayerInput::movement(0, session.newest_tick() + 1, dir, run);
            input.facing = dir.y.atan2(dir.x);
            if let Some(me) = me {
                // Fight back at whoever is close, now and then.
                if d.below(20) == 0 {
                    let (mx, my) = session.position(&me);
                    let near = session
                        .entities()
                        .iter()
                        .filter(|e| e.id != me.id && e.alive)
                        .min_by_key(|e| {
                            let (x, y) = session.position(e);
                            let (dx, dy) = (i64::from(x - mx), i64::from(y - my));
                            dx * dx + dy * dy
                        });
                    if let Some(t) = near {
                        input.ability = Some(AbilityUse {
                            ability: AbilityId(1),
                            target: t.id,
                        });
                    }
                }
            }
            session.push_input(input);
            out.clear();
            session.write_packet(&mut out);
            let _ = client.send_payload(&out);
        }
        client.update(epoch.elapsed());
        while let Some(t) = client.poll_transmit() {
            if let Ok(sent) = socket.send_to(t.payload, t.destination).await {
                report.wire_bytes_out += sent as u64;
            }
        }
    }
    if client.state() == ClientState::Connected {
        let _ = client.disconnect();
        while let Some(t) = client.poll_transmit() {
            let _ = socket.send_to(t.payload, t.destination).await;
        }
    }
    Ok(report)
}

fn connected(report: &mut BotReport, epoch: Instant) {
    if !report.connected {
        report.connected = true;
        report.connect_ms = epoch.elapsed().as_millis() as u64;
    }
}
