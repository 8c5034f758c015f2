//! The news feed: the wire types of `/api/feed` and the ranking both the server and tests
//! run.
//!
//! Ranking is a pure function ([`rank`]) of the candidates and a clock value: the same
//! candidates at the same `now_ms` always give the same order and the same reasons
//! (ties broken by post id, newest first). Its weights are the constants below.
//!
//! Score of a candidate (before the author-diversity pass):
//!
//! ```text
//! score = SOURCE_WEIGHT[source]
//!       + W_RECENCY  * 0.5^(age / RECENCY_HALF_LIFE_MS)      recency decay
//!       + W_AFFINITY * ln(1 + interactions with the author)  author affinity
//!       + W_VELOCITY * ln(1 + likes per hour since posted)   engagement velocity
//!       + CONTENT_WEIGHT[content type]                       original, reply, link
//! ```
//!
//! Then, X's author-diversity rule: items are picked greedily by score, and the n-th
//! item of one author (counting from 0) has its score multiplied by
//! `DIVERSITY_DECAY^n`, so a prolific author cannot fill a page.

use serde::{Deserialize, Serialize};

/// The longest post, in characters.
pub const MAX_POST_CHARS: usize = 500;
/// The largest page of `GET /api/feed`.
pub const MAX_PAGE: usize = 100;
/// The page size when `limit` is not given.
pub const DEFAULT_PAGE: usize = 20;
/// How many ranked items one feed snapshot holds (what a cursor can page through).
pub const SNAPSHOT_ITEMS: usize = 200;
/// Posts shown on a profile.
pub const PROFILE_POSTS: usize = 20;

/// Weight of being in the feed by way of the followed graph or a popular post.
pub const W_SOURCE_NETWORK: f64 = 1.0;
pub const W_SOURCE_PULLED: f64 = 1.0;
pub const W_SOURCE_POPULAR: f64 = 0.2;
/// Recency: full weight when new, half every `RECENCY_HALF_LIFE_MS`.
pub const W_RECENCY: f64 = 2.0;
pub const RECENCY_HALF_LIFE_MS: f64 = 6.0 * 3600.0 * 1000.0;
/// Author affinity: past likes and replies of the reader on the author's posts.
pub const W_AFFINITY: f64 = 0.6;
/// Engagement velocity: likes per hour since the post was made (ages under an hour
/// count as an hour).
pub const W_VELOCITY: f64 = 0.5;
/// Content type.
pub const W_CONTENT_ORIGINAL: f64 = 0.3;
pub const W_CONTENT_REPLY: f64 = 0.0;
pub const W_CONTENT_LINK: f64 = 0.15;
/// Author diversity: the n-th item of one author is multiplied by this to the n.
pub const DIVERSITY_DECAY: f64 = 0.6;
/// An affinity at or above this many interactions is given as a reason.
pub const AFFINITY_REASON_MIN: u32 = 1;
/// A velocity (likes per hour) at or above this is given as a reason.
pub const VELOCITY_REASON_MIN: f64 = 5.0;
/// An age under this is given as a reason ("new").
pub const RECENT_REASON_MS: i64 = 3600 * 1000;

/// `POST /api/feed/posts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewPost {
    pub text: String,
    /// The post this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// A post as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedPost {
    pub id: String,
    /// The author's user id (as `/api/auth/me` gives it).
    pub author_id: String,
    pub author_name: String,
    pub text: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    pub created_at_ms: i64,
    pub likes: u64,
    pub replies: u64,
    /// Whether the reader likes it.
    pub liked: bool,
}

/// Why an item is in the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedReason {
    /// `followed` (pushed from a followed account), `followed_large` (pulled from a
    /// followed large account), `popular` (outside the network), `affinity`, `engaging`,
    /// `recent`, `reply`, `link`, `diversity` (lowered for a repeated author).
    pub code: String,
    pub detail: String,
}

/// One item of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedItem {
    pub post: FeedPost,
    pub reasons: Vec<FeedReason>,
}

/// `GET /api/feed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedPage {
    pub items: Vec<FeedItem>,
    /// The next page's cursor; `null` at the end.
    pub next_cursor: Option<String>,
}

/// `GET /api/feed/users/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedProfile {
    pub user_id: String,
    pub username: String,
    pub followers: u64,
    pub following: u64,
    pub posts_count: u64,
    /// Whether the reader follows this account (false for a guest).
    pub followed: bool,
    /// The newest posts, newest first.
    pub posts: Vec<FeedPost>,
}

/// The answer to a follow or unfollow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FollowState {
    pub user_id: String,
    pub followed: bool,
    pub followers: u64,
}

/// The answer to a like or unlike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LikeState {
    pub post_id: String,
    pub liked: bool,
    pub likes: u64,
}

/// The realtime event on `user:<id>` announcing a new post from a followed account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedEvent {
    NewPost { post_id: String, author_id: String },
}

/// How a candidate reached the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Pushed into the reader's inbox by fanout.
    Network,
    /// Pulled at read time from a followed large account.
    Pulled,
    /// A popular post from outside the reader's network.
    Popular,
}

/// What ranking knows about a candidate post.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub post_id: u64,
    pub author_id: String,
    pub author_name: String,
    pub created_at_ms: i64,
    pub likes: u64,
    pub is_reply: bool,
    pub has_link: bool,
    pub source: Source,
    /// The reader's likes and replies on this author's posts.
    pub affinity: u32,
}

/// A ranked candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub post_id: u64,
    pub score: f64,
    pub reasons: Vec<FeedReason>,
}

fn reason(code: &str, detail: String) -> FeedReason {
    FeedReason {
        code: code.to_owned(),
        detail,
    }
}

/// The score of one candidate before diversity, with its reasons.
pub fn score(candidate: &Candidate, now_ms: i64) -> (f64, Vec<FeedReason>) {
    let mut reasons = Vec::new();
    let source = match candidate.source {
        Source::Network => {
            reasons.push(reason(
                "followed",
                format!("you follow {}", candidate.author_name),
            ));
            W_SOURCE_NETWORK
        }
        Source::Pulled => {
            reasons.push(reason(
                "followed_large",
                format!("you follow {} (a large account)", candidate.author_name),
            ));
            W_SOURCE_PULLED
        }
        Source::Popular => {
            reasons.push(reason(
                "popular",
                format!("popular outside your network ({} likes)", candidate.likes),
            ));
            W_SOURCE_POPULAR
        }
    };
    let age_ms = (now_ms - candidate.created_at_ms).max(0);
    let recency = W_RECENCY * 0.5f64.powf(age_ms as f64 / RECENCY_HALF_LIFE_MS);
    if age_ms < RECENT_REASON_MS {
        reasons.push(reason("recent", "posted within the hour".to_owned()));
    }
    let affinity = W_AFFINITY * (1.0 + candidate.affinity as f64).ln();
    if candidate.affinity >= AFFINITY_REASON_MIN {
        reasons.push(reason(
            "affinity",
            format!(
                "you interacted with {} {} time{}",
                candidate.author_name,
                candidate.affinity,
                if candidate.affinity == 1 { "" } else { "s" }
            ),
        ));
    }
    let hours = (age_ms as f64 / 3_600_000.0).max(1.0);
    let per_hour = candidate.likes as f64 / hours;
    let velocity = W_VELOCITY * (1.0 + per_hour).ln();
    if per_hour >= VELOCITY_REASON_MIN {
        reasons.push(reason("engaging", format!("{per_hour:.0} likes an hour")));
    }
    let content = if candidate.is_reply {
        reasons.push(reason("reply", "a reply in a conversation".to_owned()));
        W_CONTENT_REPLY
    } else if candidate.has_link {
        reasons.push(reason("link", "shares a link".to_owned()));
        W_CONTENT_LINK
    } else {
        W_CONTENT_ORIGINAL
    };
    (source + recency + affinity + velocity + content, reasons)
}

/// Orders `candidates` for a reader at `now_ms`: best first, deterministic, each with
/// its reasons; a post appears once (the first candidate of an id wins). At most `max`
/// items.
pub fn rank(candidates: &[Candidate], now_ms: i64, max: usize) -> Vec<Ranked> {
    use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

    /// An author's next item in the heap: best adjusted score, then the newer post.
    struct Head {
        adjusted: f64,
        post_id: u64,
        author: usize,
    }
    impl PartialEq for Head {
        fn eq(&self, other: &Head) -> bool {
            self.cmp(other) == std::cmp::Ordering::Equal
        }
    }
    impl Eq for Head {}
    impl PartialOrd for Head {
        fn partial_cmp(&self, other: &Head) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Head {
        fn cmp(&self, other: &Head) -> std::cmp::Ordering {
            self.adjusted
                .total_cmp(&other.adjusted)
                .then(self.post_id.cmp(&other.post_id))
        }
    }

    let mut seen = HashSet::new();
    let mut scored: Vec<(f64, &Candidate, Vec<FeedReason>)> = candidates
        .iter()
        .filter(|c| seen.insert(c.post_id))
        .map(|c| {
            let (s, reasons) = score(c, now_ms);
            (s, c, reasons)
        })
        .collect();
    // Best first; equal scores: the newer post first.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.post_id.cmp(&a.1.post_id)));
    // Each author's items in that order; only each author's next item competes.
    let mut slot_of: HashMap<&str, usize> = HashMap::new();
    let mut queues: Vec<VecDeque<(f64, &Candidate, Vec<FeedReason>)>> = Vec::new();
    for item in scored {
        let slot = *slot_of.entry(item.1.author_id.as_str()).or_insert_with(|| {
            queues.push(VecDeque::new());
            queues.len() - 1
        });
        queues[slot].push_back(item);
    }
    let mut heap: BinaryHeap<Head> = queues
        .iter()
        .enumerate()
        .filter_map(|(author, q)| {
            q.front().map(|(s, c, _)| Head {
                adjusted: *s,
                post_id: c.post_id,
                author,
            })
        })
        .collect();
    let mut shown = vec![0i32; queues.len()];
    let mut out = Vec::with_capacity(candidates.len().min(max));
    while out.len() < max {
        let Some(head) = heap.pop() else { break };
        let (_, c, mut reasons) = queues[head.author]
            .pop_front()
            .expect("a head has its item");
        let n = shown[head.author];
        if n > 0 {
            reasons.push(reason(
                "diversity",
                format!("lowered: {} more from {}", n, c.author_name),
            ));
        }
        shown[head.author] = n + 1;
        out.push(Ranked {
            post_id: c.post_id,
            score: head.adjusted,
            reasons,
        });
        if let Some((s, next, _)) = queues[head.author].front() {
            heap.push(Head {
                adjusted: s * DIVERSITY_DECAY.powi(n + 1),
                post_id: next.post_id,
                author: head.author,
            });
        }
    }
    out
}

/// A position in a ranked snapshot: the snapshot's id and how many items were shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub snapshot: String,
    pub offset: usize,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.snapshot, self.offset)
    }

    /// Parses `snapshot.offset` (the snapshot id in decimal digits).
    pub fn parse(text: &str) -> Option<Cursor> {
        let (snapshot, offset) = text.split_once('.')?;
        if snapshot.is_empty()
            || snapshot.len() > 20
            || !snapshot.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let offset: usize = offset.parse().ok()?;
        if offset > SNAPSHOT_ITEMS {
            return None;
        }
        Some(Cursor {
            snapshot: snapshot.to_owned(),
            offset,
        })
    }
}

/// Whether a post's text is acceptable: 1 to [`MAX_POST_CHARS`] characters, not blank,
/// no NUL (PostgreSQL's text cannot hold it).
pub fn check_post_text(text: &str) -> Result<(), &'static str> {
    if text.trim().is_empty() {
        return Err("a post needs some text");
    }
    if text.chars().count() > MAX_POST_CHARS {
        return Err("a post has at most 500 characters");
    }
    if text.contains('\0') {
        return Err("a post cannot contain NUL characters");
    }
    Ok(())
}

/// Whether `text` can be a user id (a snowflake in decimal): anything else names no
/// account.
pub fn is_user_id(text: &str) -> bool {
    (1..=20).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a text shares a link (the `link` content type).
pub fn has_link(text: &str) -> bool {
    text.contains("http://") || text.contains("https://")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000;

    fn candidate(id: u64, author: &str, age_h: i64, likes: u64, source: Source) -> Candidate {
        Candidate {
            post_id: id,
            author_id: author.to_owned(),
            author_name: author.to_owned(),
            created_at_ms: 100 * HOUR - age_h * HOUR,
            likes,
            is_reply: false,
            has_link: false,
            source,
            affinity: 0,
        }
    }

    #[test]
    fn newer_posts_rank_higher_all_else_equal() {
        let ranked = rank(
            &[
                candidate(1, "a", 10, 0, Source::Network),
                candidate(2, "b", 1, 0, Source::Network),
            ],
            100 * HOUR,
            10,
        );
        assert_eq!(ranked[0].post_id, 2);
    }

    #[test]
    fn affinity_and_velocity_lift_a_post_and_say_so() {
        let mut liked_author = candidate(1, "a", 2, 0, Source::Network);
        liked_author.affinity = 4;
        let plain = candidate(2, "b", 2, 0, Source::Network);
        let ranked = rank(&[plain, liked_author], 100 * HOUR, 10);
        assert_eq!(ranked[0].post_id, 1);
        assert!(ranked[0].reasons.iter().any(|r| r.code == "affinity"));
        let hot = candidate(3, "c", 2, 100, Source::Popular);
        let (_, reasons) = score(&hot, 100 * HOUR);
        assert!(reasons.iter().any(|r| r.code == "engaging"));
        assert!(reasons.iter().any(|r| r.code == "popular"));
    }

    #[test]
    fn a_repeated_author_is_lowered() {
        // Three fresh posts by a, one slightly older by b: b is not last.
        let ranked = rank(
            &[
                candidate(1, "a", 0, 0, Source::Network),
                candidate(2, "a", 0, 0, Source::Network),
                candidate(3, "a", 0, 0, Source::Network),
                candidate(4, "b", 1, 0, Source::Network),
            ],
            100 * HOUR,
            10,
        );
        let order: Vec<u64> = ranked.iter().map(|r| r.post_id).collect();
        assert_eq!(order, vec![3, 4, 2, 1]);
        assert!(ranked[2].reasons.iter().any(|r| r.code == "diversity"));
        assert!(!ranked[0].reasons.iter().any(|r| r.code == "diversity"));
    }

    #[test]
    fn duplicates_appear_once_and_max_is_kept() {
        let ranked = rank(
            &[
                candidate(1, "a", 0, 0, Source::Network),
                candidate(1, "a", 0, 0, Source::Pulled),
                candidate(2, "b", 0, 0, Source::Network),
            ],
            100 * HOUR,
            1,
        );
        assert_eq!(ranked.len(), 1);
        assert_eq!(rank(&[], 0, 5), vec![]);
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            snapshot: "123".into(),
            offset: 20,
        };
        assert_eq!(Cursor::parse(&c.encode()), Some(c));
        for bad in ["", "x", "12", ".3", "a.3", "1.x", "1.-1", "1.100000"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn post_text_rules() {
        assert!(check_post_text("hi").is_ok());
        assert!(check_post_text("  ").is_err());
        assert!(check_post_text(&"x".repeat(501)).is_err());
        assert!(check_post_text(&"é".repeat(500)).is_ok());
        assert!(check_post_text("a\0b").is_err());
        assert!(has_link("see https://example.com"));
    }

    fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
        proptest::collection::vec(
            (
                1u64..60,
                0usize..5,
                0i64..(48 * HOUR),
                0u64..500,
                0u8..3,
                0u32..6,
                any::<bool>(),
            ),
            0..40,
        )
        .prop_map(|rows| {
            rows.into_iter()
                .map(
                    |(id, author, age, likes, source, affinity, reply)| Candidate {
                        post_id: id,
                        author_id: format!("u{author}"),
                        author_name: format!("user{author}"),
                        created_at_ms: 100 * HOUR - age,
                        likes,
                        is_reply: reply,
                        has_link: false,
                        source: [Source::Network, Source::Pulled, Source::Popular][source as usize],
                        affinity,
                    },
                )
                .collect()
        })
    }

    /// The straightforward greedy scan `rank` must agree with.
    fn rank_reference(candidates: &[Candidate], now_ms: i64, max: usize) -> Vec<Ranked> {
        let mut seen = std::collections::HashSet::new();
        let mut pending: Vec<(f64, &Candidate, Vec<FeedReason>)> = candidates
            .iter()
            .filter(|c| seen.insert(c.post_id))
            .map(|c| {
                let (s, reasons) = score(c, now_ms);
                (s, c, reasons)
            })
            .collect();
        // Best first; equal scores: the newer post first.
        let order = |a: &(f64, &Candidate, Vec<FeedReason>),
                     b: &(f64, &Candidate, Vec<FeedReason>)| {
            b.0.total_cmp(&a.0).then(b.1.post_id.cmp(&a.1.post_id))
        };
        pending.sort_by(order);
        let mut shown: std::collections::HashMap<&str, i32> = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(pending.len().min(max));
        // Greedy: the best adjusted score next. Each author's items are already in order,
        // so only each author's next item competes: a linear scan over the remaining ones.
        while !pending.is_empty() && out.len() < max {
            let mut best = 0;
            let mut best_score = f64::NEG_INFINITY;
            for (i, (s, c, _)) in pending.iter().enumerate() {
                let n = shown.get(c.author_id.as_str()).copied().unwrap_or(0);
                let adjusted = s * DIVERSITY_DECAY.powi(n);
                if adjusted > best_score
                    || (adjusted == best_score && c.post_id > pending[best].1.post_id)
                {
                    best = i;
                    best_score = adjusted;
                }
            }
            let (_, c, mut reasons) = pending.remove(best);
            let n = shown.entry(c.author_id.as_str()).or_insert(0);
            if *n > 0 {
                reasons.push(reason(
                    "diversity",
                    format!("lowered: {} more from {}", n, c.author_name),
                ));
            }
            *n += 1;
            out.push(Ranked {
                post_id: c.post_id,
                score: best_score,
                reasons,
            });
        }
        out
    }

    proptest! {
        #[test]
        fn the_heap_agrees_with_the_greedy_scan(cands in arb_candidates(), max in 0usize..50) {
            prop_assert_eq!(rank(&cands, 100 * HOUR, max), rank_reference(&cands, 100 * HOUR, max));
        }

        /// Deterministic for a fixed clock, whatever the input order; every distinct post
        /// once; every item has reasons.
        #[test]
        fn ranking_is_deterministic_and_complete(cands in arb_candidates(), seed in any::<u64>()) {
            let mut unique = cands.clone();
            let mut seen = std::collections::HashSet::new();
            unique.retain(|c| seen.insert(c.post_id));
            let first = rank(&unique, 100 * HOUR, SNAPSHOT_ITEMS);
            // A reordering of the same (unique) candidates ranks the same.
            let mut shuffled = unique.clone();
            let len = shuffled.len();
            if len > 1 {
                let mut s = seed;
                for i in (1..len).rev() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    shuffled.swap(i, (s >> 33) as usize % (i + 1));
                }
            }
            let second = rank(&shuffled, 100 * HOUR, SNAPSHOT_ITEMS);
            prop_assert_eq!(&first, &second);
            prop_assert_eq!(first.len(), unique.len());
            let ids: std::collections::HashSet<u64> = first.iter().map(|r| r.post_id).collect();
            prop_assert_eq!(ids.len(), first.len());
            prop_assert!(first.iter().all(|r| !r.reasons.is_empty()));
        }
    }
}
