//! Fanout on write, from the durable queue `feed_fanout`.
//!
//! A post by an author under the follower threshold enqueues a job in the post's own
//! transaction. The worker ([`run`]) takes the oldest pending jobs and advances each by
//! one chunk per pass (round robin), so a large job never holds up a small one. A chunk
//! is one transaction: claim the job at its recorded position (a conditional update,
//! the transaction's first write), read the next `chunk` followers in id order, push the
//! post into the active ones' inboxes, append a `new_post` event to each one's
//! `user:<id>` topic, and record the new position.
//!
//! Invariants:
//! - No gap: a job's position moves only in the transaction that wrote its chunk; a
//!   crash before the commit leaves the position where it was, and the chunk is redone.
//! - No duplicate: inbox rows are keyed `(user, post)` and events `(topic, op_id)` with
//!   op id `feed-post:<post id>`, so a redone chunk stores and announces nothing twice.
//! - Inactive followers (no read within `inactive_after`) are skipped; reading the feed
//!   again rebuilds their inbox (`read.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use meridian_shared::feed::FeedEvent;
use tokio_util::sync::CancellationToken;

use super::store::{self, FanoutJob};
use super::Feeds;
use crate::realtime::Events;

/// Jobs advanced per pass.
pub const JOBS_PER_PASS: usize = 64;

/// What one chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOutcome {
    /// Followers read in this chunk.
    pub followers: usize,
    /// Inbox rows written (followers who were active and had not got it yet).
    pub delivered: u64,
    /// The job is finished.
    pub done: bool,
    /// Another worker had moved the job first; nothing was written.
    pub lost_race: bool,
}

/// Advances `job` by one chunk.
pub async fn run_chunk(feeds: &Feeds, job: &FanoutJob) -> Result<ChunkOutcome, sqlx::Error> {
    let now_ms = feeds.clock.now_ms();
    let active_since = now_ms - feeds.config.inactive_after.as_millis() as i64;
    let mut events = Events::new(&feeds.hub);
    let outcome = {
        let _turn = feeds.db.write_turn().await;
        let mut tx = feeds.db.pool.begin().await?;
        // Claim: lock the job's row at the position we read it at.
        if !store::advance_job(
            &mut tx,
            job.post_id,
            &job.next_follower,
            &job.next_follower,
            0,
            None,
        )
        .await?
        {
            tx.rollback().await?;
            return Ok(ChunkOutcome {
                followers: 0,
                delivered: 0,
                done: false,
                lost_race: true,
            });
        }
        let followers = store::followers_after(
            &mut tx,
            &job.author_id,
            &job.next_follower,
            feeds.config.fanout_chunk,
        )
        .await?;
        let active: Vec<&str> = followers
            .iter()
            .filter(|(_, last_read)| last_read.is_some_and(|t| t >= active_since))
            .map(|(id, _)| id.as_str())
            .collect();
        let delivered =
            store::push_to_inboxes(&mut tx, job.post_id, &job.author_id, &active).await?;
        let op_id = format!("feed-post:{}", job.post_id);
        let payload = serde_json::to_value(FeedEvent::NewPost {
            post_id: job.post_id.to_string(),
            author_id: job.author_id.clone(),
        })
        .expect("a feed event serialises");
        for reader in &active {
            events
                .append(
                    &mut tx,
                    &format!("user:{reader}"),
                    &op_id,
                    payload.clone(),
                    None,
                )
                .await?;
        }
        let done = followers.len() < feeds.config.fanout_chunk;
        let to = followers
            .last()
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| job.next_follower.clone());
        store::advance_job(
            &mut tx,
            job.post_id,
            &job.next_follower,
            &to,
            delivered as i64,
            done.then_some(now_ms),
        )
        .await?;
        tx.commit().await?;
        ChunkOutcome {
            followers: followers.len(),
            delivered,
            done,
            lost_race: false,
        }
    };
    events.deliver();
    feeds
        .deliveries
        .fetch_add(outcome.delivered, Ordering::Relaxed);
    Ok(outcome)
}

/// One pass: one chunk of each of the oldest pending jobs. Answers how many jobs it
/// found.
pub async fn run_pass(feeds: &Feeds) -> Result<usize, sqlx::Error> {
    let jobs = store::pending_jobs(&feeds.db.pool, JOBS_PER_PASS).await?;
    for job in &jobs {
        run_chunk(feeds, job).await?;
    }
    Ok(jobs.len())
}

/// Runs until every pending job is done (tests, the benchmark and `feed-seed`).
pub async fn drain(feeds: &Feeds) -> Result<(), sqlx::Error> {
    while run_pass(feeds).await? > 0 {}
    Ok(())
}

/// The worker: passes while there is work; otherwise waits for a local post, or polls
/// (jobs of other instances, or left by a crash).
pub async fn run(feeds: Arc<Feeds>, shutdown: CancellationToken) {
    let mut failures = 0u32;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let notified = feeds.wake.notified();
        let found = match run_pass(&feeds).await {
            Ok(found) => {
                failures = 0;
                found
            }
            Err(err) => {
                failures += 1;
                tracing::warn!(%err, "feed fanout pass failed");
                0
            }
        };
        if found > 0 {
            continue;
        }
        let wait = if failures > 0 {
            Duration::from_millis(200 * u64::from(failures.min(25)))
        } else {
            feeds.config.fanout_poll
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = notified => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
