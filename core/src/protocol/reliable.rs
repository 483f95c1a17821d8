//! The small reliable channel carried inside every packet: sequence numbers, cumulative acks,
//! resend-until-acked and in-order delivery.
//!
//! The sender puts each message in the next packet, and again every `resend` packets until it
//! is acknowledged; the receiver accepts only the contiguous run that continues what it has, so
//! delivery is in order and exactly once. Sequence numbers are u16 and wrap; the queue is bounded.

use std::collections::VecDeque;

/// Sending half: a bounded queue of unacknowledged messages.
#[derive(Debug)]
pub struct ReliableSender<M> {
    /// Unacknowledged messages with the packet number they were last sent in.
    queue: VecDeque<(M, Option<u64>)>,
    first_seq: u16,
    capacity: usize,
}

impl<M> ReliableSender<M> {
    /// A sender holding at most `capacity` unacknowledged messages (at most 32,768).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, 1 << 15);
        Self {
            queue: VecDeque::with_capacity(capacity),
            first_seq: 0,
            capacity,
        }
    }

    /// Queues a message; gives it back if the queue is full (the peer is not acknowledging).
    pub fn send(&mut self, message: M) -> Result<u16, M> {
        if self.queue.len() >= self.capacity {
            return Err(message);
        }
        let seq = self.first_seq.wrapping_add(self.queue.len() as u16);
        self.queue.push_back((message, None));
        Ok(seq)
    }

    /// Queues a message only while fewer than `limit` are unacknowledged (and the queue is not
    /// full): bulk traffic (chat, the combat log) stops short of the capacity kept for
    /// control messages, which [`ReliableSender::send`] may still queue.
    pub fn send_within(&mut self, message: M, limit: usize) -> Result<u16, M> {
        if self.queue.len() >= limit {
            return Err(message);
        }
        self.send(message)
    }

    /// Takes the peer's cumulative ack (the next sequence it expects). An ack beyond what was
    /// sent is ignored and reported as `false`.
    pub fn on_ack(&mut self, next_expected: u16) -> bool {
        let acked = next_expected.wrapping_sub(self.first_seq) as usize;
        if acked > self.queue.len() {
            return false;
        }
        self.queue.drain(..acked);
        self.first_seq = next_expected;
        true
    }

    /// Sequence number of the oldest unacknowledged message.
    pub fn first_seq(&self) -> u16 {
        self.first_seq
    }

    /// Unacknowledged messages, oldest first.
    pub fn unacked(&self) -> impl Iterator<Item = &M> {
        self.queue.iter().map(|(m, _)| m)
    }

    /// The run of messages due in packet number `now`: from the first one never sent or last
    /// sent `resend` or more packets ago, to the newest. Returns the run's first sequence number
    /// and the messages; mark what was actually written with [`ReliableSender::mark_sent`].
    pub fn due(&self, now: u64, resend: u64) -> (u16, impl Iterator<Item = &M>) {
        let start = self
            .queue
            .iter()
            .position(|(_, sent)| sent.is_none_or(|t| now.saturating_sub(t) >= resend))
            .unwrap_or(self.queue.len());
        (
            self.first_seq.wrapping_add(start as u16),
            self.queue.iter().skip(start).map(|(m, _)| m),
        )
    }

    /// Records that `count` messages from sequence `first` went out in packet number `now`.
    pub fn mark_sent(&mut self, first: u16, count: usize, now: u64) {
        let start = first.wrapping_sub(self.first_seq) as usize;
        for (_, sent) in self.queue.iter_mut().skip(start).take(count) {
            *sent = Some(now);
        }
    }

    /// Number of unacknowledged messages.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether everything was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Receiving half: the next sequence number expected.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReliableReceiver {
    next: u16,
}

impl ReliableReceiver {
    /// The cumulative ack to send back.
    pub fn ack(&self) -> u16 {
        self.next
    }

    /// Given the messages of one packet (consecutive from `first`), returns those not delivered
    /// before, in order, and advances. A packet that starts after a gap delivers nothing.
    pub fn accept<'m, M>(&mut self, first: u16, messages: &'m [M]) -> &'m [M] {
        let skip = self.next.wrapping_sub(first) as usize;
        if skip >= 1 << 15 {
            return &[]; // starts after what we have: a gap
        }
        let fresh = messages.get(skip..).unwrap_or(&[]);
        self.next = self.next.wrapping_add(fresh.len() as u16);
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_stops_at_its_limit_and_control_messages_use_the_reserve() {
        let mut tx = ReliableSender::new(8);
        for i in 0..6u32 {
            assert!(tx.send_within(i, 6).is_ok());
        }
        assert_eq!(tx.send_within(6, 6), Err(6), "bulk stops at its limit");
        assert!(
            tx.send(100).is_ok() && tx.send(101).is_ok(),
            "the reserve takes control"
        );
        assert_eq!(tx.send(102), Err(102), "the capacity still binds");
    }

    #[test]
    fn delivers_in_order_exactly_once_across_wrap() {
        let mut tx = ReliableSender::new(64);
        let mut rx = ReliableReceiver { next: u16::MAX - 2 };
        tx.first_seq = u16::MAX - 2;
        let mut got = Vec::new();
        for i in 0..10u32 {
            tx.send(i).unwrap();
            let msgs: Vec<u32> = tx.unacked().copied().collect();
            // Every other packet is lost.
            if i % 2 == 0 {
                got.extend_from_slice(rx.accept(tx.first_seq(), &msgs));
                got.extend_from_slice(rx.accept(tx.first_seq(), &msgs)); // duplicate
            }
            if i % 4 == 0 {
                assert!(tx.on_ack(rx.ack()));
            }
        }
        got.extend_from_slice(
            rx.accept(tx.first_seq(), &tx.unacked().copied().collect::<Vec<_>>()),
        );
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn gaps_deliver_nothing_and_bogus_acks_are_refused() {
        let mut rx = ReliableReceiver::default();
        assert!(rx.accept(5, &[1, 2]).is_empty());
        assert_eq!(rx.ack(), 0);
        let mut tx = ReliableSender::new(2);
        tx.send('a').unwrap();
        tx.send('b').unwrap();
        assert_eq!(tx.send('c'), Err('c'));
        assert!(!tx.on_ack(9));
        assert_eq!(tx.len(), 2);
        assert!(tx.on_ack(1));
        assert_eq!(tx.unacked().copied().collect::<String>(), "b");
    }
}

#[cfg(test)]
mod resend_tests {
    use super::*;

    #[test]
    fn messages_go_out_once_then_again_after_the_resend_interval() {
        let mut tx = ReliableSender::new(8);
        tx.send(1).unwrap();
        let (first, due) = tx.due(10, 5);
        assert_eq!((first, due.count()), (0, 1));
        tx.mark_sent(0, 1, 10);
        tx.send(2).unwrap();
        let (first, due) = tx.due(11, 5);
        assert_eq!(
            (first, due.copied().collect::<Vec<_>>()),
            (1, vec![2]),
            "only the new one"
        );
        tx.mark_sent(1, 1, 11);
        assert_eq!(tx.due(12, 5).1.count(), 0, "nothing due");
        let (first, due) = tx.due(15, 5);
        assert_eq!(
            (first, due.copied().collect::<Vec<_>>()),
            (0, vec![1, 2]),
            "resend from the oldest"
        );
    }
}
