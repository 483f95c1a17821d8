//! Headless bot clients: each connects over UDP with a connect token, plays through
//! `core::client::ClientSession` (walks, turns, fights back) and reports what it saw.
//! `zone-server bots` runs them against any server; `zone-server run --bots N` runs a few
//! in-process for the demo; tests and load runs use them too.

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
use zone_core::{AbilityId, AbilityUse, PlayerId, PlayerInput, Vec2};

use crate::tokens::{TokenRequest, mint};

/// How to run a crowd of bots.
#[derive(Clone, Debug)]
pub struct BotConfig {
    /// Server to connect to.
    pub server: SocketAddr,
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

    /// Mean snapshots per connected bot per second.
    pub fn snapshots_per_bot_s(&self) -> f64 {
        let n = self.connected().max(1) as f64;
        self.bots.iter().map(|b| b.snapshots as f64).sum::<f64>() / n / self.seconds.max(1e-9)
    }
}

/// Runs a crowd of bots until `duration` elapses or `stop` turns true.
pub async fn run_crowd(
    config: BotConfig,
    private_key: &Key,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<CrowdReport> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(config.count as usize);
    for i in 0..u64::from(config.count) {
        let player = config.first_player + i;
        let token = mint(
            &TokenRequest {
                protocol_id: config.protocol_id,
                client_id: player,
                servers: vec![config.server],
                expiry_s: 3_600,
                timeout_s: 10,
            },
            private_key,
        )?;
        let (cfg, stop) = (config.clone(), stop.clone());
        tasks.push(tokio::spawn(
            async move { play(cfg, player, token, stop).await },
        ));
    }
    let mut bots = Vec::with_capacity(tasks.len());
    for t in tasks {
        bots.push(
            t.await
                .map_err(|e| anyhow::anyhow!("bot task failed: {e}"))??,
        );
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
) -> anyhow::Result<BotReport> {
    let bind: SocketAddr = if config.server.is_ipv4() {
        "127.0.0.1:0".parse()?
    } else {
        "[::1]:0".parse()?
    };
    let socket = UdpSocket::bind(bind).await?;
    play_on(&socket, &config, player, token, &mut stop).await
}

/// One bot on any datagram socket (tokio's, or a simulated one): connects with `token`, plays
/// until `config.duration`, `stop`, or the connection ends, and reports what it saw.
pub async fn play_on<S: DatagramSocket>(
    socket: &S,
    config: &BotConfig,
    player: u64,
    token: [u8; 2048],
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<BotReport> {
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
        while let Some(ev) = session.poll_event() {
            match ev {
                GameEvent::Message(ServerMessage::Welcome { .. }) => report.welcomed = true,
                GameEvent::Message(ServerMessage::Hit { .. }) => report.hits += 1,
                GameEvent::Message(ServerMessage::Goodbye { .. }) => report.server_closed = true,
                _ => {}
            }
        }
        report.max_visible = report.max_visible.max(session.entities().len());
        if let Some(me) = session.entity().and_then(|id| session.entity_state(id)) {
            report.last_self = Some((session.newest_tick(), *me));
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
            if dir == Vec2::ZERO || d.below(90) == 0 {
                let a = d.range(0.0, std::f32::consts::TAU);
                dir = if d.below(5) == 0 {
                    Vec2::ZERO
                } else {
                    Vec2::new(a.cos(), a.sin())
                };
                run = d.below(3) == 0;
            }
            let mut input = PlayerInput::movement(0, session.newest_tick() + 1, dir, run);
            input.facing = dir.y.atan2(dir.x);
            if let Some(me) = session.entity().and_then(|id| session.entity_state(id)) {
                // Fight back at whoever is close, now and then.
                if d.below(20) == 0 {
                    let near = session
                        .entities()
                        .iter()
                        .filter(|e| e.id != me.id && e.alive)
                        .min_by_key(|e| {
                            let dx = i64::from(e.x - me.x);
                            let dy = i64::from(e.y - me.y);
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
