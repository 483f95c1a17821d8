//! Replication end to end, in memory: zone + replicator on one side, client sessions on the
//! other, joined by lossy links. After the network heals every client sees exactly the server's
//! quantized state of what it should see; inputs arrive once and in order; packets fit the budget.

#![allow(clippy::unwrap_used)]

mod testkit;

use std::collections::{BTreeMap, BTreeSet};

use testkit::{LossyLink, busy_zone};
use zone_core::client::{ClientEvent, ClientSession};
use zone_core::protocol::{ClientPacket, MAX_PACKET, NetEntity, ServerMessage};
use zone_core::replication::{ReplicationConfig, Replicator};
use zone_core::rng::{self, Purpose};
use zone_core::{EntityId, InputError, PlayerId, PlayerInput, Vec2, Zone};

/// The quantized world at one tick and every client's visible set then.
type TickRecord = (Vec<NetEntity>, BTreeMap<PlayerId, Vec<EntityId>>);

struct Harness {
    zone: Zone,
    rep: Replicator,
    clients: Vec<(ClientSession, LossyLink, LossyLink)>,
    seed: u64,
    pushed: u64,
    delivered_inputs: BTreeSet<(u64, u32)>,
    stale_rejections: u64,
    apply_errors: u64,
    max_packet: usize,
    /// Per tick: the quantized world and every client's visible set.
    history: BTreeMap<u64, TickRecord>,
}

impl Harness {
    fn new(
        seed: u64,
        players: u32,
        npcs: u32,
        size: u32,
        config: ReplicationConfig,
        links: impl Fn(u64) -> (LossyLink, LossyLink),
    ) -> Self {
        let (zone, script) = busy_zone(seed, players, npcs, size);
        let mut rep = Replicator::new(config, zone.map().size());
        let mut clients = Vec::new();
        for p in script.players() {
            assert!(rep.connect(&zone, p.player));
            let (up, down) = links(p.player.0);
            clients.push((ClientSession::new(p.player), up, down));
        }
        Self {
            zone,
            rep,
            clients,
            seed,
            pushed: 0,
            delivered_inputs: BTreeSet::new(),
            stale_rejections: 0,
            apply_errors: 0,
            max_packet: 0,
            history: BTreeMap::new(),
        }
    }

    /// One tick: clients send, server receives + ticks + replicates, clients receive.
    fn step(&mut self) {
        let now = self.zone.current_tick();
        for (client, up, _) in &mut self.clients {
            let mut d = rng::stream(self.seed, client.player().0, now, Purpose::Script);
            let a = d.range(0.0, std::f32::consts::TAU);
            let dir = if d.below(4) == 0 {
                Vec2::ZERO
            } else {
                Vec2::new(a.cos(), a.sin())
            };
            client.push_input(PlayerInput::movement(0, now, dir, d.below(2) == 0));
            self.pushed += 1;
            let mut buf = Vec::new();
            client.write_packet(&mut buf);
            up.send(now, &buf);
        }
        for (client, up, _) in &mut self.clients {
            for bytes in up.receive(now) {
                for i in &ClientPacket::decode(&bytes).unwrap().inputs {
                    self.delivered_inputs.insert((client.player().0, i.seq));
                }
                self.rep
                    .handle_packet(&mut self.zone, client.player(), &bytes)
                    .unwrap();
            }
        }
        let out = self.zone.tick();
        self.stale_rejections += u64::from(out.metrics.inputs_rejected[InputError::Stale.index()]);
        self.rep.update(&self.zone);
        let now = self.zone.current_tick();
        let visible = self
            .clients
            .iter()
            .map(|(c, _, _)| (c.player(), self.rep.visible(c.player()).unwrap().to_vec()))
            .collect();
        self.history
            .insert(now, (self.rep.world().copied().collect(), visible));
        while self.history.len() > 80 {
            self.history.pop_first();
        }
        let packets: Vec<(PlayerId, Vec<u8>)> =
            self.rep.packets().map(|(p, b)| (p, b.to_vec())).collect();
        for ((player, bytes), (client, _, down)) in packets.iter().zip(&mut self.clients) {
            assert_eq!(*player, client.player());
            self.max_packet = self.max_packet.max(bytes.len());
            down.send(now, bytes);
        }
        for (client, _, down) in &mut self.clients {
            for bytes in down.receive(now) {
                if let Err(e) = client.handle_packet(&bytes) {
                    eprintln!("{:?}: packet refused: {e}", client.player());
                    self.apply_errors += 1;
                }
            }
        }
    }

    fn heal_and_settle(&mut self, ticks: usize) {
        for (_, up, down) in &mut self.clients {
            up.heal();
            down.heal();
        }
        for _ in 0..ticks {
            self.step();
        }
    }

    /// The server's quantized state, at `tick`, of everything `player` saw then.
    fn expected_view(&self, player: PlayerId, tick: u64) -> Vec<NetEntity> {
        let (world, visible) = &self.history[&tick];
        visible[&player]
            .iter()
            .map(|id| *world.iter().find(|e| e.id == *id).unwrap())
            .collect()
    }

    /// Every client's view equals the server's quantized state of what it sees, as of the
    /// newest snapshot it has, and that snapshot is recent.
    fn assert_views_match(&self, max_lag: u64) {
        for (client, _, _) in &self.clients {
            let t = client.newest_tick();
            assert!(
                t + max_lag >= self.zone.current_tick(),
                "{:?} lags: {t}",
                client.player()
            );
            let expected = self.expected_view(client.player(), t);
            assert!(!expected.is_empty());
            assert_same_view(client.player(), client.entities(), &expected);
            assert_same_view(
                client.player(),
                client.entities(),
                &self.rep.sent_view(client.player(), t).unwrap(),
            );
        }
    }

    /// How many ticks old the client's copy of each entity is, at worst.
    fn worst_staleness(&self) -> u64 {
        let mut worst = 0;
        for (client, _, _) in &self.clients {
            let t = client.newest_tick();
            for e in client.entities() {
                let age = (0..80u64)
                    .find(|a| {
                        self.history
                            .get(&(t.saturating_sub(*a)))
                            .is_some_and(|(w, _)| w.iter().any(|x| x == e))
                    })
                    .unwrap_or(80);
                if age >= 80 && std::env::var("DEBUG_STALE").is_ok() {
                    let vis = self.history[&t].1[&client.player()].contains(&e.id);
                    let now = self.history[&t].0.iter().find(|x| x.id == e.id);
                    eprintln!(
                        "{:?} t={t} stale {e:?} visible={vis} world={now:?}",
                        client.player()
                    );
                }
                worst = worst.max(age);
            }
        }
        worst
    }
}

/// Compares two views, reporting the first difference briefly.
fn assert_same_view(player: PlayerId, got: &[NetEntity], want: &[NetEntity]) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{player:?}: view differs (client has {}, server {}); first difference at {first}: {:?} vs {:?}",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first)
    );
}

fn lossy(seed: u64, loss: f32) -> impl Fn(u64) -> (LossyLink, LossyLink) {
    move |p| {
        (
            LossyLink::new(seed ^ (p << 1), loss, loss / 3.0, 2, 4),
            LossyLink::new(seed ^ (p << 1 | 1), loss, loss / 3.0, 2, 4),
        )
    }
}

fn converges_after_loss(loss: f32) {
    let mut h = Harness::new(
        21,
        24,
        400,
        128,
        ReplicationConfig::default(),
        lossy(99, loss),
    );
    for _ in 0..600 {
        h.step();
    }
    h.heal_and_settle(60);
    h.assert_views_match(3);
    assert_eq!(h.apply_errors, 0, "no packet refused by a client");
    // Inputs: fed to the zone once each and in order (the zone refuses anything not newer);
    // an input is only skipped if a newer one overtook it in flight.
    assert_eq!(h.stale_rejections, 0, "no input fed out of order or twice");
    let fed = h.rep.metrics().inputs_fed;
    assert!(fed <= h.delivered_inputs.len() as u64);
    assert!(
        h.delivered_inputs.len() as u64 + 3 * 24 >= h.pushed,
        "only the last few are in flight"
    );
    if loss == 0.0 {
        assert_eq!(
            fed,
            h.delivered_inputs.len() as u64,
            "a perfect link delivers every input in order"
        );
    } else {
        assert!(h.rep.metrics().inputs_redundant > 0);
        let delivered = h.delivered_inputs.len() as f64;
        assert!(
            fed as f64 >= delivered * 0.995,
            "redundancy recovers lost inputs: {fed} of {delivered}"
        );
    }
    assert!(h.max_packet <= MAX_PACKET);
}

#[test]
fn client_views_equal_server_state_with_no_loss() {
    converges_after_loss(0.0);
}

#[test]
fn client_views_equal_server_state_after_10pct_loss_reorder_and_duplication() {
    converges_after_loss(0.10);
}

#[test]
fn client_views_equal_server_state_after_30pct_loss_reorder_and_duplication() {
    converges_after_loss(0.30);
}

#[test]
fn deltas_are_much_smaller_than_full_snapshots() {
    let mut h = Harness::new(5, 24, 400, 128, ReplicationConfig::default(), lossy(3, 0.0));
    for _ in 0..300 {
        h.step();
    }
    let m0 = *h.rep.metrics();
    for _ in 0..300 {
        h.step();
    }
    let m = h.rep.metrics();
    let bytes_per_visible = (m.bytes - m0.bytes) as f64 / (m.visible - m0.visible) as f64;
    assert!(
        bytes_per_visible < 4.0,
        "{bytes_per_visible:.2} bytes per visible entity per tick"
    );
    assert_eq!(
        m.full_snapshots, m0.full_snapshots,
        "warm clients always have a baseline"
    );
}

#[test]
fn a_tight_budget_defers_changes_but_starves_nothing() {
    let config = ReplicationConfig {
        packet_budget: 300,
        ..ReplicationConfig::default()
    };
    let mut h = Harness::new(8, 16, 400, 96, config, lossy(4, 0.0));
    for _ in 0..200 {
        h.step();
    }
    assert!(h.rep.metrics().deferred > 0, "the budget really bound");
    assert!(h.max_packet <= 300, "{}", h.max_packet);
    assert_eq!(h.apply_errors, 0);
    // Nothing starves: every entity a client holds was current at most a few ticks ago.
    let worst = h.worst_staleness();
    eprintln!("worst staleness {worst} ticks");
    assert!(
        worst <= 60,
        "an entity went {worst} ticks without an update"
    );
}

#[test]
fn a_dense_crowd_stays_within_1200_bytes() {
    let mut h = Harness::new(
        13,
        300,
        300,
        40,
        ReplicationConfig::default(),
        lossy(5, 0.05),
    );
    for _ in 0..120 {
        h.step();
    }
    assert!(
        h.max_packet <= MAX_PACKET && h.max_packet > 1000,
        "{}",
        h.max_packet
    );
    assert!(h.rep.metrics().deferred > 0);
}

#[test]
fn welcome_chat_and_combat_log_arrive_reliably_through_loss() {
    let mut h = Harness::new(17, 12, 300, 64, ReplicationConfig::default(), lossy(6, 0.3));
    h.clients[0].0.send_chat("hello zone").unwrap();
    for _ in 0..400 {
        h.step();
    }
    h.heal_and_settle(30);
    let speaker = h.clients[0].0.player();
    let mut heard = 0;
    let mut hits = 0;
    for (client, _, _) in &mut h.clients {
        let mut welcomes = 0;
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Message(ServerMessage::Welcome { player, .. }) => {
                    assert_eq!(player, client.player());
                    welcomes += 1;
                }
                ClientEvent::Message(ServerMessage::Chat { from, text }) => {
                    assert_eq!((from, text.as_str()), (speaker, "hello zone"));
                    heard += 1;
                }
                ClientEvent::Message(ServerMessage::Hit { .. }) => hits += 1,
                _ => {}
            }
        }
        assert_eq!(welcomes, 1, "welcomed exactly once");
        assert!(client.entity().is_some());
    }
    assert!(heard >= 1, "the speaker at least hears itself");
    assert!(hits > 0, "combat log delivered");
}

#[test]
fn hostile_client_packets_are_refused_counted_and_harmless() {
    let mut h = Harness::new(19, 4, 50, 64, ReplicationConfig::default(), lossy(7, 0.0));
    for _ in 0..10 {
        h.step();
    }
    let hash = h.zone.state_hash();
    let victim = h.clients[0].0.player();
    let mut d = rng::stream(1, 2, 3, Purpose::Script);
    for n in 0..2_000usize {
        let len = (d.below(40) as usize) + n % 3;
        let mut junk: Vec<u8> = (0..len).map(|_| d.below(256) as u8).collect();
        if n % 2 == 0 && !junk.is_empty() {
            junk[0] = zone_core::protocol::PROTOCOL_VERSION;
        }
        let _ = h.rep.handle_packet(&mut h.zone, victim, &junk);
    }
    let oversized = vec![1u8; MAX_PACKET + 1];
    assert!(
        h.rep
            .handle_packet(&mut h.zone, victim, &oversized)
            .is_err()
    );
    let errors: u64 = h.rep.metrics().decode_errors.iter().sum();
    assert!(errors > 1_900, "{errors}");
    // An ack from the future is ignored and counted.
    let mut bogus = Vec::new();
    ClientPacket {
        ack_tick: u64::MAX,
        ..ClientPacket::default()
    }
    .encode(&mut bogus);
    h.rep.handle_packet(&mut h.zone, victim, &bogus).unwrap();
    assert!(h.rep.metrics().bogus_acks >= 1);
    assert!(
        h.rep
            .handle_packet(&mut h.zone, PlayerId(4242), &bogus)
            .is_err()
    );
    assert_eq!(h.zone.state_hash(), hash, "junk changed nothing");
    h.heal_and_settle(5);
    h.assert_views_match(3);
}

/// A chat flood next to a player never crowds out that player's control messages: each
/// speaker is rate limited, bulk traffic stops short of the reserve, and a redirect still
/// queues. (Before the limit and the reserve, 64 chats x 8 packets a tick filled a silent
/// neighbour's 256-entry queue in one tick and its redirect was dropped.)
#[test]
fn a_chat_flood_is_rate_limited_and_never_crowds_out_a_redirect() {
    use zone_core::protocol::{ClientMessage, redirect_messages};
    let config = ReplicationConfig::default();
    let (mut zone, script) = busy_zone(23, 41, 10, 24);
    let mut rep = Replicator::new(config.clone(), zone.map().size());
    let players: Vec<PlayerId> = script.players().iter().map(|p| p.player).collect();
    for &p in &players {
        assert!(rep.connect(&zone, p));
    }
    zone.tick();
    rep.update(&zone);
    let (victim, attackers) = (players[0], &players[1..]);
    assert!(
        attackers.iter().all(|a| rep
            .visible(victim)
            .unwrap()
            .contains(&zone.player_entity(*a).unwrap())),
        "every attacker is in the victim's view"
    );
    let ticks = 120u64;
    let mut next_seq = vec![0u16; attackers.len()];
    let mut sent = 0u64;
    for _ in 0..ticks {
        for (i, &a) in attackers.iter().enumerate() {
            for _ in 0..8 {
                let packet = ClientPacket {
                    reliable_first: next_seq[i],
                    reliable: (0..64)
                        .map(|_| ClientMessage::Chat {
                            text: "spam".into(),
                        })
                        .collect(),
                    ..ClientPacket::default()
                };
                next_seq[i] = next_seq[i].wrapping_add(64);
                let mut bytes = Vec::new();
                packet.encode(&mut bytes);
                rep.handle_packet(&mut zone, a, &bytes).unwrap();
                sent += 64;
            }
        }
        zone.tick();
        rep.update(&zone);
    }
    let m = *rep.metrics();
    let per_speaker =
        u64::from(config.chat_burst) + ticks / u64::from(config.chat_refill_ticks) + 1;
    let accepted = sent - m.chats_limited;
    assert!(
        accepted <= attackers.len() as u64 * per_speaker,
        "{accepted} chats accepted from {} speakers in {ticks} ticks",
        attackers.len()
    );
    assert!(m.reliable_dropped > 0, "the victim's bulk share filled up");
    // The victim acknowledged nothing, yet its redirect still queues, every part of it.
    let parts = redirect_messages(
        zone_core::ZoneId(2),
        "127.0.0.1:40001".parse().unwrap(),
        &[7u8; 2048],
    );
    for part in parts {
        assert!(
            rep.send_reliable(victim, part),
            "a redirect part was dropped"
        );
    }
    assert_eq!(rep.metrics().control_dropped, 0);
}
