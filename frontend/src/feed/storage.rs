//! IndexedDB `meridian-feed`: the last feed shown per account (so the page reads
//! offline) and the posts composed offline (sent on reconnect, removed once the server
//! answered 201).
//!
//! Invariant: every record names its account; one account's cache or pending posts are
//! never shown or sent under another.

use meridian_shared::feed::FeedItem;
use serde::{Deserialize, Serialize};

use super::state::PendingPost;
use crate::store::idb::{Database, IdbError};

const DB_NAME: &str = "meridian-feed";
const FEED_STORE: &str = "feed";
const OUTBOX_STORE: &str = "outbox";

#[derive(Serialize, Deserialize)]
struct CachedFeed {
    user_id: String,
    items: Vec<FeedItem>,
}

#[derive(Serialize, Deserialize)]
struct StoredPending {
    user_id: String,
    post: PendingPost,
}

async fn open() -> Result<Database, IdbError> {
    Database::open(DB_NAME, 1, &[FEED_STORE, OUTBOX_STORE]).await
}

/// Keeps `items` as the account's last feed.
pub async fn save_feed(user_id: &str, items: &[FeedItem]) -> Result<(), IdbError> {
    let json = serde_json::to_string(&CachedFeed {
        user_id: user_id.to_owned(),
        items: items.to_vec(),
    })
    .map_err(|e| IdbError(e.to_string()))?;
    open().await?.put(FEED_STORE, user_id, &json).await
}

/// The account's last feed, if one was kept.
pub async fn load_feed(user_id: &str) -> Result<Option<Vec<FeedItem>>, IdbError> {
    let all = open().await?.get_all(FEED_STORE).await?;
    Ok(all
        .iter()
        .filter_map(|text| serde_json::from_str::<CachedFeed>(text).ok())
        .find(|cached| cached.user_id == user_id)
        .map(|cached| cached.items))
}

pub async fn queue_post(user_id: &str, post: &PendingPost) -> Result<(), IdbError> {
    let json = serde_json::to_string(&StoredPending {
        user_id: user_id.to_owned(),
        post: post.clone(),
    })
    .map_err(|e| IdbError(e.to_string()))?;
    open().await?.put(OUTBOX_STORE, &post.local_id, &json).await
}

pub async fn pending_posts(user_id: &str) -> Result<Vec<PendingPost>, IdbError> {
    let all = open().await?.get_all(OUTBOX_STORE).await?;
    Ok(all
        .iter()
        .filter_map(|text| serde_json::from_str::<StoredPending>(text).ok())
        .filter(|stored| stored.user_id == user_id)
        .map(|stored| stored.post)
        .collect())
}

pub async fn remove_post(local_id: &str) -> Result<(), IdbError> {
    open().await?.delete(OUTBOX_STORE, local_id).await
}
