//! The receiving side of a handoff, sans-IO: a zone host fed bus messages and ledger answers by
//! hand. It claims only what it can take, conditionally on the sender's ownership; joins and
//! spools the player under the new epoch once the claim is won; answers a repeated transfer
//! again without claiming twice; refuses what it cannot take.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use zone_core::netcode::Key;
use zone_core::world::WorldGrid;
use zone_core::{PlayerId, PlayerState, Zone, ZoneId};
use zone_shell::host::{BusOp, ClaimPurpose, HostConfig, ZoneHost};
use zone_shell::metrics::Metrics;
use zone_shell::persist::{Claim, Owner, Record, StoreError};
use zone_shell::world::WorldPlace;
use zone_shell::world::bus::{BusMessage, RefuseReason};

const ME: u32 = 2;

fn host() -> (ZoneHost, SocketAddr) {
    let grid = WorldGrid::of_tiles(2, 1, 32, 1).unwrap();
    let public: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let zone = Zone::new(grid.zone_config(ZoneId(ME), 0).unwrap(), 1).unwrap();
    let config = HostConfig {
        protocol_id: 1,
        public_addresses: vec![public],
        max_clients: 8,
        max_packets_per_client_tick: 8,
        run: 1,
        fence: 3,
        global_sequence_random: [1; 8],
        world: Some(WorldPlace::new(grid, ZoneId(ME), public)),
    };
    let host = ZoneHost::new(
        zone,
        &config,
        Key::from_bytes([1; 32]),
        Key::from_bytes([2; 32]),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    (host, public)
}

fn transfer(player: u64, state: PlayerState) -> BusMessage {
    BusMessage::Transfer {
        handoff: 9,
        from: 1,
        to: ME,
        player: PlayerId(player),
        state,
        epoch: state.epoch(),
    }
}

fn ops(host: &mut ZoneHost) -> Vec<BusOp> {
    let mut v = Vec::new();
    host.swap_bus_ops(&mut v);
    v.into_iter()
        .filter(|op| {
            !matches!(
                op,
                BusOp::Publish {
                    message: BusMessage::Ghosts { .. },
                    ..
                }
            )
        })
        .collect()
}

#[test]
fn a_transfer_is_claimed_on_condition_joined_under_the_new_epoch_and_answered() {
    let (mut host, public) = host();
    let now = Duration::from_secs(1);
    // Just over the border, inside zone 2 (x from 32).
    let state = PlayerState::new_character(33.0, 10.0, 80).claimed(5);
    host.handle_bus(now, transfer(7, state));
    let ops1 = ops(&mut host);
    let [BusOp::Claim(request)] = ops1.as_slice() else {
        panic!("one claim expected: {ops1:?}");
    };
    assert_eq!(
        request.expect,
        Some(Owner { zone: 1, epoch: 5 }),
        "conditional on the sender"
    );
    assert_eq!(
        request.purpose,
        ClaimPurpose::Accept {
            handoff: 9,
            from: 1
        }
    );
    // Repeated while the claim is out: nothing new.
    host.handle_bus(now, transfer(7, state));
    assert!(ops(&mut host).is_empty());

    host.complete_claim(now, *request, Ok(Claim::Won(Owner { zone: ME, epoch: 6 })));
    let answer = ops(&mut host);
    assert_eq!(
        answer,
        [BusOp::Publish {
            to: 1,
            message: BusMessage::Accepted {
                handoff: 9,
                from: 1,
                to: ME,
                player: PlayerId(7),
                epoch: 6,
                address: public,
            }
        }]
    );
    let held = host
        .zone()
        .player_state(PlayerId(7))
        .expect("joined at once");
    assert_eq!((held.x, held.y, held.health), (33.0, 10.0, 80));
    assert_eq!(held.epoch(), 6);
    let mut records = Vec::new();
    host.swap_records(&mut records);
    assert!(
        records.iter().any(|r| matches!(r, Record::PlayerSave(s)
            if s.player == PlayerId(7) && s.state.epoch() == 6 && s.zone == ME)),
        "spooled under the new epoch: {records:?}"
    );
    // The sender did not hear us: the same transfer again gets the same answer, no claim.
    host.handle_bus(now, transfer(7, state));
    assert_eq!(ops(&mut host), answer);
    assert_eq!(host.handoff_stats().taken, 1);
    assert_eq!(host.handoff_stats().in_flight, 1, "awaiting its client");
}

#[test]
fn what_cannot_be_taken_is_refused_and_a_lost_claim_says_so() {
    let (mut host, _) = host();
    let now = Duration::ZERO;
    let refused = |ops: Vec<BusOp>| -> Vec<RefuseReason> {
        ops.into_iter()
            .filter_map(|op| match op {
                BusOp::Publish {
                    message: BusMessage::Refused { reason, .. },
                    ..
                } => Some(reason),
                _ => None,
            })
            .collect()
    };
    let mut too_healthy = PlayerState::new_character(33.0, 10.0, 100);
    too_healthy.health = 60_000;
    host.handle_bus(now, transfer(1, too_healthy));
    assert_eq!(refused(ops(&mut host)), [RefuseReason::BadState]);
    let far = PlayerState::new_character(5.0, 10.0, 100);
    host.handle_bus(now, transfer(2, far));
    assert_eq!(
        refused(ops(&mut host)),
        [RefuseReason::BadState],
        "nowhere near zone 2"
    );
    let mut wrong_zone = transfer(3, PlayerState::new_character(33.0, 1.0, 1));
    if let BusMessage::Transfer { to, .. } = &mut wrong_zone {
        *to = 5;
    }
    host.handle_bus(now, wrong_zone);
    assert!(ops(&mut host).is_empty(), "not for this zone: ignored");

    for (player, result, reason) in [
        (
            4,
            Ok(Claim::Lost(Some(Owner { zone: 9, epoch: 2 }))),
            RefuseReason::Ledger,
        ),
        (5, Err(StoreError::Timeout(500)), RefuseReason::Store),
    ] {
        host.handle_bus(
            now,
            transfer(player, PlayerState::new_character(33.0, 5.0, 10)),
        );
        let [BusOp::Claim(req)] = ops(&mut host)[..] else {
            panic!("a claim");
        };
        host.complete_claim(now, req, result);
        assert_eq!(refused(ops(&mut host)), [reason]);
        assert!(
            host.zone().player_state(PlayerId(player)).is_none(),
            "not joined"
        );
    }
    host.shutdown();
    host.handle_bus(now, transfer(6, PlayerState::new_character(33.0, 5.0, 10)));
    assert_eq!(refused(ops(&mut host)), [RefuseReason::NotAccepting]);
}

#[test]
fn a_login_elsewhere_evicts_an_older_copy_and_only_an_older_one() {
    let (mut host, _) = host();
    let now = Duration::ZERO;
    let state = PlayerState::new_character(33.0, 10.0, 80).claimed(5);
    host.handle_bus(now, transfer(7, state));
    let [BusOp::Claim(req)] = ops(&mut host)[..] else {
        panic!("a claim");
    };
    host.complete_claim(now, req, Ok(Claim::Won(Owner { zone: ME, epoch: 6 })));
    let _ = ops(&mut host);
    let mut records = Vec::new();
    host.swap_records(&mut records);
    let evict = |epoch| BusMessage::Evict {
        from: 1,
        to: ME,
        player: PlayerId(7),
        epoch,
    };
    host.handle_bus(now, evict(6));
    assert!(
        host.zone().player_state(PlayerId(7)).is_some(),
        "not older: kept"
    );
    host.handle_bus(now, evict(7));
    assert!(
        host.zone().player_state(PlayerId(7)).is_none(),
        "older copy dropped"
    );
    assert_eq!(host.handoff_stats().in_flight, 0, "no longer awaited");
    records.clear();
    host.swap_records(&mut records);
    assert!(
        records.is_empty(),
        "dropped unsaved: the new holder's writes rank above"
    );
}
