//! The host-tick rig: one real [`ZoneHost`] (simulation, replication, netcode, its packet
//! lanes) serving `clients` in-process game clients (the core's netcode client and game
//! session) that play like the scripted players of the benchmarks over a simulated round trip,
//! while every datagram the host sends is handed to the kernel through the server's own send
//! path ([`crate::server::hand_batches_to_kernel`] on a [`BatchedUdp`]) to a real socket per
//! client.
//!
//! What [`HostRig::step`] times is what one host tick costs the server: [`ZoneHost::tick`]
//! (simulation, replication, encryption) plus handing its datagrams to the kernel. The
//! clients' work, the round-trip delay and the receive path are outside it. Benchmarks and the
//! zero-allocation test use it; a game team can load-test its own rules with it.
//!
//! With `threads > 1` the rig's thread joins a [`LanePool`]: a thread joins one pool for its
//! life, so run each such rig on a fresh thread.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use zone_core::client::ClientSession;
use zone_core::netcode::{Client, ClientEvent, ClientState, Key};
use zone_core::protocol::ServerMessage;
use zone_core::rng::{self, Purpose};
use zone_core::scenario::Script;
use zone_core::{AbilityId, AbilityUse, PlayerId, PlayerInput, Vec2, Zone, ZoneConfig};

use crate::effects::{Effect, LoadOutcome};
use crate::host::lanes::MAX_LANES;
use crate::host::{HostConfig, ZoneHost};
use crate::persist::StoredPlayer;
use crate::persist::load_policy::LoadSource;
use crate::pool::LanePool;
use crate::socket::batched::BatchedUdp;
use crate::socket::{BatchSent, DatagramSocket};
use crate::tokens::{TokenRequest, TokenSecrets, mint_with};

const PROTOCOL: u64 = 0x5A4F_4E45;
const UNIX: u64 = 1_800_000_000;
const FIRST_PLAYER: u64 = 1;

/// How to build the rig.
#[derive(Clone, Debug)]
pub struct RigConfig {
    /// The zone (its NPCs, map and rules).
    pub zone: ZoneConfig,
    /// Connected clients (players).
    pub clients: u32,
    /// Round trip, in ticks (half each way).
    pub rtt_ticks: usize,
    /// Hand datagrams to the kernel (false: drop them after the host produced them).
    pub sockets: bool,
    /// Threads of the packet lanes (1: the tick's own thread only).
    pub threads: usize,
    /// Ticks between two snapshots of a client.
    pub snapshot_interval: u32,
}

struct RigClient {
    player: PlayerId,
    socket: Option<UdpSocket>,
    address: SocketAddr,
    client: Client,
    session: ClientSession,
    dir: Vec2,
    run: bool,
    inputs: u64,
    /// Who hit this player last (from the combat log): the only one it fights back at.
    last_hit_by: Option<zone_core::EntityId>,
}

/// Datagrams in flight one way: (due tick, client, bytes).
type Wire = VecDeque<(u64, usize, Vec<u8>)>;

/// A host and its clients (see the module docs).
pub struct HostRig {
    /// The host under test.
    pub host: ZoneHost,
    socket: Option<BatchedUdp>,
    /// Drives the socket's readiness (a worker thread) and the rare awaited send.
    runtime: tokio::runtime::Runtime,
    sent_now: SmallVec<[BatchSent; MAX_LANES]>,
    clients: Vec<RigClient>,
    script: Script,
    up: Wire,
    down: Wire,
    tick: u64,
    half: u64,
    records: u64,
    buf: Vec<u8>,
    /// Datagrams handed to the kernel, and their bytes.
    pub sent: (u64, u64),
    /// Sends the kernel refused.
    pub send_errors: u64,
    /// Datagrams the kernel did not take at once (sent awaiting the socket).
    pub waited: u64,
    /// Every datagram the host sent, when recording (without sockets).
    log: Option<Vec<(SocketAddr, Vec<u8>)>>,
}

impl std::fmt::Debug for HostRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRig")
            .field("clients", &self.clients.len())
            .field("tick", &self.tick)
            .finish()
    }
}

fn step() -> Duration {
    Duration::from_micros(16_667)
}

impl HostRig {
    /// Builds the zone and the host, and connects every client (untimed).
    pub fn new(config: RigConfig) -> anyhow::Result<Self> {
        let zone = Zone::new(config.zone.clone(), 42)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let socket = if config.sockets {
            let _inside = runtime.enter();
            let (s, _) = crate::socket::bind_udp("127.0.0.1:0".parse()?, 4 << 20)?;
            Some(s)
        } else {
            None
        };
        let server: SocketAddr = match &socket {
            Some(s) => s.local_addr()?,
            None => "127.0.0.1:40000".parse()?,
        };
        let mut host = ZoneHost::new(
            zone,
            &HostConfig {
                protocol_id: PROTOCOL,
                public_addresses: vec![server],
                max_clients: config.clients as usize + 16,
                max_packets_per_client_tick: 8,
                run: 1,
                fence: 1,
                global_sequence_random: [9; 8],
                world: None,
                snapshot_interval: config.snapshot_interval,
            },
            Key::from_bytes([7; 32]),
            Key::from_bytes([8; 32]),
        )?;
        if config.threads > 1 {
            let pool = LanePool::on_this_thread(config.threads, "rig")?;
            host.set_parallel(std::sync::Arc::new(pool));
        }
        let mut clients = Vec::with_capacity(config.clients as usize);
        for i in 0..u64::from(config.clients) {
            let player = PlayerId(FIRST_PLAYER + i);
            let (socket, address) = if config.sockets {
                let s = UdpSocket::bind("127.0.0.1:0")?;
                s.set_nonblocking(true)?;
                let a = s.local_addr()?;
                (Some(s), a)
            } else {
                (
                    None,
                    SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 5_000)),
                )
            };
            let token = mint_with(
                &TokenRequest {
                    protocol_id: PROTOCOL,
                    client_id: player.0,
                    servers: vec![server],
                    expiry_s: 3_600,
                    timeout_s: 30,
                },
                &Key::from_bytes([7; 32]),
                UNIX,
                TokenSecrets {
                    client_to_server: [(i % 251) as u8; 32],
                    server_to_client: [(i % 241) as u8 ^ 0x55; 32],
                    nonce: [(i % 239) as u8; 24],
                },
            )?;
            clients.push(RigClient {
                player,
                socket,
                address,
                client: Client::new(Duration::ZERO, &token),
                session: ClientSession::new(player),
                dir: Vec2::ZERO,
                run: false,
                inputs: 0,
                last_hit_by: None,
            });
        }
        let mut rig = Self {
            host,
            socket,
            runtime,
            sent_now: SmallVec::new(),
            clients,
            script: Script::new(7, FIRST_PLAYER, config.clients),
            up: VecDeque::new(),
            down: VecDeque::new(),
            tick: 0,
            half: (config.rtt_ticks / 2) as u64,
            records: 0,
            buf: vec![0; 2048],
            sent: (0, 0),
            send_errors: 0,
            waited: 0,
            log: None,
        };
        rig.connect_all()?;
        Ok(rig)
    }

    fn now(&self) -> Duration {
        step() * self.tick as u32
    }

    /// Runs the handshakes (no delay, no ticks) until every client is connected and playing.
    fn connect_all(&mut self) -> anyhow::Result<()> {
        for round in 0..200u32 {
            let now = self.now() + Duration::from_micros(u64::from(round) * 100);
            let mut pending = 0;
            for i in 0..self.clients.len() {
                let c = &mut self.clients[i];
                c.client.update(now);
                if c.client.state() != ClientState::Connected {
                    pending += 1;
                }
                while let Some(t) = c.client.poll_transmit() {
                    let mut bytes = t.payload.to_vec();
                    let from = c.address;
                    self.host.handle_datagram(now, UNIX, from, &mut bytes);
                }
                self.effects();
                self.route_to_clients(now, false);
            }
            if pending == 0 && round > 2 {
                return Ok(());
            }
        }
        let connected = self
            .clients
            .iter()
            .filter(|c| c.client.state() == ClientState::Connected)
            .count();
        anyhow::bail!(
            "only {connected} of {} rig clients connected",
            self.clients.len()
        )
    }

    /// Answers the host's effects at once: loads find the player at a scripted spot, every
    /// record is durable at once.
    fn effects(&mut self) {
        while let Some(effect) = self.host.poll_effect() {
            match effect {
                Effect::Load(request) => {
                    let state = self.script.start_state(self.host.zone(), request.player);
                    self.host.handle_loaded(
                        request.player,
                        LoadOutcome::Found {
                            stored: StoredPlayer {
                                state,
                                profile: None,
                            },
                            source: LoadSource::Cold,
                        },
                    );
                }
                Effect::Spool(_) => self.records += 1,
                _ => {}
            }
        }
        self.host.handle_flushed(self.records);
    }

    /// Hands the host's datagrams to the clients directly (the handshake, and untimed runs).
    fn route_to_clients(&mut self, now: Duration, delay: bool) {
        let (clients, down, due) = (&mut self.clients, &mut self.down, self.tick + self.half);
        let log = &mut self.log;
        self.host.drain_datagrams(|t| {
            if let Some(log) = log.as_mut() {
                log.push((t.destination, t.payload.to_vec()));
            }
            let Some(i) = Self::client_at(clients, t.destination) else {
                return;
            };
            if delay {
                down.push_back((due, i, t.payload.to_vec()));
            } else {
                let mut bytes = t.payload.to_vec();
                deliver(&mut clients[i], now, &mut bytes);
            }
        });
    }

    fn client_at(clients: &[RigClient], address: SocketAddr) -> Option<usize> {
        let i = match address {
            SocketAddr::V4(a) if a.ip().octets()[0] == 10 => {
                let [_, _, hi, lo] = a.ip().octets();
                usize::from(hi) << 8 | usize::from(lo)
            }
            _ => clients.iter().position(|c| c.address == address)?,
        };
        (clients.get(i)?.address == address).then_some(i)
    }

    /// One tick: deliver what arrived, then the timed part (host tick + handing every datagram
    /// to the kernel), then the clients read and answer. Returns the timed part's duration.
    pub fn step(&mut self) -> Duration {
        self.step_marked(&mut |_| {})
    }

    /// [`HostRig::step`], calling `mark(true)` right before the timed part and `mark(false)`
    /// right after (a test counts allocations in between).
    pub fn step_marked(&mut self, mark: &mut dyn FnMut(bool)) -> Duration {
        let now = self.now();
        while self.up.front().is_some_and(|(due, _, _)| *due <= self.tick) {
            if let Some((_, i, mut bytes)) = self.up.pop_front() {
                let from = self.clients[i].address;
                self.host.handle_datagram(now, UNIX, from, &mut bytes);
            }
        }
        self.effects();
        mark(true);
        let started = Instant::now();
        self.host.tick(now, UNIX * 1_000 + self.tick * 16);
        self.send_all();
        let took = started.elapsed();
        mark(false);
        self.effects();
        self.receive(now);
        self.tick += 1;
        took
    }

    /// Hands every datagram to the kernel the way the server does (the queue, then the sealed
    /// batches from the lanes' threads; what the kernel did not take at once, awaited), or,
    /// without sockets, straight to the clients' delay line.
    fn send_all(&mut self) {
        let Some(socket) = &self.socket else {
            self.route_to_clients(self.now(), true);
            return;
        };
        while let Some(t) = self.host.poll_transmit() {
            let result = self
                .runtime
                .block_on(socket.send_to(t.payload, t.destination));
            count_send(&mut self.sent, &mut self.send_errors, result);
        }
        let lanes =
            crate::server::hand_batches_to_kernel(&mut self.host, socket, &mut self.sent_now);
        for (lane, out) in lanes.iter().zip(&self.sent_now) {
            self.sent.0 += (out.done - out.refused) as u64;
            self.sent.1 += out.bytes as u64;
            self.send_errors += out.refused as u64;
            let datagrams = lane.datagrams();
            for i in out.done..datagrams.len() {
                if let Some(t) = datagrams.get(i) {
                    self.waited += 1;
                    let result = self
                        .runtime
                        .block_on(socket.send_to(t.payload, t.destination));
                    count_send(&mut self.sent, &mut self.send_errors, result);
                }
            }
        }
    }

    /// The clients read their sockets (into the delay line), take what is due, and send their
    /// next packet (into the other delay line).
    fn receive(&mut self, now: Duration) {
        for i in 0..self.clients.len() {
            let Some(socket) = &self.clients[i].socket else {
                continue;
            };
            while let Ok((n, _)) = socket.recv_from(&mut self.buf) {
                self.down
                    .push_back((self.tick + self.half, i, self.buf[..n].to_vec()));
            }
        }
        while self
            .down
            .front()
            .is_some_and(|(due, _, _)| *due <= self.tick)
        {
            if let Some((_, i, mut bytes)) = self.down.pop_front() {
                deliver(&mut self.clients[i], now, &mut bytes);
            }
        }
        let mut out = Vec::with_capacity(256);
        for (i, c) in self.clients.iter_mut().enumerate() {
            if c.client.state() == ClientState::Connected {
                play(c, self.tick);
                out.clear();
                c.session.write_packet(&mut out);
                let _ = c.client.send_payload(&out);
            }
            c.client.update(now);
            while let Some(t) = c.client.poll_transmit() {
                self.up
                    .push_back((self.tick + self.half.max(1), i, t.payload.to_vec()));
            }
        }
    }

    /// Keeps every datagram the host sends from now on (a rig without sockets only), for
    /// [`HostRig::take_datagrams`].
    pub fn record_datagrams(&mut self) {
        self.log = Some(Vec::new());
    }

    /// The datagrams recorded since the last call, in the order sent.
    pub fn take_datagrams(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Mean entities in the clients' views.
    pub fn visible_per_client(&self) -> f64 {
        let n: usize = self
            .clients
            .iter()
            .map(|c| c.session.entities().len())
            .sum();
        n as f64 / self.clients.len().max(1) as f64
    }

    /// Clients connected.
    pub fn connected(&self) -> usize {
        self.clients
            .iter()
            .filter(|c| c.client.state() == ClientState::Connected)
            .count()
    }
}

fn deliver(c: &mut RigClient, now: Duration, bytes: &mut [u8]) {
    if let Some(ClientEvent::Payload(data)) = c.client.process(now, c.address_of_server(), bytes) {
        let _ = c.session.handle_packet(data);
    }
}

impl RigClient {
    fn address_of_server(&self) -> SocketAddr {
        self.client
            .server_address()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 40_000)))
    }
}

/// The standard scenario's player: wanders (turning now and then, sometimes running,
/// sometimes standing) and now and then attacks whoever is nearest.
fn play(c: &mut RigClient, tick: u64) {
    c.inputs += 1;
    let mut d = rng::stream(7, c.player.0, c.inputs, Purpose::Script);
    if c.dir == Vec2::ZERO || d.below(90) == 0 {
        let a = d.range(0.0, std::f32::consts::TAU);
        c.dir = if d.below(5) == 0 {
            Vec2::ZERO
        } else {
            Vec2::new(a.cos(), a.sin())
        };
        c.run = d.below(3) == 0;
    }
    let mut input = PlayerInput::movement(0, c.session.newest_tick().max(tick) + 1, c.dir, c.run);
    input.facing = c.dir.y.atan2(c.dir.x);
    while let Some(event) = c.session.poll_event() {
        if let zone_core::client::ClientEvent::Message(ServerMessage::Hit {
            attacker, target, ..
        }) = event
            && Some(target) == c.session.entity()
        {
            c.last_hit_by = Some(attacker);
        }
    }
    // Like the scripted players of the other benchmarks: fight back at whoever hit it last,
    // about every third tick, while it is alive and in view.
    if let Some(target) = c.last_hit_by
        && d.below(3) == 0
    {
        match c.session.entity_state(target) {
            Some(t) if t.alive => {
                input.ability = Some(AbilityUse {
                    ability: AbilityId(1),
                    target,
                    view_tick: 0,
                });
            }
            _ => c.last_hit_by = None,
        }
    }
    c.session.push_input(input);
}

/// Counts one awaited send: a datagram and its bytes into `sent`, or an error.
fn count_send(sent: &mut (u64, u64), errors: &mut u64, result: std::io::Result<usize>) {
    match result {
        Ok(n) => {
            sent.0 += 1;
            sent.1 += n as u64;
        }
        Err(_) => *errors += 1,
    }
}
