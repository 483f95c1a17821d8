//! The client half of netcode 1.02, sans-IO.
//!
//! Owns the client state machine of `STANDARD.md` — exactly its ten states and only the
//! transitions it licenses (see [`ClientState::is_licensed_transition`]) — the walk through
//! the connect token's server addresses in order, connection request / challenge response
//! resends, keep-alives, timeouts, token expiry and redundant disconnects.
//!
//! Inputs are datagrams (`process`), the passage of time (`update`) and application calls
//! (`send_payload`, `disconnect`); outputs are events and datagrams (`poll_transmit`). Every
//! ignored datagram is counted by [`DropReason`]. It must never open a socket, read a clock,
//! draw randomness, accept a datagram from any address but the server it is talking to, take
//! an unlicensed transition, or panic on any datagram.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::address::canonical;
use super::error::{DropCounters, DropReason, SendError, TokenError};
use super::packet::{ConnectionRequest, Packet, PacketType, read_packet, write_packet};
use super::replay::ReplayWindow;
use super::server::timeout_from_seconds;
use super::token::ConnectToken;
use super::transmit::{QueueFull, Transmit, TransmitQueue};
use super::{CHALLENGE_TOKEN_BYTES, MAX_PAYLOAD_BYTES};

/// The client states of `STANDARD.md`, with their standard numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum ClientState {
    /// The connect token expired before a connection was established.
    ConnectTokenExpired = -6,
    /// The connect token could not be read or is inconsistent.
    InvalidConnectToken = -5,
    /// Connected, then nothing was received for the token's timeout.
    ConnectionTimedOut = -4,
    /// No keep-alive or denied packet answered the challenge responses in time.
    ConnectionResponseTimedOut = -3,
    /// No challenge or denied packet answered the connection requests in time.
    ConnectionRequestTimedOut = -2,
    /// The server denied the connection (full).
    ConnectionDenied = -1,
    /// Initial state, and the state after a clean disconnect.
    Disconnected = 0,
    /// Sending connection requests to the current server address.
    SendingConnectionRequest = 1,
    /// Sending challenge responses to the current server address.
    SendingConnectionResponse = 2,
    /// Connected.
    Connected = 3,
}

impl ClientState {
    /// The standard's numeric code.
    pub fn code(self) -> i8 {
        self as i8
    }

    /// True for the negative (error) states.
    pub fn is_error(self) -> bool {
        self.code() < 0
    }

    /// True while the handshake is under way.
    pub fn is_connecting(self) -> bool {
        matches!(
            self,
            ClientState::SendingConnectionRequest | ClientState::SendingConnectionResponse
        )
    }

    /// True if `STANDARD.md` licenses a move from `from` to `to`:
    /// - disconnected (initial) to sending connection request, or to invalid connect token;
    /// - sending connection request to sending challenge response (challenge received), to
    ///   sending connection request (next server after a failure), or to connection denied,
    ///   connection request timed out, connect token expired;
    /// - sending challenge response to connected (keep-alive received), to sending connection
    ///   request (next server), or to connection denied, connection response timed out,
    ///   connect token expired;
    /// - connected to connection timed out, or to disconnected.
    ///
    /// Error states and disconnected-after-connected are terminal.
    pub fn is_licensed_transition(from: ClientState, to: ClientState) -> bool {
        use ClientState::*;
        matches!(
            (from, to),
            (Disconnected, SendingConnectionRequest | InvalidConnectToken)
                | (
                    SendingConnectionRequest,
                    SendingConnectionResponse
                        | SendingConnectionRequest
                        | ConnectionDenied
                        | ConnectionRequestTimedOut
                        | ConnectTokenExpired
                )
                | (
                    SendingConnectionResponse,
                    Connected
                        | SendingConnectionRequest
                        | ConnectionDenied
                        | ConnectionResponseTimedOut
                        | ConnectTokenExpired
                )
                | (Connected, ConnectionTimedOut | Disconnected)
        )
    }
}

/// Client tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Period of connection requests, challenge responses and keep-alives (default 100 ms).
    pub send_interval: Duration,
    /// Redundant disconnect packets sent by `disconnect` (default 10).
    pub disconnect_packets: u32,
    /// Most datagrams waiting for `poll_transmit` (default 256).
    pub transmit_queue_capacity: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            send_interval: Duration::from_millis(100),
            disconnect_packets: 10,
            transmit_queue_capacity: 256,
        }
    }
}

/// Something the application must know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    /// The handshake completed.
    Connected {
        /// Our slot on the server.
        client_index: u32,
        /// Number of slots on the server.
        max_clients: u32,
    },
    /// Application data from the server, decrypted in place in the datagram passed to
    /// `process`.
    Payload(&'a [u8]),
    /// The client reached a terminal state (an error state, or disconnected).
    Disconnected {
        /// The terminal state.
        state: ClientState,
    },
}

/// Packet types a client reads (it ignores connection requests and responses).
const CLIENT_ACCEPTS: [PacketType; 5] = [
    PacketType::ConnectionDenied,
    PacketType::ConnectionChallenge,
    PacketType::KeepAlive,
    PacketType::Payload,
    PacketType::Disconnect,
];

/// A netcode 1.02 client.
pub struct Client {
    config: ClientConfig,
    token: Option<ConnectToken>,
    token_error: Option<TokenError>,
    state: ClientState,
    server_index: usize,
    connect_start: Duration,
    connect_budget: Duration,
    last_send: Option<Duration>,
    last_receive: Duration,
    timeout: Option<Duration>,
    next_sequence: Option<u64>,
    replay: ReplayWindow,
    challenge: Option<(u64, [u8; CHALLENGE_TOKEN_BYTES])>,
    client_index: u32,
    max_clients: u32,
    transmit: TransmitQueue,
    events: VecDeque<ClientEvent<'static>>,
    drops: DropCounters,
    now: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state)
            .field("server_address", &self.server_address())
            .field("client_index", &self.client_index)
            .field("max_clients", &self.max_clients)
            .field("drops", &self.drops)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts connecting with a 2048-byte connect token, with default tuning. If the token is
    /// unreadable the client is created in [`ClientState::InvalidConnectToken`].
    pub fn new(now: Duration, connect_token: &[u8]) -> Self {
        Self::with_config(now, connect_token, ClientConfig::default())
    }

    /// Like [`Client::new`] with explicit tuning.
    pub fn with_config(now: Duration, connect_token: &[u8], config: ClientConfig) -> Self {
        let mut client = Self {
            config,
            token: None,
            token_error: None,
            state: ClientState::Disconnected,
            server_index: 0,
            connect_start: now,
            connect_budget: Duration::ZERO,
            last_send: None,
            last_receive: now,
            timeout: None,
            next_sequence: Some(0),
            replay: ReplayWindow::new(),
            challenge: None,
            client_index: 0,
            max_clients: 0,
            transmit: TransmitQueue::new(config.transmit_queue_capacity.max(1)),
            events: VecDeque::with_capacity(4),
            drops: DropCounters::default(),
            now,
        };
        match ConnectToken::read(connect_token) {
            Ok(token) => {
                client.connect_budget = Duration::from_secs(
                    token
                        .expire_timestamp
                        .saturating_sub(token.create_timestamp),
                );
                client.timeout = timeout_from_seconds(token.timeout_seconds);
                client.token = Some(token);
                client.transition(ClientState::SendingConnectionRequest);
            }
            Err(e) => {
                client.token_error = Some(e);
                let event = client.enter_terminal(ClientState::InvalidConnectToken);
                client.events.push_back(event);
            }
        }
        client
    }

    fn transition(&mut self, to: ClientState) {
        debug_assert!(
            ClientState::is_licensed_transition(self.state, to),
            "unlicensed client transition {:?} -> {:?}",
            self.state,
            to
        );
        self.state = to;
    }

    fn enter_terminal(&mut self, state: ClientState) -> ClientEvent<'static> {
        self.transition(state);
        ClientEvent::Disconnected { state }
    }

    /// After a failure while connecting: move to the next server address, or, if none is
    /// left, to `failure`.
    fn next_server_or(&mut self, failure: ClientState) -> Option<ClientEvent<'static>> {
        let next = self.server_index.saturating_add(1);
        let has_next = self
            .token
            .as_ref()
            .is_some_and(|t| next < t.server_addresses.len());
        if has_next {
            self.transition(ClientState::SendingConnectionRequest);
            self.server_index = next;
            self.last_receive = self.now;
            self.last_send = None;
            self.challenge = None;
            self.replay = ReplayWindow::new();
            None
        } else {
            Some(self.enter_terminal(failure))
        }
    }

    /// Handles one datagram received from `from`, decrypting it in place. A returned
    /// [`ClientEvent::Payload`] borrows `datagram`.
    pub fn process<'a>(
        &mut self,
        now: Duration,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Option<ClientEvent<'a>> {
        self.now = now;
        match self.on_datagram(from, datagram) {
            Ok(event) => event,
            Err(reason) => {
                self.drops.record(reason);
                None
            }
        }
    }

    fn on_datagram<'a>(
        &mut self,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Result<Option<ClientEvent<'a>>, DropReason> {
        if !(self.state.is_connecting() || self.state == ClientState::Connected) {
            return Err(DropReason::IgnoredInState);
        }
        let token = self.token.as_ref().ok_or(DropReason::IgnoredInState)?;
        let server = token
            .server_addresses
            .as_slice()
            .get(self.server_index)
            .copied()
            .ok_or(DropReason::IgnoredInState)?;
        if canonical(from) != server {
            return Err(DropReason::WrongSource);
        }
        let (_, packet) = read_packet(
            datagram,
            token.protocol_id,
            &token.server_to_client_key,
            &CLIENT_ACCEPTS,
            Some(&mut self.replay),
        )?;
        match (packet, self.state) {
            (
                Packet::ConnectionDenied,
                ClientState::SendingConnectionRequest | ClientState::SendingConnectionResponse,
            ) => Ok(self.next_server_or(ClientState::ConnectionDenied)),
            (
                Packet::ConnectionChallenge {
                    token_sequence,
                    token,
                },
                ClientState::SendingConnectionRequest,
            ) => {
                self.challenge = Some((token_sequence, *token));
                self.transition(ClientState::SendingConnectionResponse);
                self.last_receive = self.now;
                self.last_send = None;
                Ok(None)
            }
            (
                Packet::KeepAlive {
                    client_index,
                    max_clients,
                },
                ClientState::SendingConnectionResponse,
            ) => {
                self.client_index = client_index;
                self.max_clients = max_clients;
                self.transition(ClientState::Connected);
                self.last_receive = self.now;
                Ok(Some(ClientEvent::Connected {
                    client_index,
                    max_clients,
                }))
            }
            (Packet::KeepAlive { .. }, ClientState::Connected) => {
                self.last_receive = self.now;
                Ok(None)
            }
            (Packet::Payload(data), ClientState::Connected) => {
                self.last_receive = self.now;
                Ok(Some(ClientEvent::Payload(data)))
            }
            (Packet::Disconnect, ClientState::Connected) => {
                Ok(Some(self.enter_terminal(ClientState::Disconnected)))
            }
            _ => Err(DropReason::IgnoredInState),
        }
    }

    /// Advances time: token expiry, timeouts (moving to the next server address while
    /// connecting), and the periodic connection request / challenge response / keep-alive.
    /// Terminal transitions are queued for `poll_event`.
    pub fn update(&mut self, now: Duration) {
        self.now = now;
        let timed_out = self
            .timeout
            .is_some_and(|t| now.saturating_sub(self.last_receive) > t);
        match self.state {
            ClientState::SendingConnectionRequest | ClientState::SendingConnectionResponse => {
                if now.saturating_sub(self.connect_start) >= self.connect_budget {
                    let event = self.enter_terminal(ClientState::ConnectTokenExpired);
                    self.events.push_back(event);
                    return;
                }
                if timed_out {
                    let failure = if self.state == ClientState::SendingConnectionRequest {
                        ClientState::ConnectionRequestTimedOut
                    } else {
                        ClientState::ConnectionResponseTimedOut
                    };
                    if let Some(event) = self.next_server_or(failure) {
                        self.events.push_back(event);
                        return;
                    }
                }
            }
            ClientState::Connected => {
                if timed_out {
                    let event = self.enter_terminal(ClientState::ConnectionTimedOut);
                    self.events.push_back(event);
                    return;
                }
            }
            _ => return,
        }
        let due = self
            .last_send
            .is_none_or(|t| now.saturating_sub(t) >= self.config.send_interval);
        if due && let Err(reason) = self.send_periodic() {
            self.drops.record(reason);
        }
    }

    fn send_periodic(&mut self) -> Result<(), DropReason> {
        let token = self.token.as_ref().ok_or(DropReason::IgnoredInState)?;
        let server = self.server_address().ok_or(DropReason::IgnoredInState)?;
        match self.state {
            ClientState::SendingConnectionRequest => {
                let request = ConnectionRequest {
                    protocol_id: token.protocol_id,
                    expire_timestamp: token.expire_timestamp,
                    nonce: &token.nonce,
                    private_data: &token.private_data,
                };
                match self.transmit.push_with(server, |buf| request.write(buf)) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(DropReason::from(&e)),
                    Err(QueueFull) => return Err(DropReason::TransmitQueueFull),
                }
                self.last_send = Some(self.now);
                Ok(())
            }
            ClientState::SendingConnectionResponse => {
                let (token_sequence, data) = self.challenge.ok_or(DropReason::IgnoredInState)?;
                self.send_encrypted(&Packet::ConnectionResponse {
                    token_sequence,
                    token: &data,
                })
                .map_err(send_error_reason)
            }
            ClientState::Connected => self
                .send_encrypted(&Packet::KeepAlive {
                    client_index: self.client_index,
                    max_clients: self.max_clients,
                })
                .map_err(send_error_reason),
            _ => Err(DropReason::IgnoredInState),
        }
    }

    fn send_encrypted(&mut self, packet: &Packet<'_>) -> Result<(), SendError> {
        let capacity = self.transmit.capacity();
        let server = self.server_address().ok_or(SendError::NotConnected)?;
        let token = self.token.as_ref().ok_or(SendError::NotConnected)?;
        let sequence = self.next_sequence.ok_or(SendError::SequenceExhausted)?;
        let protocol_id = token.protocol_id;
        let key = &token.client_to_server_key;
        match self.transmit.push_with(server, |buf| {
            write_packet(buf, packet, sequence, protocol_id, key)
        }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(SendError::Packet(e)),
            Err(QueueFull) => return Err(SendError::TransmitQueueFull { capacity }),
        }
        self.next_sequence = sequence.checked_add(1);
        self.last_send = Some(self.now);
        Ok(())
    }

    /// Sends `payload` (1..=1200 bytes) to the server. Only while connected.
    pub fn send_payload(&mut self, payload: &[u8]) -> Result<(), SendError> {
        if self.state != ClientState::Connected {
            return Err(SendError::NotConnected);
        }
        if payload.is_empty() || payload.len() > MAX_PAYLOAD_BYTES {
            return Err(SendError::PayloadSize { got: payload.len() });
        }
        self.send_encrypted(&Packet::Payload(payload))
    }

    /// Disconnects from the server: queues the redundant disconnect packets and moves to
    /// [`ClientState::Disconnected`] (event queued for `poll_event`). Only while connected;
    /// to abandon a handshake, drop the client.
    pub fn disconnect(&mut self) -> Result<(), SendError> {
        if self.state != ClientState::Connected {
            return Err(SendError::NotConnected);
        }
        for _ in 0..self.config.disconnect_packets {
            if let Err(e) = self.send_encrypted(&Packet::Disconnect) {
                self.drops.record(send_error_reason(e));
                break;
            }
        }
        let event = self.enter_terminal(ClientState::Disconnected);
        self.events.push_back(event);
        Ok(())
    }

    /// Next datagram to send. Drain until `None` after every `process`, `update` or send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.transmit.pop()
    }

    /// Next event produced by `new`, `update` or `disconnect`.
    pub fn poll_event(&mut self) -> Option<ClientEvent<'static>> {
        self.events.pop_front()
    }

    /// Current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// Server address currently being connected to or connected with.
    pub fn server_address(&self) -> Option<SocketAddr> {
        self.token.as_ref().and_then(|t| {
            t.server_addresses
                .as_slice()
                .get(self.server_index)
                .copied()
        })
    }

    /// Our slot on the server, once connected.
    pub fn client_index(&self) -> Option<u32> {
        (self.state == ClientState::Connected).then_some(self.client_index)
    }

    /// Number of slots on the server, once connected.
    pub fn max_clients(&self) -> Option<u32> {
        (self.state == ClientState::Connected).then_some(self.max_clients)
    }

    /// Why the connect token was refused, in [`ClientState::InvalidConnectToken`].
    pub fn token_error(&self) -> Option<&TokenError> {
        self.token_error.as_ref()
    }

    /// Ignored datagrams, by reason.
    pub fn drop_counters(&self) -> &DropCounters {
        &self.drops
    }
}

fn send_error_reason(e: SendError) -> DropReason {
    match e {
        SendError::TransmitQueueFull { .. } => DropReason::TransmitQueueFull,
        SendError::SequenceExhausted => DropReason::SequenceExhausted,
        SendError::Packet(p) => DropReason::from(&p),
        SendError::NotConnected
        | SendError::InvalidClientIndex { .. }
        | SendError::PayloadSize { .. } => DropReason::Malformed,
    }
}
