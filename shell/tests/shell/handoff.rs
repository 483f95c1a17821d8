//! The receiving side of a handoff, sans-IO: a zone host fed bus messages and ledger answers by
//! hand. It claims only what it can take, conditionally on the sender's ownership; joins and
//! spools the player under the new epoch once the claim is won; answers a repeated transfer
//! again without claiming twice; refuses what it cannot take.

use std::net::SocketAddr;
use std::time::Duration;

use zone_core::netcode::Key;
use zone_core::world::WorldGrid;
use zone_core::{PlayerId, PlayerState, Zone, ZoneId};
use zone_shell::effects::Effect;
use zone_shell::host::{ClaimPurpose, HostConfig, ZoneHost};
use zone_shell::persist::{Claim, Owner, Record, StoreError};
use zone_shell::world::WorldPlace;
use zone_shell::world::bus::{BusMessage, RefuseReason};

const ME: ZoneId = ZoneId(2);
const FROM: ZoneId = ZoneId(1);

/// A host and what it spooled so far.
struct Probe {
    host: ZoneHost,
    records: Vec<Record>,
    spooled: u64,
}

impl Probe {
    /// The bus messages (ghosts left out) and claims asked for since the last call; records
    /// are kept for [`Probe::take_records`] and made durable at once.
    fn ops(&mut self) -> Vec<Effect> {
        let mut ops = Vec::new();
        while let Some(effect) = self.host.poll_effect() {
            match effect {
                Effect::Spool(r) => {
                    self.records.push(r);
                    self.spooled += 1;
                }
                Effect::Publish {
                    message: BusMessage::Ghosts { .. },
                    ..
                }
                | Effect::Hot(_) => {}
                other => ops.push(other),
            }
        }
        self.host.handle_flushed(self.spooled);
        ops
    }

    fn take_records(&mut self) -> Vec<Record> {
        let _ = self.ops();
        std::mem::take(&mut self.records)
    }
}

fn host() -> (ZoneHost, SocketAddr) {
    let grid = WorldGrid::of_tiles(2, 1, 32, 1).unwrap();
    let public: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let zone = Zone::new(grid.zone_config(ME, 0).unwrap(), 1).unwrap();
    let config = HostConfig {
        protocol_id: 1,
        public_addresses: vec![public],
        max_clients: 8,
        max_packets_per_client_tick: 8,
        run: 1,
        fence: 3,
        global_sequence_random: [1; 8],
        world: Some(WorldPlace::new(grid, ME, public)),
        snapshot_interval: 1,
    };
    let host = ZoneHost::new(
        zone,
        &config,
        Key::from_bytes([1; 32]),
        Key::from_bytes([2; 32]),
    )
    .unwrap();
    (host, public)
}

fn transfer(player: u64, state: PlayerState) -> BusMessage {
    BusMessage::Transfer {
        handoff: 9,
        from: FROM,
        to: ME,
        player: PlayerId(player),
        state,
        epoch: state.epoch(),
    }
}

#[test]
fn a_transfer_is_claimed_on_condition_joined_under_the_new_epoch_and_answered() {
    let (host, public) = host();
    let mut t = Probe {
        host,
        records: Vec::new(),
        spooled: 0,
    };
    let now = Duration::from_secs(1);
    // Just over the border, inside zone 2 (x from 32).
    let state = PlayerState::new_character(33.0, 10.0, 80).claimed(5);
    t.host.handle_bus(now, transfer(7, state));
    let ops1 = t.ops();
    let [Effect::Claim(request)] = ops1.as_slice() else {
        panic!("one claim expected: {ops1:?}");
    };
    assert_eq!(
        request.expect,
        Some(Owner {
            zone: ZoneId(1),
            epoch: 5
        }),
        "conditional on the sender"
    );
    assert_eq!(
        request.purpose,
        ClaimPurpose::Accept {
            handoff: 9,
            from: FROM
        }
    );
    // Repeated while the claim is out: nothing new.
    t.host.handle_bus(now, transfer(7, state));
    assert!(t.ops().is_empty());

    t.host
        .handle_claimed(now, *request, Ok(Claim::Won(Owner { zone: ME, epoch: 6 })));
    let answer = t.ops();
    assert_eq!(
        answer,
        [Effect::Publish {
            to: FROM,
            message: BusMessage::Accepted {
                handoff: 9,
                from: FROM,
                to: ME,
                player: PlayerId(7),
                epoch: 6,
                address: public,
            }
        }]
    );
    let held = t
        .host
        .zone()
        .player_state(PlayerId(7))
        .expect("joined at once");
    assert_eq!((held.x, held.y, held.health), (33.0, 10.0, 80));
    assert_eq!(held.epoch(), 6);
    let records = t.take_records();
    assert!(
        records.iter().any(|r| matches!(r, Record::PlayerSave(s)
            if s.player == PlayerId(7) && s.state.epoch() == 6 && s.zone == ME)),
        "spooled under the new epoch: {records:?}"
    );
    // The sender did not hear us: the same transfer again gets the same answer, no claim.
    t.host.handle_bus(now, transfer(7, state));
    assert_eq!(t.ops(), answer);
    assert_eq!(t.host.handoff_stats().taken, 1);
    assert_eq!(t.host.handoff_stats().in_flight, 1, "awaiting its client");
}

#[test]
fn what_cannot_be_taken_is_refused_and_a_lost_claim_says_so() {
    let (host, _) = host();
    let mut t = Probe {
        host,
        records: Vec::new(),
        spooled: 0,
    };
    let now = Duration::ZERO;
    let refused = |ops: Vec<Effect>| -> Vec<RefuseReason> {
        ops.into_iter()
            .filter_map(|op| match op {
                Effect::Publish {
                    message: BusMessage::Refused { reason, .. },
                    ..
                } => Some(reason),
                _ => None,
            })
            .collect()
    };
    let mut too_healthy = PlayerState::new_character(33.0, 10.0, 100);
    too_healthy.health = 60_000;
    t.host.handle_bus(now, transfer(1, too_healthy));
    assert_eq!(refused(t.ops()), [RefuseReason::BadState]);
    let far = PlayerState::new_character(5.0, 10.0, 100);
    t.host.handle_bus(now, transfer(2, far));
    assert_eq!(
        refused(t.ops()),
        [RefuseReason::BadState],
        "nowhere near zone 2"
    );
    let mut wrong_zone = transfer(3, PlayerState::new_character(33.0, 1.0, 1));
    if let BusMessage::Transfer { to, .. } = &mut wrong_zone {
        *to = ZoneId(5);
    }
    t.host.handle_bus(now, wrong_zone);
    assert!(t.ops().is_empty(), "not for this zone: ignored");

    for (player, result, reason) in [
        (
            4,
            Ok(Claim::Lost(Some(Owner {
                zone: ZoneId(9),
                epoch: 2,
            }))),
            RefuseReason::Ledger,
        ),
        (5, Err(StoreError::Timeout(500)), RefuseReason::Store),
    ] {
        t.host.handle_bus(
            now,
            transfer(player, PlayerState::new_character(33.0, 5.0, 10)),
        );
        let [Effect::Claim(req)] = t.ops()[..] else {
            panic!("a claim");
        };
        t.host.handle_claimed(now, req, result);
        assert_eq!(refused(t.ops()), [reason]);
        assert!(
            t.host.zone().player_state(PlayerId(player)).is_none(),
            "not joined"
        );
    }
    t.host.shutdown();
    t.host
        .handle_bus(now, transfer(6, PlayerState::new_character(33.0, 5.0, 10)));
    assert_eq!(refused(t.ops()), [RefuseReason::NotAccepting]);
}

#[test]
fn a_login_elsewhere_evicts_an_older_copy_and_only_an_older_one() {
    let (host, _) = host();
    let mut t = Probe {
        host,
        records: Vec::new(),
        spooled: 0,
    };
    let now = Duration::ZERO;
    let state = PlayerState::new_character(33.0, 10.0, 80).claimed(5);
    t.host.handle_bus(now, transfer(7, state));
    let [Effect::Claim(req)] = t.ops()[..] else {
        panic!("a claim");
    };
    t.host
        .handle_claimed(now, req, Ok(Claim::Won(Owner { zone: ME, epoch: 6 })));
    let _ = t.ops();
    let _ = t.take_records();
    let evict = |epoch| BusMessage::Evict {
        from: FROM,
        to: ME,
        player: PlayerId(7),
        epoch,
    };
    t.host.handle_bus(now, evict(6));
    assert!(
        t.host.zone().player_state(PlayerId(7)).is_some(),
        "not older: kept"
    );
    t.host.handle_bus(now, evict(7));
    assert!(
        t.host.zone().player_state(PlayerId(7)).is_none(),
        "older copy dropped"
    );
    assert_eq!(t.host.handoff_stats().in_flight, 0, "no longer awaited");
    let records = t.take_records();
    assert!(
        records.is_empty(),
        "dropped unsaved: the new holder's writes rank above"
    );
}

/// Defence in depth behind the bus seal (issue 23): a zone takes handoffs, answers and ghosts
/// only from its neighbours, and an epoch that cannot be a version's is refused.
#[test]
fn strangers_and_impossible_epochs_are_refused() {
    use zone_shell::host::HandoffEvent;
    let (host, _) = host();
    let mut t = Probe {
        host,
        records: Vec::new(),
        spooled: 0,
    };
    let now = Duration::ZERO;
    let stranger = ZoneId(77);
    let mut from_stranger = transfer(1, PlayerState::new_character(33.0, 5.0, 10));
    if let BusMessage::Transfer { from, .. } = &mut from_stranger {
        *from = stranger;
    }
    t.host.handle_bus(now, from_stranger);
    t.host.handle_bus(
        now,
        BusMessage::Ghosts {
            from: stranger,
            to: ME,
            tick: 1,
            entities: Vec::new(),
        },
    );
    t.host.handle_bus(
        now,
        BusMessage::Evict {
            from: stranger,
            to: ME,
            player: PlayerId(1),
            epoch: 9,
        },
    );
    assert!(t.ops().is_empty(), "nothing claimed, answered or evicted");
    assert_eq!(
        t.host.stats().handoffs.get(&HandoffEvent::Stranger),
        Some(&3)
    );
    let mut huge = transfer(2, PlayerState::new_character(33.0, 5.0, 10));
    if let BusMessage::Transfer { epoch, .. } = &mut huge {
        *epoch = 1 << 40;
    }
    t.host.handle_bus(now, huge);
    let refused: Vec<_> = t
        .ops()
        .into_iter()
        .filter_map(|op| match op {
            Effect::Publish {
                message: BusMessage::Refused { reason, .. },
                ..
            } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [RefuseReason::BadState]);
}
