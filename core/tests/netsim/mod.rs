//! Shared test harness: deterministic keys and tokens, and an in-memory network that moves
//! datagrams between one server and several clients by hand, checking on every step that
//! client state changes are licensed and that no reply to an unauthenticated peer is larger
//! than the datagram that caused it.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::time::Duration;

use zone_core::netcode::{
    Client, ClientConfig, ClientEvent, ClientState, ConnectToken, ConnectTokenParams,
    DisconnectReason, Key, Server, ServerConfig, ServerEvent,
};

pub const PROTOCOL_ID: u64 = 0x0102_0304_0506_0708;
pub const UNIX_START: u64 = 1_750_000_000;
pub const PRIVATE_KEY: [u8; 32] = *b"an example very very secret key.";

pub fn private_key() -> Key {
    Key::from_bytes(PRIVATE_KEY)
}

pub fn server_addr() -> SocketAddr {
    "10.0.0.1:40000".parse().unwrap()
}

pub fn client_addr(i: u16) -> SocketAddr {
    SocketAddr::from(([192, 168, (i / 250) as u8, (i % 250) as u8 + 1], 50_000 + i))
}

/// Deterministic byte source for tests only (splitmix64). Production callers use a CSPRNG.
#[derive(Debug, Clone)]
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next_u64() as u8;
        }
    }
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub client_id: u64,
    pub addresses: Vec<SocketAddr>,
    pub protocol_id: u64,
    pub create: u64,
    pub expire: u64,
    pub timeout_seconds: i32,
    pub private_key: Key,
    pub seed: u64,
}

impl TokenSpec {
    pub fn new(client_id: u64) -> Self {
        Self {
            client_id,
            addresses: vec![server_addr()],
            protocol_id: PROTOCOL_ID,
            create: UNIX_START,
            expire: UNIX_START + 60,
            timeout_seconds: 5,
            private_key: private_key(),
            seed: client_id,
        }
    }

    pub fn user_data(&self) -> [u8; 256] {
        let mut u = [0u8; 256];
        for (i, b) in u.iter_mut().enumerate() {
            *b = (i as u64 ^ self.client_id) as u8;
        }
        u
    }

    pub fn build(&self) -> ConnectToken {
        let mut rng = TestRng::new(self.seed.wrapping_mul(31).wrapping_add(7));
        let params = ConnectTokenParams {
            protocol_id: self.protocol_id,
            create_timestamp: self.create,
            expire_timestamp: self.expire,
            timeout_seconds: self.timeout_seconds,
            client_id: self.client_id,
            server_addresses: &self.addresses,
            client_to_server_key: Key::from_bytes(rng.bytes()),
            server_to_client_key: Key::from_bytes(rng.bytes()),
            user_data: self.user_data(),
            nonce: rng.bytes(),
        };
        ConnectToken::generate(&params, &self.private_key).unwrap()
    }

    pub fn bytes(&self) -> [u8; 2048] {
        self.build().to_bytes().unwrap()
    }
}

pub fn server_config(max_clients: usize) -> ServerConfig {
    ServerConfig::new(PROTOCOL_ID, private_key(), max_clients, vec![server_addr()])
}

pub fn new_server(max_clients: usize) -> Server {
    Server::new(server_config(max_clients), Key::from_bytes([0xC7; 32])).unwrap()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SEvent {
    Connected {
        index: usize,
        client_id: u64,
        address: SocketAddr,
        user_data: Vec<u8>,
    },
    Disconnected {
        index: usize,
        client_id: u64,
        reason: DisconnectReason,
    },
    Payload {
        index: usize,
        data: Vec<u8>,
    },
}

impl From<ServerEvent<'_>> for SEvent {
    fn from(e: ServerEvent<'_>) -> Self {
        match e {
            ServerEvent::ClientConnected {
                client_index,
                client_id,
                address,
                user_data,
            } => SEvent::Connected {
                index: client_index,
                client_id,
                address,
                user_data: user_data.to_vec(),
            },
            ServerEvent::ClientDisconnected {
                client_index,
                client_id,
                reason,
                ..
            } => SEvent::Disconnected {
                index: client_index,
                client_id,
                reason,
            },
            ServerEvent::Payload { client_index, data } => SEvent::Payload {
                index: client_index,
                data: data.to_vec(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CEvent {
    Connected { client_index: u32, max_clients: u32 },
    Payload(Vec<u8>),
    Disconnected(ClientState),
}

impl From<ClientEvent<'_>> for CEvent {
    fn from(e: ClientEvent<'_>) -> Self {
        match e {
            ClientEvent::Connected {
                client_index,
                max_clients,
            } => CEvent::Connected {
                client_index,
                max_clients,
            },
            ClientEvent::Payload(d) => CEvent::Payload(d.to_vec()),
            ClientEvent::Disconnected { state } => CEvent::Disconnected(state),
        }
    }
}

/// One datagram seen on the simulated wire.
#[derive(Debug, Clone)]
pub struct Wire {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

pub struct SimClient {
    pub client: Client,
    pub addr: SocketAddr,
    pub token: ConnectToken,
    /// When false the client is frozen: not updated, sends nothing, receives nothing.
    pub online: bool,
    pub states: Vec<ClientState>,
    pub events: Vec<CEvent>,
}

/// In-memory network: one server, many clients, datagrams moved by hand.
pub struct Sim {
    pub server: Server,
    pub server_online: bool,
    /// When true, datagrams from the server are lost on the way to the clients.
    pub lose_server_replies: bool,
    pub clients: Vec<SimClient>,
    pub now: Duration,
    pub server_events: Vec<SEvent>,
    pub to_server: Vec<Wire>,
    pub from_server: Vec<Wire>,
}

pub const STEP: Duration = Duration::from_millis(10);

impl Sim {
    pub fn new(server: Server) -> Self {
        Self {
            server,
            server_online: true,
            lose_server_replies: false,
            clients: Vec::new(),
            now: Duration::from_secs(1000),
            server_events: Vec::new(),
            to_server: Vec::new(),
            from_server: Vec::new(),
        }
    }

    pub fn unix(&self) -> u64 {
        UNIX_START + (self.now.as_secs() - 1000)
    }

    pub fn add_client(&mut self, spec: &TokenSpec, addr: SocketAddr) -> usize {
        self.add_client_with(spec, addr, ClientConfig::default())
    }

    pub fn add_client_with(
        &mut self,
        spec: &TokenSpec,
        addr: SocketAddr,
        config: ClientConfig,
    ) -> usize {
        let token = spec.build();
        let client = Client::with_config(self.now, &token.to_bytes().unwrap(), config);
        let state = client.state();
        self.clients.push(SimClient {
            client,
            addr,
            token,
            online: true,
            states: vec![ClientState::Disconnected, state],
            events: Vec::new(),
        });
        self.clients.len() - 1
    }

    fn note_state(c: &mut SimClient) {
        let now = c.client.state();
        let before = *c.states.last().unwrap();
        if now != before {
            assert!(
                ClientState::is_licensed_transition(before, now),
                "unlicensed transition {before:?} -> {now:?}"
            );
            c.states.push(now);
        }
    }

    /// Delivers a datagram to the server from `from`, then drains and delivers the
    /// server's replies, checking the amplification rule for unauthenticated peers.
    pub fn deliver_to_server(&mut self, from: SocketAddr, mut bytes: Vec<u8>) {
        self.to_server.push(Wire {
            from,
            to: server_addr(),
            bytes: bytes.clone(),
        });
        if !self.server_online {
            return;
        }
        let authenticated = self.server.client_index(from).is_some();
        let request_len = bytes.len();
        let (now, unix) = (self.now, self.unix());
        if let Some(e) = self.server.process(now, unix, from, &mut bytes) {
            self.server_events.push(e.into());
        }
        let replies = self.drain_server();
        if !authenticated {
            for w in &replies {
                assert!(
                    w.bytes.len() < request_len,
                    "amplification: {} byte reply to a {} byte datagram from an unauthenticated peer",
                    w.bytes.len(),
                    request_len
                );
            }
        }
        self.deliver_to_clients(replies);
    }

    pub fn drain_server(&mut self) -> Vec<Wire> {
        let mut out = Vec::new();
        while let Some(t) = self.server.poll_transmit() {
            out.push(Wire {
                from: server_addr(),
                to: t.destination,
                bytes: t.payload.to_vec(),
            });
        }
        self.from_server.extend(out.iter().cloned());
        out
    }

    pub fn deliver_to_clients(&mut self, wires: Vec<Wire>) {
        if self.lose_server_replies {
            return;
        }
        let now = self.now;
        for w in wires {
            if let Some(c) = self.clients.iter_mut().find(|c| c.addr == w.to && c.online) {
                let mut bytes = w.bytes;
                if let Some(e) = c.client.process(now, w.from, &mut bytes) {
                    c.events.push(e.into());
                }
                Self::note_state(c);
            }
        }
    }

    pub fn drain_client(&mut self, i: usize) -> Vec<Wire> {
        let c = &mut self.clients[i];
        let mut out = Vec::new();
        while let Some(t) = c.client.poll_transmit() {
            out.push(Wire {
                from: c.addr,
                to: t.destination,
                bytes: t.payload.to_vec(),
            });
        }
        while let Some(e) = c.client.poll_event() {
            c.events.push(e.into());
        }
        Self::note_state(c);
        out
    }

    pub fn flush_client(&mut self, i: usize) {
        for w in self.drain_client(i) {
            if w.to == server_addr() {
                self.deliver_to_server(w.from, w.bytes);
            } else {
                self.to_server.push(w);
            }
        }
    }

    /// Advances time by one step: clients update and send, server updates and sends.
    pub fn step(&mut self) {
        self.now += STEP;
        for i in 0..self.clients.len() {
            if !self.clients[i].online {
                continue;
            }
            let now = self.now;
            self.clients[i].client.update(now);
            self.flush_client(i);
        }
        if self.server_online {
            let now = self.now;
            self.server.update(now);
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e.into());
            }
            let out = self.drain_server();
            self.deliver_to_clients(out);
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Steps until `pred` holds; panics after `limit`.
    pub fn run_until(&mut self, limit: Duration, mut pred: impl FnMut(&Sim) -> bool) {
        let end = self.now + limit;
        while !pred(self) {
            assert!(self.now < end, "condition not reached within {limit:?}");
            self.step();
        }
    }

    pub fn state(&self, i: usize) -> ClientState {
        self.clients[i].client.state()
    }

    pub fn connect_all(&mut self) {
        self.run_until(Duration::from_secs(5), |s| {
            s.clients
                .iter()
                .all(|c| c.client.state() == ClientState::Connected)
        });
    }
}
