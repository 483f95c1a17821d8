//! A whole 2x2 world of zone hosts with no sockets, no tokio and no clock: the hosts, their
//! clients (the core's netcode client and game session, roaming over the borders), the zone bus,
//! the ownership ledger, the spools and the cold store are plain values stepped by hand on a
//! simulated clock, with lossy, delayed datagrams and bus messages, slow disks and failing
//! claims. After every step the presence invariants are checked:
//! - every host's presences agree with its zone and its client slots;
//! - a player is held (simulated) by at most one zone, and that zone is the one the ownership
//!   ledger names, under the epoch of the held state;
//! - a held state is never older than the newest durable save of the player;
//! - a transfer leaves a zone only once the save it carries is durable there.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use zone_core::client::{ClientEvent as GameEvent, ClientSession};
use zone_core::netcode::{Client, ClientEvent, ClientState, Key};
use zone_core::protocol::{ClientMessage, ClientPacket};
use zone_core::world::WorldGrid;
use zone_core::{PlayerId, PlayerInput, PlayerState, Vec2, Zone, ZoneId};
use zone_shell::effects::redirect::RedirectToken;
use zone_shell::effects::{ClaimRequest, Effect, LoadOutcome, LoadRequest};
use zone_shell::host::{HostConfig, ZoneHost};
use zone_shell::persist::hot::{claim_allowed, next_epoch};
use zone_shell::persist::load_policy::LoadSource;
use zone_shell::persist::{Claim, Owner, Record, StoreError, StoredPlayer};
use zone_shell::tokens::{TokenRequest, TokenSecrets, mint_with};
use zone_shell::world::WorldPlace;
use zone_shell::world::bus::BusMessage;

const PROTOCOL: u64 = 0x5A11;
/// Simulated UNIX time at the start (connect tokens are stamped with it).
const UNIX_START: u64 = 1_800_000_000;
const STEP: Duration = Duration::from_micros(16_667);
const BOTS: u64 = 8;
const FIRST_PLAYER: u64 = 100;

fn private_key() -> Key {
    Key::from_bytes([7; 32])
}

/// A small deterministic generator (the test's only source of choices).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.next() as u8)
    }
}

fn mint(rng: &mut Lcg, request: &TokenRequest, unix: u64) -> [u8; 2048] {
    let secrets = TokenSecrets {
        client_to_server: rng.bytes(),
        server_to_client: rng.bytes(),
        nonce: rng.bytes(),
    };
    mint_with(request, &private_key(), unix, secrets).unwrap()
}

/// A login token of `player` at `server`, created at `unix`.
fn login(rng: &mut Lcg, player: PlayerId, server: SocketAddr, unix: u64) -> [u8; 2048] {
    let request = TokenRequest {
        protocol_id: PROTOCOL,
        client_id: player.0,
        servers: vec![server],
        expiry_s: 600,
        timeout_s: 10,
    };
    mint(rng, &request, unix)
}

/// The zone's place; odd seeds recall unanswered transfers after six steps, so recalls race
/// the neighbours' claims.
fn place(grid: WorldGrid, zone: ZoneId, address: SocketAddr, seed: u64) -> WorldPlace {
    let mut place = WorldPlace::new(grid, zone, address);
    if seed % 2 == 1 {
        place.handoff_timeout = Duration::from_millis(100);
        place.handoff_resend = Duration::from_millis(50);
    }
    place
}

/// One zone's host and what stands around it.
struct Node {
    zone: ZoneId,
    address: SocketAddr,
    host: ZoneHost,
    /// Records spooled, with the step they were appended at: durable two steps later.
    spool: Vec<(Record, u64)>,
    /// How many of them are durable.
    durable: usize,
    /// Loads and claims in flight, answered a step later.
    loads: Vec<LoadRequest>,
    claims: Vec<ClaimRequest>,
}

struct Bot {
    player: PlayerId,
    address: SocketAddr,
    client: Client,
    session: ClientSession,
    waypoint: Vec2,
    redirects: u32,
    logins: u32,
    /// When the connection was found lost (the bot logs in again a second later).
    down_since: Option<u64>,
    zones: Vec<ZoneId>,
    /// The next reliable sequence number of raw chat packets (the flooder's).
    chat_seq: u16,
}

struct World {
    grid: WorldGrid,
    nodes: Vec<Node>,
    bots: Vec<Bot>,
    /// The ownership ledger.
    ledger: BTreeMap<PlayerId, Owner>,
    /// The cold store: the newest durable save of each player.
    cold: BTreeMap<PlayerId, PlayerState>,
    /// Datagrams in flight: (deliver at step, from, to, bytes).
    wire: VecDeque<(u64, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Bus messages in flight: (deliver at step, to, bytes).
    bus: VecDeque<(u64, ZoneId, Vec<u8>)>,
    rng: Lcg,
    step: u64,
    transfers: u64,
    /// A bot that fills every packet with chat (as many as its reliable queue takes).
    flooder: Option<usize>,
}

impl World {
    fn new(seed: u64) -> Self {
        let grid = WorldGrid::of_tiles(2, 2, 32, 1).unwrap();
        let nodes = grid
            .zones()
            .map(|zone| {
                let address: SocketAddr = format!("10.0.0.{}:40000", zone.0).parse().unwrap();
                let config = HostConfig {
                    protocol_id: PROTOCOL,
                    public_addresses: vec![address],
                    max_clients: 32,
                    max_packets_per_client_tick: 8,
                    run: 1,
                    fence: 1,
                    global_sequence_random: [zone.0 as u8; 8],
                    world: Some(place(grid, zone, address, seed)),
                    snapshot_interval: 1,
                };
                let host = ZoneHost::new(
                    Zone::new(grid.zone_config(zone, 6).unwrap(), seed ^ u64::from(zone.0))
                        .unwrap(),
                    &config,
                    private_key(),
                    Key::from_bytes([zone.0 as u8; 32]),
                )
                .unwrap();
                Node {
                    zone,
                    address,
                    host,
                    spool: Vec::new(),
                    durable: 0,
                    loads: Vec::new(),
                    claims: Vec::new(),
                }
            })
            .collect();
        let mut world = Self {
            grid,
            nodes,
            bots: Vec::new(),
            ledger: BTreeMap::new(),
            cold: BTreeMap::new(),
            wire: VecDeque::new(),
            bus: VecDeque::new(),
            rng: Lcg(seed),
            step: 0,
            transfers: 0,
            flooder: None,
        };
        for i in 0..BOTS {
            let player = PlayerId(FIRST_PLAYER + i);
            let home = world.nodes[(i % 4) as usize].address;
            let token = login(&mut world.rng, player, home, UNIX_START);
            let waypoint = world.waypoint();
            world.bots.push(Bot {
                player,
                address: format!("10.1.0.{}:5000", i + 1).parse().unwrap(),
                client: Client::new(Duration::ZERO, &token),
                session: ClientSession::new(player),
                waypoint,
                redirects: 0,
                logins: 1,
                down_since: None,
                zones: Vec::new(),
                chat_seq: 0,
            });
        }
        world
    }

    fn now(&self) -> Duration {
        STEP * self.step as u32
    }

    fn unix(&self) -> u64 {
        UNIX_START + self.now().as_secs()
    }

    fn waypoint(&mut self) -> Vec2 {
        let size = self.grid.zone_size() * 2.0;
        Vec2::new(
            3.0 + (self.rng.below(1_000) as f32 / 1_000.0) * (size.x - 6.0),
            3.0 + (self.rng.below(1_000) as f32 / 1_000.0) * (size.y - 6.0),
        )
    }

    fn latency(&mut self) -> u64 {
        1 + self.rng.below(3)
    }

    fn node(&mut self, zone: ZoneId) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.zone == zone)
    }

    /// One step of everything: deliveries, the stores' answers, ticks, effects, the bots.
    fn step(&mut self) {
        self.step += 1;
        let (now, unix, step) = (self.now(), self.unix(), self.step);
        // Datagrams that arrive now (5% are lost).
        let mut later = VecDeque::new();
        while let Some((at, from, to, mut bytes)) = self.wire.pop_front() {
            if at > step {
                later.push_back((at, from, to, bytes));
                continue;
            }
            if self.rng.below(20) == 0 {
                continue;
            }
            if let Some(node) = self.nodes.iter_mut().find(|n| n.address == to) {
                node.host.handle_datagram(now, unix, from, &mut bytes);
            } else if let Some(bot) = self.bots.iter_mut().find(|b| b.address == to)
                && let Some(ClientEvent::Payload(data)) = bot.client.process(now, from, &mut bytes)
            {
                let _ = bot.session.handle_packet(data);
            }
        }
        self.wire = later;
        // Bus messages that arrive now (5% are lost).
        let mut later = VecDeque::new();
        while let Some((at, to, bytes)) = self.bus.pop_front() {
            if at > step {
                later.push_back((at, to, bytes));
                continue;
            }
            if self.rng.below(20) == 0 {
                continue;
            }
            let message = BusMessage::decode(&bytes).expect("what a host publishes decodes");
            if let Some(node) = self.node(to) {
                node.host.handle_bus(now, message);
            }
        }
        self.bus = later;
        self.answer_stores();
        self.flush();
        for i in 0..self.nodes.len() {
            self.nodes[i].host.tick(now, unix * 1_000);
        }
        self.run_effects();
        self.play_bots();
        self.check();
    }

    /// Loads asked for a step ago are answered; each claim waiting is answered with a chance
    /// of one in three per step (5% of them fail).
    fn answer_stores(&mut self) {
        let now = self.now();
        for i in 0..self.nodes.len() {
            let zone = self.nodes[i].zone;
            for request in std::mem::take(&mut self.nodes[i].loads) {
                let outcome = self.load(zone, request.player);
                self.nodes[i].host.handle_loaded(request.player, outcome);
            }
            let (now_due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.nodes[i].claims)
                .into_iter()
                .partition(|_| self.rng.below(3) == 0);
            self.nodes[i].claims = wait;
            for request in now_due {
                let result = if self.rng.below(20) == 0 {
                    Err(StoreError::Timeout(500))
                } else {
                    Ok(self.claim(zone, request.player, request.expect, request.floor))
                };
                self.nodes[i].host.handle_claimed(now, request, result);
            }
        }
    }

    fn claim(
        &mut self,
        zone: ZoneId,
        player: PlayerId,
        expect: Option<Owner>,
        floor: u64,
    ) -> Claim {
        let current = self.ledger.get(&player).copied();
        if !claim_allowed(current, expect, zone) {
            return Claim::Lost(current);
        }
        let owner = Owner {
            zone,
            epoch: next_epoch(current, expect, floor),
        };
        self.ledger.insert(player, owner);
        Claim::Won(owner)
    }

    /// A login: the newest durable save (or this zone's own unflushed one), claimed
    /// unconditionally; a former holder elsewhere is told to evict.
    fn load(&mut self, zone: ZoneId, player: PlayerId) -> LoadOutcome {
        let node = self.nodes.iter().find(|n| n.zone == zone).unwrap();
        let local = node
            .spool
            .iter()
            .filter_map(|(r, _)| match r {
                Record::PlayerSave(s) if s.player == player => Some(s.state),
                _ => None,
            })
            .max_by_key(|s| s.version);
        let found = [local, self.cold.get(&player).copied()]
            .into_iter()
            .flatten()
            .max_by_key(|s| s.version);
        let before = self.ledger.get(&player).copied();
        let floor = found.map_or(0, |s| s.epoch());
        let Claim::Won(owner) = self.claim(zone, player, None, floor) else {
            unreachable!("an unconditional claim wins");
        };
        if let Some(old) = before.filter(|o| o.zone != zone) {
            let evict = BusMessage::Evict {
                from: zone,
                to: old.zone,
                player,
                epoch: owner.epoch,
            };
            let at = self.step + self.latency();
            self.bus.push_back((at, old.zone, evict.encode().unwrap()));
        }
        match found {
            Some(state) => LoadOutcome::Found {
                stored: StoredPlayer {
                    state: state.claimed(owner.epoch),
                    profile: None,
                },
                source: LoadSource::Cold,
            },
            None => LoadOutcome::New { epoch: owner.epoch },
        }
    }

    /// Records appended at least two steps ago are durable (the cold store gets the saves);
    /// every fifth step the disk is slow and nothing becomes durable.
    fn flush(&mut self) {
        if self.step.is_multiple_of(5) {
            return;
        }
        for node in &mut self.nodes {
            let before = node.durable;
            while node
                .spool
                .get(node.durable)
                .is_some_and(|(_, at)| at + 2 <= self.step)
            {
                if let (Record::PlayerSave(s), _) = &node.spool[node.durable] {
                    let newest = self.cold.entry(s.player).or_insert(s.state);
                    if s.state.version > newest.version {
                        *newest = s.state;
                    }
                }
                node.durable += 1;
            }
            if node.durable > before {
                node.host.handle_flushed(node.durable as u64);
            }
        }
    }

    /// Carries out what every host asked for, until none asks for more.
    fn run_effects(&mut self) {
        let (step, unix) = (self.step, self.unix());
        for i in 0..self.nodes.len() {
            while let Some(effect) = self.nodes[i].host.poll_effect() {
                match effect {
                    Effect::Spool(record) => self.nodes[i].spool.push((record, step)),
                    Effect::Hot(_) => {}
                    Effect::Publish { to, message } => {
                        if let BusMessage::Transfer { player, state, .. } = &message {
                            self.transfers += 1;
                            let durable = self.nodes[i].spool[..self.nodes[i].durable].iter().any(
                                |(r, _)| {
                                    matches!(r, Record::PlayerSave(s)
                                    if s.player == *player && s.state.version >= state.version)
                                },
                            );
                            assert!(
                                durable,
                                "step {step}: zone {} transfers player {} before its save is durable",
                                self.nodes[i].zone.0, player.0
                            );
                        }
                        let at = step + self.latency();
                        self.bus.push_back((at, to, message.encode().unwrap()));
                    }
                    Effect::Load(request) => self.nodes[i].loads.push(request),
                    Effect::Claim(request) => self.nodes[i].claims.push(request),
                    Effect::Redirect(request) => {
                        let token = mint(&mut self.rng, &request.token, unix);
                        self.nodes[i].host.handle_redirect_token(
                            request.player,
                            Ok(RedirectToken {
                                to: request.to,
                                address: request.address,
                                token: Box::new(token),
                            }),
                        );
                    }
                }
            }
            let from = self.nodes[i].address;
            let (rng, wire) = (&mut self.rng, &mut self.wire);
            self.nodes[i].host.drain_datagrams(|t| {
                let (to, bytes) = (t.destination, t.payload.to_vec());
                let at = step + 1 + rng.below(2);
                wire.push_back((at, from, to, bytes));
            });
        }
    }

    /// Every bot reads what it got, follows a redirect, walks to its waypoint and sends.
    fn play_bots(&mut self) {
        let (now, step, flooder) = (self.now(), self.step, self.flooder);
        for b in 0..self.bots.len() {
            let mut redirect = None;
            {
                let bot = &mut self.bots[b];
                while let Some(ev) = bot.client.poll_event() {
                    if let ClientEvent::Payload(data) = ev {
                        let _ = bot.session.handle_packet(data);
                    }
                }
                while let Some(ev) = bot.session.poll_event() {
                    if let GameEvent::Redirect(r) = ev {
                        redirect = Some(r);
                    }
                }
            }
            if let Some(r) = redirect {
                let bot = &mut self.bots[b];
                let _ = bot.client.disconnect();
                while let Some(t) = bot.client.poll_transmit() {
                    self.wire
                        .push_back((step + 1, bot.address, t.destination, t.payload.to_vec()));
                }
                bot.client = Client::new(now, &r.token[..]);
                bot.session = ClientSession::new(bot.player);
                bot.chat_seq = 0;
                bot.redirects += 1;
            }
            self.relogin(b);
            let me = {
                let s = &self.bots[b].session;
                s.entity().and_then(|id| s.entity_state(id)).copied()
            };
            if let Some(me) = me {
                let at = self.bots[b].session.position_vec(&me);
                if at.distance(self.bots[b].waypoint) < 2.0 || self.rng.below(900) == 0 {
                    self.bots[b].waypoint = self.waypoint();
                }
                let bot = &mut self.bots[b];
                if let Some(z) = bot.session.zone()
                    && bot.zones.last() != Some(&z)
                {
                    bot.zones.push(z);
                }
                if bot.client.state() == ClientState::Connected {
                    let dir = (bot.waypoint - at).normalize_or_zero();
                    let input = PlayerInput::movement(0, bot.session.newest_tick() + 1, dir, true);
                    bot.session.push_input(input);
                    let mut out = Vec::with_capacity(1200);
                    bot.session.write_packet(&mut out);
                    let _ = bot.client.send_payload(&out);
                    if flooder == Some(b) {
                        // Seven more packets a tick, each with 64 new chats (the most a
                        // packet may carry), as the attack sent them.
                        for _ in 0..7 {
                            let packet = ClientPacket {
                                ack_tick: bot.session.newest_tick(),
                                reliable_first: bot.chat_seq,
                                reliable: (0..64)
                                    .map(|_| ClientMessage::Chat {
                                        text: "spam".into(),
                                    })
                                    .collect(),
                                ..ClientPacket::default()
                            };
                            bot.chat_seq = bot.chat_seq.wrapping_add(64);
                            out.clear();
                            packet.encode(&mut out);
                            let _ = bot.client.send_payload(&out);
                        }
                    }
                }
            }
            let bot = &mut self.bots[b];
            bot.client.update(now);
            let from = bot.address;
            let mut sends = Vec::new();
            while let Some(t) = bot.client.poll_transmit() {
                sends.push((t.destination, t.payload.to_vec()));
            }
            for (to, bytes) in sends {
                let at = step + 1 + self.rng.below(2);
                self.wire.push_back((at, from, to, bytes));
            }
        }
    }

    /// A bot whose connection ended (let go by a handoff that was given up, or timed out)
    /// logs in again a second later, at the zone the ledger names, as a game client asking
    /// its login service would.
    fn relogin(&mut self, b: usize) {
        let (now, step, unix) = (self.now(), self.step, self.unix());
        let state = self.bots[b].client.state();
        if !(state == ClientState::Disconnected || state.is_error()) {
            self.bots[b].down_since = None;
            return;
        }
        let since = *self.bots[b].down_since.get_or_insert(step);
        if step < since + 60 {
            return;
        }
        let player = self.bots[b].player;
        let zone = self
            .ledger
            .get(&player)
            .map_or(ZoneId(1 + (player.0 % 4) as u32), |o| o.zone);
        let Some(server) = self
            .nodes
            .iter()
            .find(|n| n.zone == zone)
            .map(|n| n.address)
        else {
            return;
        };
        let token = login(&mut self.rng, player, server, unix);
        let bot = &mut self.bots[b];
        bot.client = Client::new(now, &token);
        bot.session = ClientSession::new(player);
        bot.chat_seq = 0;
        bot.logins += 1;
        bot.down_since = None;
    }

    /// The invariants, after every step.
    fn check(&self) {
        let step = self.step;
        let mut holders: BTreeMap<PlayerId, Vec<(ZoneId, PlayerState)>> = BTreeMap::new();
        for node in &self.nodes {
            if let Err(e) = node.host.check_invariants() {
                panic!("step {step}: zone {}: {e}", node.zone.0);
            }
            for (player, _) in node.host.zone().players() {
                let state = node.host.zone().player_state(player).unwrap();
                holders.entry(player).or_default().push((node.zone, state));
            }
        }
        for (player, held) in &holders {
            assert!(
                held.len() == 1,
                "step {step}: player {} held by zones {:?}",
                player.0,
                held.iter().map(|(z, _)| z.0).collect::<Vec<_>>()
            );
            let (zone, state) = held[0];
            assert_eq!(
                self.ledger.get(player),
                Some(&Owner {
                    zone,
                    epoch: state.epoch()
                }),
                "step {step}: player {} held by zone {} under epoch {}, not what the ledger says",
                player.0,
                zone.0,
                state.epoch()
            );
            if let Some(durable) = self.cold.get(player) {
                assert!(
                    state.version >= durable.version,
                    "step {step}: player {} held at version {} below the durable {}",
                    player.0,
                    state.version,
                    durable.version
                );
            }
        }
    }
}

#[test]
fn a_2x2_world_of_hosts_keeps_every_player_in_one_place_at_every_step() {
    let mut totals = (0, 0, 0);
    for seed in [1, 2, 3, 4] {
        let mut world = World::new(seed);
        // Two simulated minutes.
        for _ in 0..(120 * 60) {
            world.step();
        }
        let accepted: u64 = world
            .nodes
            .iter()
            .map(|n| n.host.handoff_stats().accepted)
            .sum();
        let recalled: u64 = world
            .nodes
            .iter()
            .map(|n| n.host.handoff_stats().recalled)
            .sum();
        let redirects: u32 = world.bots.iter().map(|b| b.redirects).sum();
        let logins: u32 = world.bots.iter().map(|b| b.logins).sum();
        let illegal: u64 = world
            .nodes
            .iter()
            .map(|n| n.host.stats().illegal_transitions)
            .sum();
        let visited: usize = world.bots.iter().map(|b| b.zones.len()).max().unwrap();
        eprintln!(
            "seed {seed}: transfers {}, accepted {accepted}, recalled {recalled}, redirects {redirects}, logins {logins}, most zones visited by a bot {visited}",
            world.transfers
        );
        assert_eq!(illegal, 0);
        assert!(
            world.bots.iter().all(|b| !b.zones.is_empty()),
            "every bot played"
        );
        totals.0 += accepted;
        totals.1 += recalled;
        totals.2 += u64::from(redirects);
        assert!(visited >= 2, "bots roamed the world: {visited}");
    }
    let (accepted, recalled, redirects) = totals;
    assert!(accepted >= 50, "handoffs happened: {accepted}");
    assert!(recalled >= 10, "recalls raced the claims: {recalled}");
    assert!(redirects >= 50, "clients followed redirects: {redirects}");
}

/// The border-chat flood of issue 23, sans-IO: one bot fills every packet it sends with chat
/// while the others roam and are handed over. Each speaker is rate limited and chat stops
/// short of the reserve for control messages, so every redirect fits its client's queue and
/// every handed-over client arrives. (Before, the flood filled the neighbours' 256-entry
/// queues, their redirects were dropped, and they were disconnected at the redirect timeout.)
#[test]
fn a_chat_flood_does_not_cost_a_neighbour_its_redirect() {
    let (mut limited, mut accepted) = (0, 0);
    for seed in [5, 6] {
        let mut world = World::new(seed);
        world.flooder = Some(0);
        for _ in 0..(60 * 60) {
            world.step();
        }
        for n in &world.nodes {
            let r = n.host.replication_metrics();
            assert_eq!(
                r.control_dropped, 0,
                "zone {}: a control message was dropped",
                n.zone
            );
            limited += r.chats_limited;
            accepted += n.host.handoff_stats().accepted;
            let expired = n
                .host
                .stats()
                .handoffs
                .get(&zone_shell::host::HandoffEvent::ArrivalExpired)
                .copied()
                .unwrap_or(0);
            assert_eq!(
                expired, 0,
                "zone {}: a handed-over client never arrived",
                n.zone
            );
        }
    }
    assert!(limited > 1_000, "the flood was limited: {limited}");
    assert!(
        accepted >= 10,
        "handoffs happened under the flood: {accepted}"
    );
}
