//! Key hygiene (no key bytes in any `Debug` output), dual-stack address handling, and the
//! steady-state allocation budget (zero heap allocations per packet once warmed up).
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::expect_used
)]

mod netsim;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use netsim::*;
use zone_core::netcode::*;

/// Counts heap allocations made by a thread while its `COUNTING` flag is set (other test
/// threads, spawned concurrently by the harness, are not counted). Test-only; the only unsafe
/// code here forwards to the system allocator unchanged.
struct CountingAllocator;
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Tests in this binary run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn steady_state_exchange_allocates_nothing() {
    let _guard = SERIAL.lock().unwrap();
    let mut server = new_server(8);
    let mut now = Duration::from_secs(1000);
    let mut client = Client::new(now, &TokenSpec::new(1).bytes());
    let mut buf = [0u8; MAX_PACKET_BYTES];
    let payload = [0x5Au8; 1000];
    let mut received = 0u64;
    let tick = |now: Duration,
                server: &mut Server,
                client: &mut Client,
                buf: &mut [u8; MAX_PACKET_BYTES],
                received: &mut u64| {
        client.update(now);
        if client.state() == ClientState::Connected {
            client.send_payload(&payload).unwrap();
        }
        while let Some(t) = client.poll_transmit() {
            let n = t.payload.len();
            buf[..n].copy_from_slice(t.payload);
            if let Some(ServerEvent::Payload { data, .. }) =
                server.process(now, UNIX_START, client_addr(1), &mut buf[..n])
            {
                *received += data.len() as u64;
            }
        }
        if server.is_connected(0) {
            server.send_payload(0, &payload).unwrap();
        }
        server.update(now);
        while let Some(t) = server.poll_transmit() {
            let n = t.payload.len();
            buf[..n].copy_from_slice(t.payload);
            if let Some(ClientEvent::Payload(data)) =
                client.process(now, server_addr(), &mut buf[..n])
            {
                *received += data.len() as u64;
            }
        }
    };
    for _ in 0..200 {
        now += Duration::from_millis(10);
        tick(now, &mut server, &mut client, &mut buf, &mut received);
    }
    assert_eq!(client.state(), ClientState::Connected);
    let before = received;
    // Calibration: the counter does see this thread's allocations.
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    let probe = std::hint::black_box(vec![1u8; 16]);
    COUNTING.with(|c| c.set(false));
    drop(probe);
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), 1);
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    for _ in 0..2000 {
        now += Duration::from_millis(10);
        tick(now, &mut server, &mut client, &mut buf, &mut received);
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(received - before, 2 * 2000 * 1000, "every payload arrived");
    assert_eq!(
        ALLOCATIONS.load(Ordering::SeqCst),
        0,
        "heap allocations in steady state"
    );
}

#[test]
fn debug_output_never_shows_key_bytes() {
    let _guard = SERIAL.lock().unwrap();
    let secret = [0xABu8; 32];
    let needle = "171, 171"; // 0xAB in decimal, as a derived Debug would print it
    let mut config = server_config(2);
    config.private_key = Key::from_bytes(secret);
    let s = format!("{config:?}");
    assert!(!s.contains(needle) && s.contains("redacted"), "{s}");
    let server = Server::new(config.clone(), Key::from_bytes(secret)).unwrap();
    assert!(!format!("{server:?}").contains(needle));

    let params = ConnectTokenParams {
        protocol_id: 1,
        create_timestamp: 0,
        expire_timestamp: 10,
        timeout_seconds: 5,
        client_id: 1,
        server_addresses: &[server_addr()],
        client_to_server_key: Key::from_bytes(secret),
        server_to_client_key: Key::from_bytes(secret),
        user_data: [0; 256],
        nonce: [0; 24],
    };
    assert!(!format!("{params:?}").contains(needle));
    let token = ConnectToken::generate(&params, &Key::from_bytes(secret)).unwrap();
    assert!(!format!("{token:?}").contains(needle));
    let private = PrivateConnectToken::decrypt(
        &token.private_data,
        1,
        10,
        &token.nonce,
        &Key::from_bytes(secret),
    )
    .unwrap();
    assert!(!format!("{private:?}").contains(needle));
    let client = Client::new(Duration::ZERO, &token.to_bytes().unwrap());
    assert!(!format!("{client:?}").contains(needle));
    assert_eq!(format!("{:?}", Key::from_bytes(secret)), "Key(<redacted>)");
}

#[test]
fn ipv4_peer_seen_through_a_dual_stack_socket() {
    let _guard = SERIAL.lock().unwrap();
    let v4 = client_addr(1);
    let mapped = match v4.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), v4.port()),
        IpAddr::V6(_) => unreachable!(),
    };
    let mut server = new_server(2);
    let now = Duration::from_secs(1000);
    let mut client = Client::new(now, &TokenSpec::new(1).bytes());
    let mut connected = false;
    for i in 0..50u64 {
        let t = now + Duration::from_millis(10 * i);
        client.update(t);
        let mut outs = Vec::new();
        while let Some(tx) = client.poll_transmit() {
            outs.push(tx.payload.to_vec());
        }
        for mut d in outs {
            // The server's socket reports the peer as ::ffff:a.b.c.d.
            if let Some(ServerEvent::ClientConnected { address, .. }) =
                server.process(t, UNIX_START, mapped, &mut d)
            {
                assert_eq!(address, mapped, "reported as received");
            }
        }
        let mut backs = Vec::new();
        while let Some(tx) = server.poll_transmit() {
            assert_eq!(
                tx.destination, mapped,
                "replies go back to the address as received"
            );
            backs.push(tx.payload.to_vec());
        }
        // A client socket may report the server as IPv4 or, if dual-stack, as IPv4-mapped
        // IPv6: both match the token's IPv4 entry.
        let server_seen = match server_addr().ip() {
            IpAddr::V4(ip) if i % 2 == 0 => {
                SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), server_addr().port())
            }
            _ => server_addr(),
        };
        for mut d in backs {
            if let Some(ClientEvent::Connected { .. }) = client.process(t, server_seen, &mut d) {
                connected = true;
            }
        }
    }
    assert!(connected);
    assert_eq!(server.client_index(v4), Some(0));
    assert_eq!(server.client_index(mapped), Some(0));
}
