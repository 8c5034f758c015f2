//! The realtime client's bookkeeping, kept free of the browser so that it is tested
//! natively (the reconnect backoff is the socket's, [`super::socket::Backoff`]): the
//! heartbeat, which events of a topic have been seen,
//! the recent events of a topic, and which server errors are final.
//!
//! Invariants:
//! - A topic's events are delivered to the page at most once each (deduplicated by
//!   sequence number), however often the server replays them.
//! - The `since` sent on a re-subscribe is the highest sequence number below which every
//!   event has been seen, so no event is skipped across reconnects, even when events
//!   arrive out of order (an ack before an older broadcast, or another server instance).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use meridian_shared::realtime::Event;

/// How many recent events of a topic the client keeps in memory for its pages.
pub const RECENT_EVENTS_KEPT: usize = 200;
/// How many refused publishes of a topic are kept to show to the user.
pub const REJECTIONS_KEPT: usize = 5;
/// Heartbeat intervals below this are raised to it, whatever the server asks.
pub const MIN_HEARTBEAT_MS: u64 = 1_000;

/// Whether a realtime `error` is final: for a publish, the op can never succeed and
/// leaves the outbox; for a subscribe, it is not retried on this connection. Codes that
/// describe a passing condition (rate limits, an unavailable database) are retried.
pub fn is_permanent_error(code: &str) -> bool {
    !meridian_shared::realtime::error_code::is_retryable(code)
}

/// The application-level heartbeat of one connection: pings every `every_ms`, and the
/// connection is dead when a ping has gone unanswered for twice that.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    every_ms: u64,
    next_nonce: u64,
    /// Unanswered pings: nonce to the monotonic time it was sent.
    in_flight: BTreeMap<u64, f64>,
}

impl Heartbeat {
    /// How many unanswered pings are remembered (older ones are forgotten).
    const IN_FLIGHT_KEPT: usize = 16;

    pub fn new(every_ms: u64) -> Heartbeat {
        Heartbeat {
            every_ms: every_ms.max(MIN_HEARTBEAT_MS),
            next_nonce: 1,
            in_flight: BTreeMap::new(),
        }
    }

    /// The ping interval in milliseconds.
    pub fn every_ms(&self) -> u64 {
        self.every_ms
    }

    /// Records a ping sent at `now_ms` and returns its nonce.
    pub fn ping(&mut self, now_ms: f64) -> u64 {
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.in_flight.insert(nonce, now_ms);
        while self.in_flight.len() > Self::IN_FLIGHT_KEPT {
            self.in_flight.pop_first();
        }
        nonce
    }

    /// Records a pong; returns the round-trip time of its ping, or `None` for a nonce
    /// this heartbeat did not send (or already forgot). A pong also answers every older
    /// ping, since the server answers in order.
    pub fn pong(&mut self, nonce: u64, now_ms: f64) -> Option<f64> {
        let sent = self.in_flight.remove(&nonce)?;
        self.in_flight.retain(|other, _| *other > nonce);
        Some((now_ms - sent).max(0.0))
    }

    /// Whether the oldest unanswered ping is at least two intervals old.
    pub fn is_dead(&self, now_ms: f64) -> bool {
        self.dead_in(now_ms) == Some(0.0)
    }

    /// How long until the oldest unanswered ping is two intervals old (zero once it is),
    /// or `None` when every ping is answered.
    pub fn dead_in(&self, now_ms: f64) -> Option<f64> {
        let oldest = self.in_flight.values().next()?;
        Some((oldest + 2.0 * self.every_ms as f64 - now_ms).max(0.0))
    }
}

/// Which sequence numbers of one topic have been seen: every number up to `contiguous`,
/// plus the ones in `above`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqTracker {
    contiguous: u64,
    above: BTreeSet<u64>,
}

impl SeqTracker {
    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.contiguous || self.above.contains(&seq)
    }

    /// Marks `seq` as seen; returns whether it was new.
    pub fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        self.above.insert(seq);
        self.compact();
        true
    }

    /// Treats every sequence number up to `seq` as seen (they are known to be gone, or
    /// were never asked for).
    pub fn skip_to(&mut self, seq: u64) {
        if seq > self.contiguous {
            self.contiguous = seq;
            self.above.retain(|above| *above > seq);
            self.compact();
        }
    }

    /// The highest sequence number below which nothing is missing: what a re-subscribe
    /// sends as `since`.
    pub fn watermark(&self) -> u64 {
        self.contiguous
    }

    /// The highest sequence number seen at all.
    pub fn highest(&self) -> u64 {
        self.above.last().copied().unwrap_or(self.contiguous)
    }

    fn compact(&mut self) {
        while self.above.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }
}

/// A publish the server refused for good.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub op_id: String,
    pub code: String,
    pub message: String,
    pub payload: serde_json::Value,
}

/// One remembered subscription: what has been seen of the topic, its recent events, and
/// whether it is subscribed on the current connection.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicLog {
    topic: String,
    /// Whether the first subscribe asks for the topic's history (`since: 0`) rather than
    /// only for live events.
    from_start: bool,
    seen: SeqTracker,
    events: BTreeMap<u64, Event>,
    /// The `since` of the subscribe in flight on this connection, once sent.
    requested: Option<Option<u64>>,
    subscribed: bool,
    /// After a truncated replay, the first replayed event shows where history resumes.
    replay_gap: bool,
    error: Option<String>,
    rejections: VecDeque<Rejection>,
}

impl TopicLog {
    pub fn new(topic: impl Into<String>, from_start: bool) -> TopicLog {
        TopicLog {
            topic: topic.into(),
            from_start,
            seen: SeqTracker::default(),
            events: BTreeMap::new(),
            requested: None,
            subscribed: false,
            replay_gap: false,
            error: None,
            rejections: VecDeque::new(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Asks for history from now on, if it did not already.
    pub fn want_history(&mut self) {
        self.from_start = true;
    }

    /// The `since` to subscribe with: what is missing after the watermark, or nothing
    /// (live events only) for a topic that never wanted history and has seen nothing.
    pub fn subscribe_since(&self) -> Option<u64> {
        if self.from_start || self.seen.watermark() > 0 {
            Some(self.seen.watermark())
        } else {
            None
        }
    }

    /// A subscribe with `since` was sent on a new connection.
    pub fn subscribing(&mut self, since: Option<u64>) {
        self.requested = Some(since);
        self.subscribed = false;
    }

    /// The server confirmed the subscribe. `head` is the topic's latest sequence number.
    pub fn subscribed(&mut self, head: u64, truncated: bool) {
        if head < self.seen.highest() {
            // The server's log is behind what this page saw: it was reset (a fresh
            // database). What was seen no longer exists; start over from its head.
            self.seen = SeqTracker::default();
            self.events.clear();
        }
        if let Some(None) = self.requested {
            // Live events only were asked for: everything up to the head is not wanted.
            self.seen.skip_to(head);
        }
        self.replay_gap = truncated;
        self.subscribed = true;
        self.error = None;
    }

    /// The connection closed; the next one subscribes again.
    pub fn disconnected(&mut self) {
        self.subscribed = false;
        self.requested = None;
        self.replay_gap = false;
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed
    }

    /// Whether a subscribe was sent on the current connection (answered or not).
    pub fn is_requested(&self) -> bool {
        self.requested.is_some()
    }

    /// An event arrived. Returns whether it is new (not a duplicate).
    pub fn event(&mut self, event: Event) -> bool {
        if self.replay_gap {
            self.replay_gap = false;
            self.seen.skip_to(event.seq.saturating_sub(1));
        }
        self.insert(event)
    }

    /// A publish was acknowledged with `seq`: its event is known without waiting for the
    /// broadcast (which is then a duplicate). Returns whether it was new.
    pub fn acknowledged(&mut self, event: Event) -> bool {
        self.insert(event)
    }

    fn insert(&mut self, event: Event) -> bool {
        if !self.seen.insert(event.seq) {
            return false;
        }
        self.events.insert(event.seq, event);
        while self.events.len() > RECENT_EVENTS_KEPT {
            self.events.pop_first();
        }
        true
    }

    /// The server refused to subscribe: the topic is not subscribed on this connection
    /// and may be asked for again.
    pub fn failed(&mut self, message: String) {
        self.error = Some(message);
        self.subscribed = false;
        self.requested = None;
    }

    /// The server refused one of this topic's publishes for good.
    pub fn rejected(&mut self, rejection: Rejection) {
        self.rejections.push_back(rejection);
        while self.rejections.len() > REJECTIONS_KEPT {
            self.rejections.pop_front();
        }
    }

    /// The recent events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.values()
    }

    pub fn contains_op(&self, op_id: &str) -> bool {
        self.events.values().any(|event| event.op_id == op_id)
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn rejections(&self) -> impl Iterator<Item = &Rejection> {
        self.rejections.iter()
    }

    pub fn watermark(&self) -> u64 {
        self.seen.watermark()
    }
}

/// A bounded set of recently settled op ids (acknowledged or refused), so that an outbox
/// read from storage that raced with their removal does not bring them back.
#[derive(Debug, Clone, Default)]
pub struct RecentOps {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentOps {
    const KEPT: usize = 512;

    pub fn insert(&mut self, op_id: &str) {
        if self.set.insert(op_id.to_owned()) {
            self.order.push_back(op_id.to_owned());
            while self.order.len() > Self::KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn contains(&self, op_id: &str) -> bool {
        self.set.contains(op_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: u64) -> Event {
        Event {
            topic: "public:lobby".into(),
            seq,
            op_id: format!("op-{seq}"),
            payload: json!({"text": format!("message {seq}")}),
            at_ms: seq as i64,
        }
    }

    #[test]
    fn only_passing_conditions_keep_an_op() {
        assert!(is_permanent_error("forbidden_topic"));
        assert!(is_permanent_error("invalid_payload"));
        assert!(is_permanent_error("invalid_topic"));
        assert!(is_permanent_error("payload_too_large"));
        assert!(!is_permanent_error("rate_limited"));
        assert!(!is_permanent_error("unavailable"));
        assert!(is_permanent_error("too_many_subscriptions"));
    }

    #[test]
    fn heartbeat_measures_round_trips_and_detects_silence() {
        let mut heartbeat = Heartbeat::new(10_000);
        assert!(!heartbeat.is_dead(1e9));
        let first = heartbeat.ping(1_000.0);
        assert_eq!(heartbeat.pong(first, 1_042.0), Some(42.0));
        assert_eq!(heartbeat.pong(first, 1_050.0), None, "answered once");
        assert_eq!(heartbeat.pong(999, 1_050.0), None, "never sent");

        let unanswered = heartbeat.ping(2_000.0);
        heartbeat.ping(12_000.0);
        assert!(!heartbeat.is_dead(21_999.0));
        assert_eq!(heartbeat.dead_in(21_000.0), Some(1_000.0));
        assert!(heartbeat.is_dead(22_000.0));
        assert_eq!(heartbeat.dead_in(25_000.0), Some(0.0));
        // A late pong for the newer ping answers the older one too.
        let newest = heartbeat.ping(22_000.0);
        assert_eq!(heartbeat.pong(newest, 22_010.0), Some(10.0));
        assert!(!heartbeat.is_dead(60_000.0));
        assert_eq!(heartbeat.dead_in(60_000.0), None);
        assert_eq!(heartbeat.pong(unanswered, 22_020.0), None);
    }

    #[test]
    fn heartbeat_interval_has_a_floor() {
        assert_eq!(Heartbeat::new(0).every_ms(), MIN_HEARTBEAT_MS);
        assert_eq!(Heartbeat::new(25_000).every_ms(), 25_000);
    }

    #[test]
    fn seq_tracker_keeps_a_gapless_watermark() {
        let mut seen = SeqTracker::default();
        assert!(seen.insert(1));
        assert!(seen.insert(3));
        assert!(!seen.insert(3));
        assert_eq!(seen.watermark(), 1);
        assert_eq!(seen.highest(), 3);
        assert!(seen.insert(2));
        assert_eq!(seen.watermark(), 3);
        seen.skip_to(10);
        assert!(!seen.insert(7));
        assert!(seen.insert(12));
        assert_eq!(seen.watermark(), 10);
        seen.skip_to(5);
        assert_eq!(seen.watermark(), 10, "skip_to never goes back");
        assert!(seen.insert(11));
        assert_eq!(seen.watermark(), 12);
    }

    #[test]
    fn topic_history_subscribes_from_zero_then_from_the_watermark() {
        let mut log = TopicLog::new("public:lobby", true);
        assert_eq!(log.subscribe_since(), Some(0));
        log.subscribing(Some(0));
        log.subscribed(2, false);
        assert!(log.event(event(1)));
        assert!(log.event(event(2)));
        assert!(!log.event(event(2)), "duplicate delivery");
        log.disconnected();
        assert!(!log.is_subscribed());
        assert_eq!(log.subscribe_since(), Some(2));
    }

    #[test]
    fn live_only_topics_skip_what_came_before_the_head() {
        let mut log = TopicLog::new("user:u1", false);
        assert_eq!(log.subscribe_since(), None);
        log.subscribing(None);
        log.subscribed(41, false);
        assert_eq!(log.watermark(), 41);
        assert!(log.event(event(42)));
        log.disconnected();
        assert_eq!(log.subscribe_since(), Some(42));
    }

    #[test]
    fn an_ack_before_an_older_broadcast_loses_nothing() {
        let mut log = TopicLog::new("public:lobby", true);
        log.subscribing(Some(0));
        log.subscribed(0, false);
        // Our publish got seq 2 before someone else's seq 1 reached us.
        assert!(log.acknowledged(event(2)));
        assert_eq!(log.watermark(), 0, "seq 1 is still missing");
        assert!(log.event(event(1)));
        assert!(
            !log.event(event(2)),
            "the broadcast of our own op is a duplicate"
        );
        assert_eq!(log.watermark(), 2);
        let seqs: Vec<u64> = log.events().map(|event| event.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert!(log.contains_op("op-2"));
    }

    #[test]
    fn a_truncated_replay_resumes_at_its_first_event() {
        let mut log = TopicLog::new("public:lobby", true);
        log.subscribing(Some(0));
        log.subscribed(5_000, true);
        assert!(log.event(event(4_001)));
        assert_eq!(log.watermark(), 4_001);
        log.disconnected();
        assert_eq!(log.subscribe_since(), Some(4_001));
    }

    #[test]
    fn a_reset_server_log_starts_over() {
        let mut log = TopicLog::new("public:lobby", true);
        log.subscribing(Some(0));
        log.subscribed(3, false);
        for seq in 1..=3 {
            log.event(event(seq));
        }
        log.disconnected();
        log.subscribing(Some(3));
        log.subscribed(1, false);
        assert_eq!(log.events().count(), 0);
        assert!(log.event(event(1)));
    }

    #[test]
    fn recent_events_are_bounded() {
        let mut log = TopicLog::new("public:lobby", true);
        for seq in 1..=(RECENT_EVENTS_KEPT as u64 + 10) {
            log.event(event(seq));
        }
        assert_eq!(log.events().count(), RECENT_EVENTS_KEPT);
        assert_eq!(log.events().next().map(|event| event.seq), Some(11));
    }

    #[test]
    fn rejections_are_bounded_and_errors_clear_on_subscribe() {
        let mut log = TopicLog::new("public:lobby", true);
        for n in 0..(REJECTIONS_KEPT + 2) {
            log.rejected(Rejection {
                op_id: n.to_string(),
                code: "invalid_payload".into(),
                message: "no".into(),
                payload: json!({}),
            });
        }
        assert_eq!(log.rejections().count(), REJECTIONS_KEPT);
        log.failed("forbidden".into());
        assert_eq!(log.error(), Some("forbidden"));
        log.subscribing(Some(0));
        log.subscribed(0, false);
        assert_eq!(log.error(), None);
    }

    #[test]
    fn recent_ops_forget_the_oldest() {
        let mut recent = RecentOps::default();
        for n in 0..(RecentOps::KEPT + 1) {
            recent.insert(&n.to_string());
        }
        assert!(!recent.contains("0"));
        assert!(recent.contains("1"));
        assert!(recent.contains(&RecentOps::KEPT.to_string()));
    }
}
