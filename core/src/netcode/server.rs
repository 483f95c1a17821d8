//! The server half of netcode 1.02, sans-IO.
//!
//! Owns connection slots, the per-address encryption mappings of clients that are between
//! connection request and connection response (pending), the connect-token-already-used
//! history, the per-address connection request rate limit, the challenge key and sequence,
//! the global sequence (for challenge and denied packets, starting at `1 << 63`), keep-alives,
//! timeouts and redundant disconnects.
//!
//! Inputs are datagrams (`process`), the passage of time (`update`) and application calls
//! (`send_payload`, `disconnect`, `disconnect_all`); outputs are events (returned by
//! `process`, or queued for `poll_event`) and datagrams (`poll_transmit`). Every ignored
//! datagram is counted by [`DropReason`]. No reply to an unauthenticated peer is ever as
//! large as the datagram that caused it (no amplification).
//!
//! It must never open a socket, read a clock, draw randomness, allocate per packet in steady
//! state, grow any table past its configured bound, panic on any datagram, or print the
//! private key or any connection key.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::address::canonical;
use super::crypto::Key;
use super::error::{ConfigError, DropCounters, DropReason, PacketError, SendError, TokenError};
use super::packet::{
    ConnectionRequest, Packet, PacketType, read_header, read_packet, write_packet,
};
use super::rate_limit::{DecryptBudget, RateLimiter};
use super::replay::ReplayWindow;
use super::token::{ChallengeToken, PrivateConnectToken};
use super::token_history::TokenHistory;
use super::transmit::{QueueFull, Transmit, TransmitQueue};
use super::{GLOBAL_SEQUENCE_START, MAC_BYTES, MAX_CLIENTS, MAX_PAYLOAD_BYTES, USER_DATA_BYTES};

/// Per-address limit on connection requests the server will decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Connection requests accepted per source per window: an IPv4 address, an IPv6 /64, or
    /// a loopback address and port (see the `rate_limit` module).
    pub max_requests: u32,
    /// Length of a window.
    pub window: Duration,
    /// Most sources tracked at once.
    pub table_capacity: usize,
    /// Connection requests decrypted per second, from all sources together: what a flood
    /// from many addresses can cost (about 4 µs each).
    pub max_decrypts_per_second: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            max_requests: 30,
            window: Duration::from_secs(1),
            table_capacity: 4096,
            max_decrypts_per_second: 5_000,
        }
    }
}

/// Server configuration. Its `Debug` output never shows the private key.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Protocol id; connection requests for any other id are dropped.
    pub protocol_id: u64,
    /// Key shared with the login backend, decrypting private connect tokens.
    pub private_key: Key,
    /// Number of client slots, `1..=MAX_CLIENTS`.
    pub max_clients: usize,
    /// Addresses clients reach this server at; a token must list one of them.
    pub public_addresses: Vec<SocketAddr>,
    /// Keep-alive period towards each client in the absence of payloads (default 100 ms).
    pub keep_alive_interval: Duration,
    /// Redundant disconnect packets sent on a server-side disconnect (default 10).
    pub disconnect_packets: u32,
    /// Most pending (challenged, not yet connected) clients (default `4 * max_clients`).
    pub max_pending: usize,
    /// Most pending clients from one IP, whatever the port (default 8; loopback peers are
    /// not capped). A client id holds at most one pending entry anyway: its newest address
    /// replaces an older one.
    pub max_pending_per_ip: usize,
    /// Longest a client may stay pending, however long its token lives (default 10 s);
    /// re-sent requests do not extend it.
    pub pending_lifetime: Duration,
    /// Most connect tokens remembered as used (default `8 * max_clients`, at least 1024).
    pub token_history_capacity: usize,
    /// Most datagrams waiting for `poll_transmit`.
    pub transmit_queue_capacity: usize,
    /// Most events waiting for `poll_event`.
    pub event_queue_capacity: usize,
    /// Per-address connection request limit.
    pub rate_limit: RateLimitConfig,
    /// First global sequence number (challenge and denied packets), at least `1 << 63` so it
    /// never meets a per-client sequence. Defaults to `1 << 63`; a server that restarts with
    /// the same private key should pass `(1 << 63) | random` (see
    /// [`random_global_sequence_start`]), so a still-valid token's challenge nonces never repeat
    /// across restarts.
    pub global_sequence_start: u64,
}

/// A global sequence start from 8 random bytes: `1 << 63` plus a random offset below `1 << 62`,
/// leaving at least `2^62` sequence numbers before exhaustion.
pub fn random_global_sequence_start(random: [u8; 8]) -> u64 {
    GLOBAL_SEQUENCE_START | (u64::from_le_bytes(random) & ((1 << 62) - 1))
}

impl ServerConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(
        protocol_id: u64,
        private_key: Key,
        max_clients: usize,
        public_addresses: Vec<SocketAddr>,
    ) -> Self {
        let disconnect_packets = 10;
        Self {
            protocol_id,
            private_key,
            max_clients,
            public_addresses,
            keep_alive_interval: Duration::from_millis(100),
            disconnect_packets,
            max_pending: max_clients.saturating_mul(4).max(16),
            max_pending_per_ip: 8,
            pending_lifetime: Duration::from_secs(10),
            token_history_capacity: max_clients.saturating_mul(8).max(1024),
            transmit_queue_capacity: max_clients
                .saturating_mul(disconnect_packets as usize + 4)
                .saturating_add(256),
            event_queue_capacity: max_clients.saturating_mul(4).saturating_add(16),
            rate_limit: RateLimitConfig::default(),
            global_sequence_start: GLOBAL_SEQUENCE_START,
        }
    }
}

/// Why a client left its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DisconnectReason {
    /// The client sent a disconnect packet.
    ClientRequested,
    /// Nothing was received from the client for its token's timeout.
    TimedOut,
    /// The application called `disconnect` or `disconnect_all`.
    ServerRequested,
}

/// Something the application must know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "user data is returned by value once per connection, never per packet"
)]
pub enum ServerEvent<'a> {
    /// A client completed the handshake and owns slot `client_index`.
    ClientConnected {
        /// Slot index.
        client_index: usize,
        /// Client id from the connect token.
        client_id: u64,
        /// Source address of the client.
        address: SocketAddr,
        /// User data from the connect token.
        user_data: [u8; USER_DATA_BYTES],
    },
    /// A client left slot `client_index`.
    ClientDisconnected {
        /// Slot index.
        client_index: usize,
        /// Client id from the connect token.
        client_id: u64,
        /// Address of the client.
        address: SocketAddr,
        /// Why.
        reason: DisconnectReason,
    },
    /// Application data from a connected client, decrypted in place in the datagram buffer
    /// passed to `process`.
    Payload {
        /// Slot index.
        client_index: usize,
        /// 1..=1200 bytes.
        data: &'a [u8],
    },
}

struct Connection {
    /// Source address as received; replies go here.
    address: SocketAddr,
    /// Canonical form of `address`, the lookup key.
    key: SocketAddr,
    client_id: u64,
    user_data: [u8; USER_DATA_BYTES],
    send_key: Key,
    receive_key: Key,
    next_sequence: Option<u64>,
    replay: ReplayWindow,
    last_receive: Duration,
    last_send: Duration,
    timeout: Option<Duration>,
    confirmed: bool,
}

struct Pending {
    client_id: u64,
    send_key: Key,
    receive_key: Key,
    timeout: Option<Duration>,
    last_receive: Duration,
    expires_at: Duration,
}

impl Pending {
    fn expired(&self, now: Duration) -> bool {
        now >= self.expires_at
            || self
                .timeout
                .is_some_and(|t| now.saturating_sub(self.last_receive) > t)
    }
}

/// Converts a token's timeout: zero or negative disables timeouts.
pub(crate) fn timeout_from_seconds(seconds: i32) -> Option<Duration> {
    u64::try_from(seconds)
        .ok()
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
}

enum QueueError {
    Full,
    Packet(PacketError),
}

impl From<QueueError> for DropReason {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full => DropReason::TransmitQueueFull,
            QueueError::Packet(p) => DropReason::from(&p),
        }
    }
}

fn queue(
    transmit: &mut TransmitQueue,
    destination: SocketAddr,
    packet: &Packet<'_>,
    sequence: u64,
    protocol_id: u64,
    key: &Key,
) -> Result<(), QueueError> {
    match transmit.push_with(destination, |buf| {
        write_packet(buf, packet, sequence, protocol_id, key)
    }) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(QueueError::Packet(e)),
        Err(QueueFull) => Err(QueueError::Full),
    }
}

/// A reserved packet sequence of one client ([`Server::reserve_payload`]): everything needed to
/// seal one payload packet for it, anywhere. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct PayloadTicket {
    /// Where the datagram goes.
    pub destination: SocketAddr,
    sequence: u64,
    protocol_id: u64,
    key: Key,
}

impl fmt::Debug for PayloadTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadTicket")
            .field("destination", &self.destination)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl PayloadTicket {
    /// Writes the encrypted payload packet (1..=1200 payload bytes) into `out`, which must
    /// hold [`super::MAX_PACKET_BYTES`]; returns its length. Byte for byte what
    /// [`Server::send_payload`] would have queued with the same sequence.
    pub fn seal(&self, payload: &[u8], out: &mut [u8]) -> Result<usize, SendError> {
        write_packet(
            out,
            &Packet::Payload(payload),
            self.sequence,
            self.protocol_id,
            &self.key,
        )
        .map_err(SendError::Packet)
    }
}

/// Packet types the server reads from addresses with an encryption mapping.
const SERVER_ACCEPTS: [PacketType; 4] = [
    PacketType::ConnectionResponse,
    PacketType::KeepAlive,
    PacketType::Payload,
    PacketType::Disconnect,
];

/// Seconds after a client leaves during which its address's packets count as
/// [`DropReason::AfterDisconnect`] (a client sends 10 redundant disconnect packets; packets
/// already in flight also come).
pub const AFTER_DISCONNECT_SECONDS: u64 = 2;
/// Addresses remembered for that (the most recent leavers; older ones count as unknown).
const RECENTLY_LEFT: usize = 64;

/// A netcode 1.02 dedicated server.
pub struct Server {
    config: ServerConfig,
    public_addresses: Vec<SocketAddr>,
    challenge_key: Key,
    challenge_sequence: Option<u64>,
    global_sequence: Option<u64>,
    slots: Vec<Option<Connection>>,
    by_address: BTreeMap<SocketAddr, usize>,
    pending: BTreeMap<SocketAddr, Pending>,
    token_history: TokenHistory,
    rate_limiter: RateLimiter,
    decrypt_budget: DecryptBudget,
    transmit: TransmitQueue,
    events: VecDeque<ServerEvent<'static>>,
    drops: DropCounters,
    denied_sent: u64,
    lost_events: u64,
    now: Duration,
    /// Addresses of the clients that left most recently and when, a ring.
    recently_left: [Option<(SocketAddr, Duration)>; RECENTLY_LEFT],
    recently_left_next: usize,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("protocol_id", &self.config.protocol_id)
            .field("public_addresses", &self.public_addresses)
            .field("max_clients", &self.slots.len())
            .field("connected", &self.by_address.len())
            .field("pending", &self.pending.len())
            .field("global_sequence", &self.global_sequence)
            .field("drops", &self.drops)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Creates a server. `challenge_key` must be fresh random bytes from the caller's CSPRNG
    /// for every construction. The global sequence starts at `config.global_sequence_start`.
    pub fn new(config: ServerConfig, challenge_key: Key) -> Result<Self, ConfigError> {
        if config.max_clients == 0 || config.max_clients > MAX_CLIENTS {
            return Err(ConfigError::MaxClients {
                got: config.max_clients,
                max: MAX_CLIENTS,
            });
        }
        if config.public_addresses.is_empty() {
            return Err(ConfigError::NoPublicAddress);
        }
        for (field, value) in [
            ("disconnect_packets", config.disconnect_packets as usize),
            ("max_pending", config.max_pending),
            ("max_pending_per_ip", config.max_pending_per_ip),
            ("token_history_capacity", config.token_history_capacity),
            ("transmit_queue_capacity", config.transmit_queue_capacity),
            ("event_queue_capacity", config.event_queue_capacity),
            (
                "rate_limit.max_requests",
                config.rate_limit.max_requests as usize,
            ),
            (
                "rate_limit.table_capacity",
                config.rate_limit.table_capacity,
            ),
            (
                "rate_limit.max_decrypts_per_second",
                config.rate_limit.max_decrypts_per_second as usize,
            ),
            (
                "keep_alive_interval",
                usize::from(!config.keep_alive_interval.is_zero()),
            ),
            (
                "rate_limit.window",
                usize::from(!config.rate_limit.window.is_zero()),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if config.global_sequence_start < GLOBAL_SEQUENCE_START {
            return Err(ConfigError::GlobalSequenceStart {
                got: config.global_sequence_start,
            });
        }
        let mut slots = Vec::with_capacity(config.max_clients);
        slots.resize_with(config.max_clients, || None);
        Ok(Self {
            public_addresses: config
                .public_addresses
                .iter()
                .map(|a| canonical(*a))
                .collect(),
            challenge_key,
            challenge_sequence: Some(0),
            global_sequence: Some(config.global_sequence_start),
            slots,
            by_address: BTreeMap::new(),
            pending: BTreeMap::new(),
            token_history: TokenHistory::new(config.token_history_capacity),
            rate_limiter: RateLimiter::new(
                config.rate_limit.table_capacity,
                config.rate_limit.max_requests,
                config.rate_limit.window,
            ),
            decrypt_budget: DecryptBudget::new(config.rate_limit.max_decrypts_per_second),
            transmit: TransmitQueue::new(config.transmit_queue_capacity),
            events: VecDeque::with_capacity(config.event_queue_capacity.min(1024)),
            drops: DropCounters::default(),
            denied_sent: 0,
            recently_left: [None; RECENTLY_LEFT],
            recently_left_next: 0,
            lost_events: 0,
            now: Duration::ZERO,
            config,
        })
    }

    /// Handles one datagram received from `from`. `now` is the caller's monotonic time and
    /// `unix_time` the current UNIX time in seconds (connect token expiry). The datagram is
    /// decrypted in place; a returned [`ServerEvent::Payload`] borrows it.
    pub fn process<'a>(
        &mut self,
        now: Duration,
        unix_time: u64,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Option<ServerEvent<'a>> {
        self.now = now;
        match self.dispatch(unix_time, from, datagram) {
            Ok(event) => event,
            Err(reason) => {
                self.drops.record(reason);
                None
            }
        }
    }

    /// `from` is the source address as received (replies go there); lookups use its
    /// canonical form, so an IPv4 peer seen through a dual-stack socket is still matched.
    fn dispatch<'a>(
        &mut self,
        unix_time: u64,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Result<Option<ServerEvent<'a>>, DropReason> {
        let Some(&prefix) = datagram.first() else {
            return Err(DropReason::TooSmall);
        };
        let key = canonical(from);
        if prefix & 0x0F == PacketType::ConnectionRequest as u8 {
            self.on_connection_request(unix_time, from, key, datagram)?;
            return Ok(None);
        }
        if let Some(&index) = self.by_address.get(&key) {
            return self.on_connected_packet(index, datagram);
        }
        if self.pending.contains_key(&key) {
            return self.on_pending_packet(from, key, datagram);
        }
        read_header(datagram, &SERVER_ACCEPTS)?;
        let window = Duration::from_secs(AFTER_DISCONNECT_SECONDS);
        let left_just_now = self
            .recently_left
            .iter()
            .flatten()
            .any(|&(address, at)| address == key && self.now.saturating_sub(at) <= window);
        Err(if left_just_now {
            DropReason::AfterDisconnect
        } else {
            DropReason::UnknownAddress
        })
    }

    fn on_connection_request(
        &mut self,
        unix_time: u64,
        from: SocketAddr,
        key: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let request = ConnectionRequest::read(datagram)?;
        if request.protocol_id != self.config.protocol_id {
            return Err(DropReason::WrongProtocolId);
        }
        if request.expire_timestamp <= unix_time {
            return Err(DropReason::TokenExpired);
        }
        if self.by_address.contains_key(&key) {
            return Err(DropReason::AddressAlreadyConnected);
        }
        if !self.rate_limiter.allow(self.now, key) {
            return Err(DropReason::RateLimited);
        }
        if !self.decrypt_budget.take(self.now) {
            return Err(DropReason::DecryptBudgetSpent);
        }
        let token = PrivateConnectToken::decrypt(
            request.private_data,
            request.protocol_id,
            request.expire_timestamp,
            request.nonce,
            &self.config.private_key,
        )
        .map_err(|e| match e {
            TokenError::DecryptFailed => DropReason::TokenDecryptFailed,
            _ => DropReason::InvalidPrivateToken,
        })?;
        if !token
            .server_addresses
            .as_slice()
            .iter()
            .any(|a| self.public_addresses.contains(a))
        {
            return Err(DropReason::WrongServerAddress);
        }
        if self.slot_of_client_id(token.client_id).is_some() {
            return Err(DropReason::ClientIdAlreadyConnected);
        }
        let tag = request
            .private_data
            .last_chunk::<MAC_BYTES>()
            .copied()
            .ok_or(DropReason::Malformed)?;
        if !self.token_history.check_and_record(tag, key) {
            return Err(DropReason::TokenAlreadyUsed);
        }
        if self.free_slot().is_none() {
            self.send_global(from, &Packet::ConnectionDenied, &token.server_to_client_key)?;
            self.denied_sent = self.denied_sent.saturating_add(1);
            return Ok(());
        }
        let kept = self
            .pending
            .get(&key)
            .filter(|p| p.client_id == token.client_id && !p.expired(self.now))
            .map(|p| p.expires_at);
        // One pending entry per client id: its newest address replaces any other. (A scan of
        // a table bounded by `max_pending`, done only for requests whose token decrypted.)
        let client_id = token.client_id;
        self.pending
            .retain(|k, p| p.client_id != client_id || *k == key);
        if kept.is_none() {
            if self.pending.len() >= self.config.max_pending {
                let now = self.now;
                self.pending.retain(|_, p| !p.expired(now));
                if self.pending.len() >= self.config.max_pending {
                    return Err(DropReason::PendingTableFull);
                }
            }
            // Loopback peers are local processes (bots, tests): told apart by port, as in
            // the rate limiter.
            let ip = key.ip();
            let same_ip = self
                .pending
                .range(SocketAddr::new(ip, 0)..=SocketAddr::new(ip, u16::MAX))
                .filter(|(k, _)| **k != key)
                .count();
            if !ip.is_loopback() && same_ip >= self.config.max_pending_per_ip {
                return Err(DropReason::PendingPerIpFull);
            }
        }
        let lifetime = Duration::from_secs(request.expire_timestamp.saturating_sub(unix_time))
            .min(self.config.pending_lifetime);
        self.pending.insert(
            key,
            Pending {
                client_id,
                send_key: token.server_to_client_key.clone(),
                receive_key: token.client_to_server_key.clone(),
                timeout: timeout_from_seconds(token.timeout_seconds),
                last_receive: self.now,
                expires_at: kept.unwrap_or(self.now.saturating_add(lifetime)),
            },
        );
        let challenge_sequence = self
            .challenge_sequence
            .ok_or(DropReason::SequenceExhausted)?;
        let challenge = ChallengeToken {
            client_id: token.client_id,
            user_data: token.user_data,
        }
        .encrypt(challenge_sequence, &self.challenge_key)?;
        self.send_global(
            from,
            &Packet::ConnectionChallenge {
                token_sequence: challenge_sequence,
                token: &challenge,
            },
            &token.server_to_client_key,
        )?;
        self.challenge_sequence = challenge_sequence.checked_add(1);
        Ok(())
    }

    fn on_pending_packet<'a>(
        &mut self,
        from: SocketAddr,
        key: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Result<Option<ServerEvent<'a>>, DropReason> {
        let protocol_id = self.config.protocol_id;
        if self.pending.get(&key).is_some_and(|p| p.expired(self.now)) {
            self.pending.remove(&key);
            return Err(DropReason::UnknownAddress);
        }
        let pending = self
            .pending
            .get_mut(&key)
            .ok_or(DropReason::UnknownAddress)?;
        let (_, packet) = read_packet(
            datagram,
            protocol_id,
            &pending.receive_key,
            &[PacketType::ConnectionResponse],
            None,
        )?;
        pending.last_receive = self.now;
        let Packet::ConnectionResponse {
            token_sequence,
            token,
        } = packet
        else {
            return Err(DropReason::UnexpectedPacketType);
        };
        let challenge = ChallengeToken::decrypt(token, token_sequence, &self.challenge_key)?;
        if self.slot_of_client_id(challenge.client_id).is_some() {
            return Err(DropReason::ClientIdAlreadyConnected);
        }
        let pending = self
            .pending
            .remove(&key)
            .ok_or(DropReason::UnknownAddress)?;
        let Some(index) = self.free_slot() else {
            self.send_global(from, &Packet::ConnectionDenied, &pending.send_key)?;
            self.denied_sent = self.denied_sent.saturating_add(1);
            return Ok(None);
        };
        let connection = Connection {
            address: from,
            key,
            client_id: challenge.client_id,
            user_data: challenge.user_data,
            send_key: pending.send_key,
            receive_key: pending.receive_key,
            next_sequence: Some(0),
            replay: ReplayWindow::new(),
            last_receive: self.now,
            last_send: self.now,
            timeout: pending.timeout,
            confirmed: false,
        };
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(connection);
        }
        self.by_address.insert(key, index);
        if let Err(reason) = self.send_keep_alive(index) {
            // The connection stands; `update` retries the keep-alive.
            self.drops.record(reason);
        }
        Ok(Some(ServerEvent::ClientConnected {
            client_index: index,
            client_id: challenge.client_id,
            address: from,
            user_data: challenge.user_data,
        }))
    }

    fn on_connected_packet<'a>(
        &mut self,
        index: usize,
        datagram: &'a mut [u8],
    ) -> Result<Option<ServerEvent<'a>>, DropReason> {
        if datagram.first().map(|p| p & 0x0F) == Some(PacketType::ConnectionResponse as u8) {
            return Err(DropReason::AddressAlreadyConnected);
        }
        let protocol_id = self.config.protocol_id;
        let now = self.now;
        let conn = self
            .slots
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or(DropReason::UnknownAddress)?;
        let (_, packet) = read_packet(
            datagram,
            protocol_id,
            &conn.receive_key,
            &[
                PacketType::KeepAlive,
                PacketType::Payload,
                PacketType::Disconnect,
            ],
            Some(&mut conn.replay),
        )?;
        conn.last_receive = now;
        match packet {
            Packet::KeepAlive { .. } => {
                conn.confirmed = true;
                Ok(None)
            }
            Packet::Payload(data) => {
                conn.confirmed = true;
                Ok(Some(ServerEvent::Payload {
                    client_index: index,
                    data,
                }))
            }
            Packet::Disconnect => Ok(self.remove_client(index, DisconnectReason::ClientRequested)),
            _ => Err(DropReason::UnexpectedPacketType),
        }
    }

    fn send_global(
        &mut self,
        destination: SocketAddr,
        packet: &Packet<'_>,
        key: &Key,
    ) -> Result<(), DropReason> {
        let sequence = self.global_sequence.ok_or(DropReason::SequenceExhausted)?;
        queue(
            &mut self.transmit,
            destination,
            packet,
            sequence,
            self.config.protocol_id,
            key,
        )?;
        self.global_sequence = sequence.checked_add(1);
        Ok(())
    }

    fn send_on_connection(&mut self, index: usize, packet: &Packet<'_>) -> Result<(), SendError> {
        let protocol_id = self.config.protocol_id;
        let capacity = self.transmit.capacity();
        let conn = self
            .slots
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or(SendError::NotConnected)?;
        let sequence = conn.next_sequence.ok_or(SendError::SequenceExhausted)?;
        match queue(
            &mut self.transmit,
            conn.address,
            packet,
            sequence,
            protocol_id,
            &conn.send_key,
        ) {
            Ok(()) => {}
            Err(QueueError::Full) => return Err(SendError::TransmitQueueFull { capacity }),
            Err(QueueError::Packet(e)) => return Err(SendError::Packet(e)),
        }
        conn.next_sequence = sequence.checked_add(1);
        conn.last_send = self.now;
        Ok(())
    }

    fn send_keep_alive(&mut self, index: usize) -> Result<(), DropReason> {
        let keep_alive = Packet::KeepAlive {
            client_index: u32::try_from(index).unwrap_or(u32::MAX),
            max_clients: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
        };
        self.send_on_connection(index, &keep_alive)
            .map_err(|e| match e {
                SendError::TransmitQueueFull { .. } => DropReason::TransmitQueueFull,
                SendError::SequenceExhausted => DropReason::SequenceExhausted,
                _ => DropReason::Malformed,
            })
    }

    /// Frees slot `index`, sending the redundant disconnect packets unless the client itself
    /// asked to leave.
    fn remove_client(
        &mut self,
        index: usize,
        reason: DisconnectReason,
    ) -> Option<ServerEvent<'static>> {
        if reason != DisconnectReason::ClientRequested {
            for _ in 0..self.config.disconnect_packets {
                if let Err(e) = self.send_on_connection(index, &Packet::Disconnect) {
                    self.drops.record(match e {
                        SendError::SequenceExhausted => DropReason::SequenceExhausted,
                        _ => DropReason::TransmitQueueFull,
                    });
                    break;
                }
            }
        }
        let conn = self.slots.get_mut(index)?.take()?;
        self.by_address.remove(&conn.key);
        if let Some(slot) = self.recently_left.get_mut(self.recently_left_next) {
            *slot = Some((conn.key, self.now));
        }
        self.recently_left_next = (self.recently_left_next + 1) % RECENTLY_LEFT;
        Some(ServerEvent::ClientDisconnected {
            client_index: index,
            client_id: conn.client_id,
            address: conn.address,
            reason,
        })
    }

    fn push_event(&mut self, event: ServerEvent<'static>) {
        if self.events.len() >= self.config.event_queue_capacity {
            self.lost_events = self.lost_events.saturating_add(1);
            return;
        }
        self.events.push_back(event);
    }

    /// Advances time: times out silent clients (queuing [`ServerEvent::ClientDisconnected`]
    /// for `poll_event`), sends keep-alives, forgets expired pending clients.
    pub fn update(&mut self, now: Duration) {
        self.now = now;
        let interval = self.config.keep_alive_interval;
        for index in 0..self.slots.len() {
            let Some(conn) = self.slots.get(index).and_then(Option::as_ref) else {
                continue;
            };
            let timed_out = conn
                .timeout
                .is_some_and(|t| now.saturating_sub(conn.last_receive) > t);
            let keep_alive_due = now.saturating_sub(conn.last_send) >= interval;
            if timed_out {
                if let Some(event) = self.remove_client(index, DisconnectReason::TimedOut) {
                    self.push_event(event);
                }
            } else if keep_alive_due && let Err(reason) = self.send_keep_alive(index) {
                self.drops.record(reason);
            }
        }
        self.pending.retain(|_, p| !p.expired(now));
        self.rate_limiter.maybe_purge(now);
    }

    /// Sends `payload` (1..=1200 bytes) to the client in slot `client_index`. An unconfirmed
    /// client gets a keep-alive first.
    pub fn send_payload(&mut self, client_index: usize, payload: &[u8]) -> Result<(), SendError> {
        if payload.is_empty() || payload.len() > MAX_PAYLOAD_BYTES {
            return Err(SendError::PayloadSize { got: payload.len() });
        }
        let max_clients = self.slots.len();
        let conn = self
            .slots
            .get(client_index)
            .ok_or(SendError::InvalidClientIndex {
                got: client_index,
                max_clients,
            })?
            .as_ref()
            .ok_or(SendError::NotConnected)?;
        let needed = if conn.confirmed { 1 } else { 2 };
        if self.transmit.len().saturating_add(needed) > self.transmit.capacity() {
            return Err(SendError::TransmitQueueFull {
                capacity: self.transmit.capacity(),
            });
        }
        if !conn.confirmed {
            let keep_alive = Packet::KeepAlive {
                client_index: u32::try_from(client_index).unwrap_or(u32::MAX),
                max_clients: u32::try_from(max_clients).unwrap_or(u32::MAX),
            };
            self.send_on_connection(client_index, &keep_alive)?;
        }
        self.send_on_connection(client_index, &Packet::Payload(payload))
    }

    /// Reserves the next packet sequence of the client in slot `client_index` for a payload
    /// the caller seals itself ([`PayloadTicket::seal`]), on any thread, after this returns:
    /// the way to encrypt many clients' payloads in parallel. An unconfirmed client gets its
    /// keep-alive queued first, as with [`Server::send_payload`]; send the queued datagrams
    /// before the sealed payloads.
    pub fn reserve_payload(&mut self, client_index: usize) -> Result<PayloadTicket, SendError> {
        let max_clients = self.slots.len();
        let conn = self
            .slots
            .get(client_index)
            .ok_or(SendError::InvalidClientIndex {
                got: client_index,
                max_clients,
            })?
            .as_ref()
            .ok_or(SendError::NotConnected)?;
        if !conn.confirmed {
            if self.transmit.len() >= self.transmit.capacity() {
                return Err(SendError::TransmitQueueFull {
                    capacity: self.transmit.capacity(),
                });
            }
            let keep_alive = Packet::KeepAlive {
                client_index: u32::try_from(client_index).unwrap_or(u32::MAX),
                max_clients: u32::try_from(max_clients).unwrap_or(u32::MAX),
            };
            self.send_on_connection(client_index, &keep_alive)?;
        }
        let now = self.now;
        let protocol_id = self.config.protocol_id;
        let conn = self
            .slots
            .get_mut(client_index)
            .and_then(Option::as_mut)
            .ok_or(SendError::NotConnected)?;
        let sequence = conn.next_sequence.ok_or(SendError::SequenceExhausted)?;
        conn.next_sequence = sequence.checked_add(1);
        conn.last_send = now;
        Ok(PayloadTicket {
            destination: conn.address,
            sequence,
            protocol_id,
            key: conn.send_key.clone(),
        })
    }

    /// Disconnects the client in slot `client_index`: queues the redundant disconnect packets,
    /// frees the slot and queues [`ServerEvent::ClientDisconnected`] for `poll_event`.
    pub fn disconnect(&mut self, client_index: usize) -> Result<(), SendError> {
        let max_clients = self.slots.len();
        match self.slots.get(client_index) {
            None => Err(SendError::InvalidClientIndex {
                got: client_index,
                max_clients,
            }),
            Some(None) => Err(SendError::NotConnected),
            Some(Some(_)) => {
                if let Some(event) =
                    self.remove_client(client_index, DisconnectReason::ServerRequested)
                {
                    self.push_event(event);
                }
                Ok(())
            }
        }
    }

    /// Disconnects every connected client.
    pub fn disconnect_all(&mut self) {
        for index in 0..self.slots.len() {
            if self.is_connected(index) {
                let _ = self.disconnect(index);
            }
        }
    }

    /// Next datagram to send. Drain until `None` after every `process`, `update` or send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.transmit.pop()
    }

    /// Next event produced by `update`, `disconnect` or `disconnect_all`.
    pub fn poll_event(&mut self) -> Option<ServerEvent<'static>> {
        self.events.pop_front()
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    fn slot_of_client_id(&self, client_id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|c| c.client_id == client_id))
    }

    /// Number of slots.
    pub fn max_clients(&self) -> usize {
        self.slots.len()
    }

    /// Number of connected clients.
    pub fn connected_clients(&self) -> usize {
        self.by_address.len()
    }

    /// Number of clients between challenge and connection.
    pub fn pending_clients(&self) -> usize {
        self.pending.len()
    }

    /// True if slot `client_index` holds a connected client.
    pub fn is_connected(&self, client_index: usize) -> bool {
        self.slots.get(client_index).is_some_and(Option::is_some)
    }

    /// Client id in slot `client_index`.
    pub fn client_id(&self, client_index: usize) -> Option<u64> {
        self.connection(client_index).map(|c| c.client_id)
    }

    /// Address of the client in slot `client_index`.
    pub fn client_address(&self, client_index: usize) -> Option<SocketAddr> {
        self.connection(client_index).map(|c| c.address)
    }

    /// User data of the client in slot `client_index`.
    pub fn user_data(&self, client_index: usize) -> Option<&[u8; USER_DATA_BYTES]> {
        self.connection(client_index).map(|c| &c.user_data)
    }

    /// Slot of the client connected from `address`.
    pub fn client_index(&self, address: SocketAddr) -> Option<usize> {
        self.by_address.get(&canonical(address)).copied()
    }

    fn connection(&self, client_index: usize) -> Option<&Connection> {
        self.slots.get(client_index).and_then(Option::as_ref)
    }

    /// Ignored datagrams, by reason.
    pub fn drop_counters(&self) -> &DropCounters {
        &self.drops
    }

    /// Connection denied packets sent (server full).
    pub fn denied_sent(&self) -> u64 {
        self.denied_sent
    }

    /// Events discarded because the event queue was full (drain `poll_event`).
    pub fn lost_events(&self) -> u64 {
        self.lost_events
    }

    /// The sequence the next challenge or denied packet will use (`None` once exhausted).
    pub fn next_global_sequence(&self) -> Option<u64> {
        self.global_sequence
    }

    /// Connect tokens currently remembered as used.
    pub fn token_history_len(&self) -> usize {
        self.token_history.len()
    }

    /// Addresses currently tracked by the connection request rate limit.
    pub fn rate_limit_table_len(&self) -> usize {
        self.rate_limiter.len()
    }
}
