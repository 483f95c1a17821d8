//! Conformance with netcode 1.02 `STANDARD.md`: byte layouts checked field by field against
//! the document (and, for ciphertexts, against an independent call into the AEAD crate),
//! sequence encoding, nonce and associated data, replay window, client state machine.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

mod netsim;

use std::net::{Ipv6Addr, SocketAddr};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag, XChaCha20Poly1305, XNonce};
use netsim::*;
use zone_core::netcode::crypto::{packet_associated_data, packet_nonce, token_associated_data};
use zone_core::netcode::packet::{read_header, read_packet, write_packet};
use zone_core::netcode::sequence::{encode_prefix, sequence_bytes_required};
use zone_core::netcode::*;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

struct Fixture {
    addrs: Vec<SocketAddr>,
    c2s: [u8; 32],
    s2c: [u8; 32],
    user: [u8; 256],
    nonce: [u8; 24],
    token: ConnectToken,
}

fn fixture() -> Fixture {
    let addrs: Vec<SocketAddr> = vec![
        "203.0.113.7:40000".parse().unwrap(),
        SocketAddr::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6).into(),
            41000,
        ),
    ];
    let c2s = [0x11; 32];
    let s2c = [0x22; 32];
    let mut user = [0u8; 256];
    for (i, b) in user.iter_mut().enumerate() {
        *b = i as u8;
    }
    let nonce: [u8; 24] = core::array::from_fn(|i| 0xA0 + i as u8);
    let token = ConnectToken::generate(
        &ConnectTokenParams {
            protocol_id: 0x1122_3344_5566_7788,
            create_timestamp: 1_000,
            expire_timestamp: 1_030,
            timeout_seconds: -1,
            client_id: 0xDEAD_BEEF_0000_0001,
            server_addresses: &addrs,
            client_to_server_key: Key::from_bytes(c2s),
            server_to_client_key: Key::from_bytes(s2c),
            user_data: user,
            nonce,
        },
        &private_key(),
    )
    .unwrap();
    Fixture {
        addrs,
        c2s,
        s2c,
        user,
        nonce,
        token,
    }
}

#[test]
fn connect_token_public_layout_field_by_field() {
    let f = fixture();
    let b = f.token.to_bytes().unwrap();
    assert_eq!(b.len(), CONNECT_TOKEN_BYTES);
    assert_eq!(&b[0..13], b"NETCODE 1.02\0");
    assert_eq!(le64(&b, 13), 0x1122_3344_5566_7788, "protocol id");
    assert_eq!(le64(&b, 21), 1_000, "create timestamp");
    assert_eq!(le64(&b, 29), 1_030, "expire timestamp");
    assert_eq!(&b[37..61], &f.nonce, "nonce");
    assert_eq!(
        &b[61..1085],
        &f.token.private_data,
        "encrypted private token"
    );
    assert_eq!(le32(&b, 1085) as i32, -1, "timeout seconds");
    assert_eq!(le32(&b, 1089), 2, "address count");
    // IPv4: type 1, a.b.c.d, port LE
    assert_eq!(b[1093], 1);
    assert_eq!(&b[1094..1098], &[203, 0, 113, 7]);
    assert_eq!(le16(&b, 1098), 40000);
    // IPv6: type 2, eight u16 LE segments, port LE
    assert_eq!(b[1100], 2);
    let segs: Vec<u16> = (0..8).map(|i| le16(&b, 1101 + 2 * i)).collect();
    assert_eq!(segs, [0x2001, 0xdb8, 1, 2, 3, 4, 5, 6]);
    assert_eq!(
        &b[1101..1103],
        &[0x01, 0x20],
        "segment written little-endian"
    );
    assert_eq!(le16(&b, 1117), 41000);
    assert_eq!(&b[1119..1151], &f.c2s, "client to server key");
    assert_eq!(&b[1151..1183], &f.s2c, "server to client key");
    assert!(b[1183..].iter().all(|&x| x == 0), "zero pad to 2048");

    let back = ConnectToken::read(&b).unwrap();
    assert_eq!(back, f.token);
    assert_eq!(back.to_bytes().unwrap(), b, "round trip is byte exact");
    assert_eq!(back.server_addresses.as_slice(), &f.addrs[..]);
}

#[test]
fn private_connect_token_layout_and_encryption() {
    let f = fixture();
    // Independent decryption: XChaCha20-Poly1305 over the first 1008 bytes, tag in the last 16,
    // associated data = version info ++ protocol id LE ++ expire timestamp LE.
    let mut ad = Vec::new();
    ad.extend_from_slice(b"NETCODE 1.02\0");
    ad.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    ad.extend_from_slice(&1_030u64.to_le_bytes());
    assert_eq!(ad, token_associated_data(0x1122_3344_5566_7788, 1_030));
    let mut buf = f.token.private_data;
    let (body, tag) = buf.split_at_mut(1008);
    XChaCha20Poly1305::new((&PRIVATE_KEY).into())
        .decrypt_in_place_detached(
            &XNonce::from(f.nonce),
            &ad,
            body,
            &Tag::clone_from_slice(tag),
        )
        .expect("independent decryption");
    let p = &buf[..1008];
    assert_eq!(le64(p, 0), 0xDEAD_BEEF_0000_0001, "client id");
    assert_eq!(le32(p, 8) as i32, -1, "timeout seconds");
    assert_eq!(le32(p, 12), 2, "address count");
    assert_eq!(p[16], 1);
    assert_eq!(&p[17..21], &[203, 0, 113, 7]);
    assert_eq!(le16(p, 21), 40000);
    assert_eq!(p[23], 2);
    assert_eq!(le16(p, 24), 0x2001);
    assert_eq!(le16(p, 40), 41000);
    assert_eq!(&p[42..74], &f.c2s);
    assert_eq!(&p[74..106], &f.s2c);
    assert_eq!(&p[106..362], &f.user);
    assert!(p[362..].iter().all(|&x| x == 0), "zero pad to 1008");

    let private = PrivateConnectToken::decrypt(
        &f.token.private_data,
        0x1122_3344_5566_7788,
        1_030,
        &f.nonce,
        &private_key(),
    )
    .unwrap();
    assert_eq!(private.client_id, 0xDEAD_BEEF_0000_0001);
    assert_eq!(private.user_data, f.user);
    assert_eq!(private.server_addresses.as_slice(), &f.addrs[..]);
    // Wrong associated data (protocol id, expire) or key: refused.
    for (pid, exp, key) in [
        (0x1122_3344_5566_7789, 1_030, private_key()),
        (0x1122_3344_5566_7788, 1_031, private_key()),
        (0x1122_3344_5566_7788, 1_030, Key::from_bytes([0; 32])),
    ] {
        assert_eq!(
            PrivateConnectToken::decrypt(&f.token.private_data, pid, exp, &f.nonce, &key),
            Err(TokenError::DecryptFailed)
        );
    }
}

#[test]
fn challenge_token_layout() {
    let key = Key::from_bytes([0x42; 32]);
    let token = ChallengeToken {
        client_id: 77,
        user_data: [0x5A; 256],
    };
    let enc = token.encrypt(9, &key).unwrap();
    assert_eq!(enc.len(), 300);
    let mut buf = enc;
    let (body, tag) = buf.split_at_mut(284);
    ChaCha20Poly1305::new((&[0x42u8; 32]).into())
        .decrypt_in_place_detached(
            &Nonce::from(packet_nonce(9)),
            b"",
            body,
            &Tag::clone_from_slice(tag),
        )
        .expect("challenge token: no associated data, nonce from sequence");
    assert_eq!(le64(&buf, 0), 77);
    assert_eq!(&buf[8..264], &[0x5A; 256]);
    assert!(buf[264..284].iter().all(|&x| x == 0));
    assert_eq!(ChallengeToken::decrypt(&enc, 9, &key).unwrap(), token);
    assert!(ChallengeToken::decrypt(&enc, 10, &key).is_err());
}

#[test]
fn connection_request_layout() {
    let f = fixture();
    let req = ConnectionRequest {
        protocol_id: f.token.protocol_id,
        expire_timestamp: f.token.expire_timestamp,
        nonce: &f.token.nonce,
        private_data: &f.token.private_data,
    };
    let mut out = [0u8; 1500];
    let n = req.write(&mut out).unwrap();
    assert_eq!(n, 1078);
    assert_eq!(CONNECTION_REQUEST_BYTES, 1078);
    assert_eq!(out[0], 0, "prefix byte of zero");
    assert_eq!(&out[1..14], b"NETCODE 1.02\0");
    assert_eq!(le64(&out, 14), f.token.protocol_id);
    assert_eq!(le64(&out, 22), f.token.expire_timestamp);
    assert_eq!(&out[30..54], &f.token.nonce);
    assert_eq!(&out[54..1078], &f.token.private_data);
    assert_eq!(ConnectionRequest::read(&out[..n]).unwrap(), req);
    assert!(ConnectionRequest::read(&out[..n - 1]).is_err());
    assert!(ConnectionRequest::read(&out[..n + 1]).is_err());
}

#[test]
fn minimal_sequence_byte_count() {
    for (seq, n) in [
        (0u64, 1u8),
        (1, 1),
        (255, 1),
        (256, 2),
        (1000, 2),
        (0xFFFF, 2),
        (0x1_0000, 3),
        (0xFF_FFFF_FFFF, 5),
        (1 << 63, 8),
        (u64::MAX, 8),
    ] {
        assert_eq!(sequence_bytes_required(seq), n, "sequence {seq}");
    }
}

#[test]
fn prefix_byte_and_sequence_on_the_wire() {
    let key = Key::from_bytes([3; 32]);
    // The standard's example: sequence 1000 takes two bytes, written 0xE8, 0x03.
    let mut out = [0u8; MAX_PACKET_BYTES];
    let n = write_packet(&mut out, &Packet::Payload(b"hi"), 1000, 5, &key).unwrap();
    assert_eq!(out[0], (2 << 4) | 5);
    assert_eq!(encode_prefix(PacketType::Payload, 1000), 0x25);
    assert_eq!(&out[1..3], &[0xE8, 0x03]);
    assert_eq!(n, 1 + 2 + 2 + 16);
    for (seq, ty) in [
        (0u64, PacketType::KeepAlive),
        (255, PacketType::Disconnect),
        (256, PacketType::ConnectionDenied),
        (u64::MAX, PacketType::Payload),
    ] {
        let packet = match ty {
            PacketType::KeepAlive => Packet::KeepAlive {
                client_index: 1,
                max_clients: 2,
            },
            PacketType::Disconnect => Packet::Disconnect,
            PacketType::ConnectionDenied => Packet::ConnectionDenied,
            _ => Packet::Payload(b"x"),
        };
        let n = write_packet(&mut out, &packet, seq, 5, &key).unwrap();
        let bytes = usize::from(sequence_bytes_required(seq));
        assert_eq!(out[0] & 0x0F, ty as u8, "type in the low 4 bits");
        assert_eq!(
            usize::from(out[0] >> 4),
            bytes,
            "sequence bytes in the high 4 bits"
        );
        assert_eq!(
            &out[1..1 + bytes],
            &seq.to_le_bytes()[..bytes],
            "low byte first"
        );
        let h = read_header(&out[..n], &PacketType::ALL).unwrap();
        assert_eq!((h.packet_type, h.sequence, h.len), (ty, seq, 1 + bytes));
    }
}

#[test]
fn nonce_and_associated_data_layout() {
    assert_eq!(
        packet_nonce(0x0102_0304_0506_0708),
        [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
    );
    let ad = packet_associated_data(0xAABB_CCDD_EEFF_0011, 0x35);
    let mut expect = b"NETCODE 1.02\0".to_vec();
    expect.extend_from_slice(&0xAABB_CCDD_EEFF_0011u64.to_le_bytes());
    expect.push(0x35);
    assert_eq!(&ad[..], &expect[..]);

    // A packet we write decrypts with an independent ChaCha20-Poly1305 IETF call using that
    // nonce and associated data.
    let key = [9u8; 32];
    let seq = 0x0001_0203_0405_0607u64;
    let mut out = [0u8; MAX_PACKET_BYTES];
    let n = write_packet(
        &mut out,
        &Packet::Payload(b"payload!"),
        seq,
        0xAABB_CCDD_EEFF_0011,
        &Key::from_bytes(key),
    )
    .unwrap();
    let prefix = out[0];
    let hdr = 1 + 7;
    let mut body = out[hdr..n - 16].to_vec();
    let tag = Tag::clone_from_slice(&out[n - 16..n]);
    ChaCha20Poly1305::new((&key).into())
        .decrypt_in_place_detached(
            &Nonce::from(packet_nonce(seq)),
            &packet_associated_data(0xAABB_CCDD_EEFF_0011, prefix),
            &mut body,
            &tag,
        )
        .expect("independent decryption");
    assert_eq!(body, b"payload!");

    // The prefix byte is authenticated: changing the packet type breaks decryption.
    let mut tampered = out[..n].to_vec();
    tampered[0] = (tampered[0] & 0xF0) | PacketType::KeepAlive as u8;
    assert!(matches!(
        read_packet(
            &mut tampered,
            0xAABB_CCDD_EEFF_0011,
            &Key::from_bytes(key),
            &PacketType::ALL[1..],
            None
        ),
        Err(PacketError::DecryptFailed { .. })
    ));
}

/// Encrypts an arbitrary body by hand, to test the decrypted-size rule.
fn raw_packet(ty: PacketType, seq: u64, body: &[u8], key: &[u8; 32], protocol_id: u64) -> Vec<u8> {
    let prefix = encode_prefix(ty, seq);
    let nbytes = usize::from(sequence_bytes_required(seq));
    let mut out = vec![prefix];
    out.extend_from_slice(&seq.to_le_bytes()[..nbytes]);
    let mut b = body.to_vec();
    let tag = ChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(
            &Nonce::from(packet_nonce(seq)),
            &packet_associated_data(protocol_id, prefix),
            &mut b,
        )
        .unwrap();
    out.extend_from_slice(&b);
    out.extend_from_slice(&tag);
    out
}

#[test]
fn decrypted_size_rule_per_packet_type() {
    let key = [5u8; 32];
    let k = Key::from_bytes(key);
    let cases: [(PacketType, &[usize], &[usize]); 6] = [
        (PacketType::ConnectionDenied, &[0], &[1, 8]),
        (PacketType::ConnectionChallenge, &[308], &[0, 300, 307, 309]),
        (PacketType::ConnectionResponse, &[308], &[0, 307, 309]),
        (PacketType::KeepAlive, &[8], &[0, 7, 9]),
        (PacketType::Payload, &[1, 1200], &[0]),
        (PacketType::Disconnect, &[0], &[1]),
    ];
    for (ty, good, bad) in cases {
        for &len in good {
            let mut p = raw_packet(ty, 3, &vec![0u8; len], &key, 1);
            assert!(
                read_packet(&mut p, 1, &k, &PacketType::ALL[1..], None).is_ok(),
                "{ty:?} with {len} bytes"
            );
        }
        for &len in bad {
            let mut p = raw_packet(ty, 3, &vec![0u8; len], &key, 1);
            let mut window = ReplayWindow::new();
            let err = read_packet(&mut p, 1, &k, &PacketType::ALL[1..], Some(&mut window));
            assert!(
                matches!(err, Err(PacketError::WrongBodySize { got, .. }) if got == len),
                "{ty:?} with {len} bytes: {err:?}"
            );
            // The size check comes after decryption: the replay window did advance.
            if ty.is_replay_protected() {
                assert!(window.already_received(3));
            }
        }
    }
    // A 1201-byte payload packet is refused (too large as a datagram with 1 sequence byte it is
    // 1218 bytes; checked as a body size).
    let mut p = raw_packet(PacketType::Payload, 3, &[0u8; 1201], &key, 1);
    assert!(matches!(
        read_packet(&mut p, 1, &k, &[PacketType::Payload], None),
        Err(PacketError::WrongBodySize { got: 1201, .. })
    ));
}

#[test]
fn reading_order_of_encrypted_packets() {
    let key = Key::from_bytes([1; 32]);
    let mut out = [0u8; MAX_PACKET_BYTES];
    let n = write_packet(&mut out, &Packet::Disconnect, 0, 1, &key).unwrap();
    assert_eq!(n, 18, "smallest valid packet");
    // 1. fewer than 18 bytes
    assert!(matches!(
        read_packet(&mut out[..17].to_vec(), 1, &key, &PacketType::ALL, None),
        Err(PacketError::TooSmall { min: 18, got: 17 })
    ));
    // 2. type >= 7
    let mut p = out[..n].to_vec();
    p[0] = 0x17;
    assert!(matches!(
        read_packet(&mut p, 1, &key, &PacketType::ALL, None),
        Err(PacketError::InvalidPacketType { got: 7 })
    ));
    // 3. type not accepted (server ignores challenges, client ignores requests/responses)
    let mut p = out[..n].to_vec();
    assert!(matches!(
        read_packet(&mut p, 1, &key, &[PacketType::Payload], None),
        Err(PacketError::UnexpectedPacketType {
            packet_type: PacketType::Disconnect
        })
    ));
    // 4. sequence bytes outside 1..=8
    for nibble in [0u8, 9, 15] {
        let mut p = out[..n].to_vec();
        p[0] = (nibble << 4) | 6;
        assert!(matches!(
            read_packet(&mut p, 1, &key, &PacketType::ALL, None),
            Err(PacketError::InvalidSequenceBytes { got, .. }) if got == nibble
        ));
    }
    // 5. shorter than 1 + sequence bytes + 16
    let mut p = vec![0u8; 24];
    p[0] = (8 << 4) | 6;
    assert!(matches!(
        read_packet(&mut p, 1, &key, &PacketType::ALL, None),
        Err(PacketError::TooSmall { min: 25, got: 24 })
    ));
    // 6. replay test before decryption; 7. decryption; 8. advance only after success
    let mut window = ReplayWindow::new();
    let mut p = out[..n].to_vec();
    read_packet(&mut p, 1, &key, &PacketType::ALL, Some(&mut window)).unwrap();
    let mut p = out[..n].to_vec();
    assert!(matches!(
        read_packet(&mut p, 1, &key, &PacketType::ALL, Some(&mut window)),
        Err(PacketError::Replayed { sequence: 0 })
    ));
}

#[test]
fn replay_window_basics() {
    let mut w = ReplayWindow::new();
    for s in 0..1024u64 {
        assert!(!w.already_received(s));
        w.advance(s);
        assert!(w.already_received(s), "duplicate {s}");
    }
    assert!(w.already_received(0), "old");
    assert!(
        w.already_received(1023 - 256),
        "exactly window size behind is old"
    );
    assert!(w.already_received(1023 - 255), "inside window, received");
    assert!(!w.already_received(1024 + 300), "new, far ahead");
    // Out of order inside the window.
    let mut w = ReplayWindow::new();
    w.advance(500);
    assert!(!w.already_received(400));
    w.advance(400);
    assert!(w.already_received(400));
    assert!(!w.already_received(401));
    assert!(w.already_received(244), "500 - 256 is old");
    assert!(!w.already_received(245));
}

#[test]
fn replay_window_top_of_sequence_space() {
    for start in [u64::MAX - 600, u64::MAX - 256, u64::MAX - 10] {
        let mut w = ReplayWindow::new();
        let mut s = start;
        loop {
            assert!(!w.already_received(s), "new {s} accepted");
            w.advance(s);
            assert!(w.already_received(s), "duplicate {s} rejected");
            if s == u64::MAX {
                break;
            }
            s += 1;
        }
        assert_eq!(w.most_recent(), u64::MAX);
        assert!(w.already_received(u64::MAX));
        assert!(w.already_received(u64::MAX - 10));
        assert!(w.already_received(u64::MAX - 256), "old");
        assert!(w.already_received(0), "old");
        assert!(w.already_received(1 << 63), "old");
        if start <= u64::MAX - 255 {
            assert!(
                w.already_received(u64::MAX - 255),
                "received and inside window"
            );
        }
    }
    // Gaps at the top: unseen sequences inside the window are accepted exactly once.
    let mut w = ReplayWindow::new();
    w.advance(u64::MAX);
    for s in [u64::MAX - 10, u64::MAX - 1, u64::MAX - 255] {
        assert!(!w.already_received(s), "unseen {s} inside the window");
        w.advance(s);
        assert!(w.already_received(s));
    }
    assert!(w.already_received(u64::MAX - 256));
    assert_eq!(w.most_recent(), u64::MAX);
    // A fresh window: u64::MAX first, then everything far below is old.
    let mut w = ReplayWindow::new();
    assert!(!w.already_received(u64::MAX));
    w.advance(u64::MAX - 10);
    assert!(!w.already_received(u64::MAX));
    assert!(w.already_received(5));
}

#[test]
fn client_state_codes_and_licensed_transition_table() {
    use ClientState::*;
    let all = [
        ConnectTokenExpired,
        InvalidConnectToken,
        ConnectionTimedOut,
        ConnectionResponseTimedOut,
        ConnectionRequestTimedOut,
        ConnectionDenied,
        Disconnected,
        SendingConnectionRequest,
        SendingConnectionResponse,
        Connected,
    ];
    let codes: Vec<i8> = all.iter().map(|s| s.code()).collect();
    assert_eq!(codes, [-6, -5, -4, -3, -2, -1, 0, 1, 2, 3]);
    let licensed = [
        (Disconnected, SendingConnectionRequest),
        (Disconnected, InvalidConnectToken),
        (SendingConnectionRequest, SendingConnectionResponse),
        (SendingConnectionRequest, SendingConnectionRequest),
        (SendingConnectionRequest, ConnectionDenied),
        (SendingConnectionRequest, ConnectionRequestTimedOut),
        (SendingConnectionRequest, ConnectTokenExpired),
        (SendingConnectionResponse, Connected),
        (SendingConnectionResponse, SendingConnectionRequest),
        (SendingConnectionResponse, ConnectionDenied),
        (SendingConnectionResponse, ConnectionResponseTimedOut),
        (SendingConnectionResponse, ConnectTokenExpired),
        (Connected, ConnectionTimedOut),
        (Connected, Disconnected),
    ];
    for from in all {
        for to in all {
            assert_eq!(
                ClientState::is_licensed_transition(from, to),
                licensed.contains(&(from, to)),
                "{from:?} -> {to:?}"
            );
        }
    }
}

#[test]
fn client_rejects_invalid_tokens() {
    use std::time::Duration;
    let good = TokenSpec::new(1).bytes();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..2047].to_vec(), "short"),
        ([&good[..], &[0][..]].concat(), "long"),
        (
            {
                let mut b = good.to_vec();
                b[0] = b'X';
                b
            },
            "version",
        ),
        (
            {
                let mut b = good.to_vec();
                b[1089..1093].copy_from_slice(&0u32.to_le_bytes());
                b
            },
            "zero addresses",
        ),
        (
            {
                let mut b = good.to_vec();
                b[1089..1093].copy_from_slice(&33u32.to_le_bytes());
                b
            },
            "33 addresses",
        ),
        (
            {
                let mut b = good.to_vec();
                b[1093] = 0;
                b
            },
            "address type 0",
        ),
        (
            {
                let mut b = good.to_vec();
                b[1093] = 3;
                b
            },
            "address type 3",
        ),
        (
            {
                let mut b = good.to_vec();
                b[21..29].copy_from_slice(&(UNIX_START + 61).to_le_bytes());
                b
            },
            "created after expiry",
        ),
        (
            {
                let mut b = good.to_vec();
                b[2047] = 1;
                b
            },
            "padding",
        ),
    ];
    for (bytes, what) in cases {
        let mut c = Client::new(Duration::ZERO, &bytes);
        assert_eq!(c.state(), ClientState::InvalidConnectToken, "{what}");
        assert!(c.token_error().is_some(), "{what}");
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Disconnected {
                state: ClientState::InvalidConnectToken
            })
        );
        c.update(Duration::from_secs(1));
        assert!(
            c.poll_transmit().is_none(),
            "{what}: an invalid client sends nothing"
        );
    }
}

#[test]
fn overhead_bytes_per_payload_packet() {
    let key = Key::from_bytes([1; 32]);
    let mut scratch = [0u8; MAX_PACKET_BYTES];
    for (seq, overhead) in [(0u64, 18usize), (300, 19), (1 << 40, 23), (u64::MAX, 25)] {
        let n = packet::payload_roundtrip(&mut scratch, &key, 1, seq, &[7u8; 1000]).unwrap();
        assert_eq!(n - 1000, overhead, "sequence {seq}");
    }
}
