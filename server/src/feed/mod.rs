//! The news feed: accounts post, follow and like; each reader's feed is ranked with
//! reasons; new posts of followed accounts announce themselves live.
//!
//! ```text
//! store    SQL: accounts' counters, follows, posts, likes, affinity, inboxes, the
//!          fanout queue, snapshots (both backends)
//! fanout   the worker of the durable fanout queue (chunks, resumable, idempotent)
//! read     candidates (inbox, pulled large accounts, popular), ranking, snapshots
//! seed     `meridian feed-seed`: a power-law graph with posts and likes
//! ```
//!
//! Feed accounts are Meridian accounts: a follow names the user id `/api/auth/me`
//! gives. Hybrid fanout: a post by an author with fewer than `feed_pull_threshold`
//! followers is pushed (by the worker, from the queue enqueued in the post's
//! transaction) into active followers' inboxes; a post by a larger author is marked
//! `pulled` and merged in at read time. Every follower sees a post once: pushed posts
//! are never pulled, pulled ones never pushed, and candidates are deduplicated by id.
//!
//! The database is the record and the only index: inboxes are rows keyed `(user,
//! post)`, so every instance serves every reader and a restart rebuilds nothing. Ranking
//! is the pure `meridian_shared::feed::rank`.

pub mod fanout;
pub mod read;
pub mod seed;
pub mod store;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::feed::{
    check_post_text, is_user_id, Cursor, FeedPage, FeedPost, FeedProfile, FollowState, LikeState,
    NewPost, DEFAULT_PAGE, MAX_PAGE, PROFILE_POSTS,
};
use serde::Deserialize;
use tokio::sync::Notify;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Session;
use crate::clock::Clock;
use crate::db::Db;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::ids::{IdError, Ids};
use crate::openapi::{with_platform_errors, SignInRequired};
use crate::realtime::hub::Hub;
use crate::{AppState, Config};

/// The feed's settings (from [`Config`]).
#[derive(Debug, Clone, Copy)]
pub struct FeedConfig {
    /// Authors with at least this many followers are pulled at read, not pushed.
    pub pull_threshold: i64,
    /// A reader who has not read for this long is skipped by fanout.
    pub inactive_after: Duration,
    /// Followers per fanout chunk (one transaction).
    pub fanout_chunk: usize,
    /// How often the worker looks for jobs it was not woken for.
    pub fanout_poll: Duration,
}

impl FeedConfig {
    pub fn from_config(config: &Config) -> FeedConfig {
        FeedConfig {
            pull_threshold: i64::try_from(config.feed_pull_threshold).unwrap_or(i64::MAX),
            inactive_after: config.feed_inactive_after,
            fanout_chunk: config.feed_fanout_chunk.max(1),
            fanout_poll: Duration::from_millis(500),
        }
    }
}

/// The feed's handle in `AppState`.
pub struct Feeds {
    pub db: Db,
    pub hub: Hub,
    pub clock: Arc<dyn Clock>,
    pub ids: Ids,
    pub config: FeedConfig,
    /// Wakes the fanout worker after a local post.
    pub wake: Notify,
    /// Inbox rows written by this instance's fanout.
    pub deliveries: AtomicU64,
}

impl Feeds {
    pub fn new(db: Db, hub: Hub, clock: Arc<dyn Clock>, ids: Ids, config: FeedConfig) -> Feeds {
        Feeds {
            db,
            hub,
            clock,
            ids,
            config,
            wake: Notify::new(),
            deliveries: AtomicU64::new(0),
        }
    }
}

/// Starts the fanout worker and the snapshot cleanup on the state's tasks.
pub fn start(state: &AppState) {
    state
        .tasks
        .spawn(fanout::run(state.feed.clone(), state.shutdown.clone()));
    state
        .tasks
        .spawn(expire_snapshots(state.feed.clone(), state.shutdown.clone()));
}

/// Snapshots (and so cursors) live a day.
pub const SNAPSHOT_TTL_MS: i64 = 24 * 3600 * 1000;

async fn expire_snapshots(feeds: Arc<Feeds>, shutdown: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let before = feeds.clock.now_ms() - SNAPSHOT_TTL_MS;
        if let Err(err) = store::delete_snapshots_before(&feeds.db.pool, before).await {
            tracing::warn!(%err, "could not expire feed snapshots");
        }
    }
}

/// Why a feed operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("no account {0}")]
    UserNotFound(String),
    #[error("no post {0}")]
    PostNotFound(String),
    #[error("{0:?} is not a post id")]
    InvalidPostId(String),
    #[error("{0}")]
    InvalidText(&'static str),
    #[error("an account cannot follow itself")]
    SelfFollow,
    #[error("the cursor is unknown, expired or not yours")]
    InvalidCursor,
    #[error("limit is 1 to {MAX_PAGE}")]
    InvalidLimit,
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<FeedError> for ApiError {
    fn from(err: FeedError) -> ApiError {
        let message = err.to_string();
        match err {
            FeedError::UserNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "user_not_found", message)
            }
            FeedError::PostNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "post_not_found", message)
            }
            FeedError::InvalidPostId(_) => ApiError::bad_request("invalid_post_id", message),
            FeedError::InvalidText(_) => ApiError::unprocessable("invalid_text", message),
            FeedError::SelfFollow => ApiError::unprocessable("self_follow", message),
            FeedError::InvalidCursor => ApiError::bad_request("invalid_cursor", message),
            FeedError::InvalidLimit => ApiError::bad_request("invalid_limit", message),
            FeedError::Id(err) => err.into(),
            FeedError::Db(err) => err.into(),
        }
    }
}

fn parse_post_id(text: &str) -> Result<i64, FeedError> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 && !text.starts_with('+') => Ok(id),
        _ => Err(FeedError::InvalidPostId(text.chars().take(40).collect())),
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(
        OpenApiRouter::new()
            .routes(routes!(get_feed))
            .routes(routes!(create_post))
            .routes(routes!(follow, unfollow))
            .routes(routes!(like, unlike))
            .routes(routes!(profile)),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FeedQuery {
    /// `next_cursor` of the previous page; none for the first page.
    cursor: Option<String>,
    /// Items per page (1 to 100; 20 by default).
    limit: Option<i64>,
}

/// Your feed, ranked, each item with the reasons it is there.
#[utoipa::path(
    get,
    path = "/api/feed",
    tag = "feed",
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of the feed; `next_cursor` is null at the end", body = FeedPage),
        (status = 400, description = "`invalid_cursor` (unknown, expired or another account's), `invalid_limit`", body = ApiErrorBody),
        SignInRequired,
        (status = 503, description = "`no_lease`: no id could be issued for the snapshot", body = ApiErrorBody),
    )
)]
async fn get_feed(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<FeedQuery>,
) -> ApiResult<Json<FeedPage>> {
    let user = session.signed_in()?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE as i64);
    if !(1..=MAX_PAGE as i64).contains(&limit) {
        return Err(FeedError::InvalidLimit.into());
    }
    let limit = limit as usize;
    let page = match query.cursor.as_deref() {
        None | Some("") => read::first_page(&state.feed, &user.id, limit).await?,
        Some(text) => {
            let cursor = Cursor::parse(text).ok_or(FeedError::InvalidCursor)?;
            read::next_page(&state.feed, &user.id, &cursor, limit).await?
        }
    };
    Ok(Json(page))
}

/// Post (or reply). Followers' feeds get it by fanout, or by pull for large accounts.
#[utoipa::path(
    post,
    path = "/api/feed/posts",
    tag = "feed",
    request_body = NewPost,
    responses(
        (status = 201, description = "The new post", body = FeedPost),
        (status = 400, description = "`invalid_post_id`: `reply_to` is not a post id", body = ApiErrorBody),
        SignInRequired,
        (status = 404, description = "`post_not_found`: `reply_to` names no post", body = ApiErrorBody),
        (status = 422, description = "`invalid_text`: empty, blank or over 500 characters", body = ApiErrorBody),
        (status = 503, description = "`no_lease`: no id could be issued", body = ApiErrorBody),
    )
)]
async fn create_post(
    State(state): State<AppState>,
    session: Session,
    Json(body): Json<NewPost>,
) -> ApiResult<(StatusCode, Json<FeedPost>)> {
    let user = session.signed_in()?;
    check_post_text(&body.text).map_err(FeedError::InvalidText)?;
    let reply_to = body.reply_to.as_deref().map(parse_post_id).transpose()?;
    let feeds = &state.feed;
    let id = feeds.ids.next_snowflake().map_err(FeedError::from)? as i64;
    let now_ms = feeds.clock.now_ms();
    {
        let _turn = feeds.db.write_turn().await;
        let mut tx = feeds.db.pool.begin().await?;
        store::ensure_account(&mut tx, &user.id).await?;
        if let Some(parent) = reply_to {
            let parent_author = store::post_author(&mut tx, parent)
                .await?
                .ok_or_else(|| FeedError::PostNotFound(parent.to_string()))?;
            if parent_author != user.id {
                store::add_affinity(&mut tx, &user.id, &parent_author, 1).await?;
            }
        }
        let followers = store::followers(&mut tx, &user.id).await?;
        store::insert_post(
            &mut tx,
            &store::NewPostRow {
                id,
                author_id: &user.id,
                text: &body.text,
                reply_to,
                now_ms,
                pulled: followers >= feeds.config.pull_threshold,
            },
        )
        .await?;
        tx.commit().await?;
    }
    feeds.wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(FeedPost {
            id: id.to_string(),
            author_id: user.id.clone(),
            author_name: user.username.clone(),
            text: body.text,
            reply_to: reply_to.map(|r| r.to_string()),
            created_at_ms: now_ms,
            likes: 0,
            replies: 0,
            liked: false,
        }),
    ))
}

async fn set_follow(
    state: &AppState,
    session: &Session,
    user_id: &str,
    followed: bool,
) -> ApiResult<Json<FollowState>> {
    let me = session.signed_in()?;
    if me.id == user_id {
        return Err(FeedError::SelfFollow.into());
    }
    let feeds = &state.feed;
    if !is_user_id(user_id) || store::username(&feeds.db.pool, user_id).await?.is_none() {
        return Err(FeedError::UserNotFound(user_id.chars().take(40).collect()).into());
    }
    let now_ms = feeds.clock.now_ms();
    {
        let _turn = feeds.db.write_turn().await;
        let mut tx = feeds.db.pool.begin().await?;
        store::ensure_account(&mut tx, &me.id).await?;
        store::ensure_account(&mut tx, user_id).await?;
        if followed {
            store::follow(&mut tx, &me.id, user_id, now_ms).await?;
        } else {
            store::unfollow(&mut tx, &me.id, user_id).await?;
        }
        tx.commit().await?;
    }
    let (followers, _, _) = store::counts(&feeds.db.pool, user_id).await?;
    Ok(Json(FollowState {
        user_id: user_id.to_owned(),
        followed,
        followers: followers.max(0) as u64,
    }))
}

/// Follow an account (by its user id). Following again changes nothing.
#[utoipa::path(
    put,
    path = "/api/feed/follows/{user_id}",
    tag = "feed",
    params(("user_id" = String, Path, description = "The account's user id, as /api/auth/me gives it")),
    responses(
        (status = 200, description = "Now followed", body = FollowState),
        SignInRequired,
        (status = 404, description = "`user_not_found`", body = ApiErrorBody),
        (status = 422, description = "`self_follow`", body = ApiErrorBody),
    )
)]
async fn follow(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
) -> ApiResult<Json<FollowState>> {
    set_follow(&state, &session, &user_id, true).await
}

/// Unfollow an account: its posts leave your feed. Unfollowing again changes nothing.
#[utoipa::path(
    delete,
    path = "/api/feed/follows/{user_id}",
    tag = "feed",
    params(("user_id" = String, Path, description = "The account's user id")),
    responses(
        (status = 200, description = "Not followed", body = FollowState),
        SignInRequired,
        (status = 404, description = "`user_not_found`", body = ApiErrorBody),
        (status = 422, description = "`self_follow`", body = ApiErrorBody),
    )
)]
async fn unfollow(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
) -> ApiResult<Json<FollowState>> {
    set_follow(&state, &session, &user_id, false).await
}

async fn set_like(
    state: &AppState,
    session: &Session,
    post: &str,
    liked: bool,
) -> ApiResult<Json<LikeState>> {
    let me = session.signed_in()?;
    let post_id = parse_post_id(post)?;
    let feeds = &state.feed;
    let now_ms = feeds.clock.now_ms();
    let likes = {
        let _turn = feeds.db.write_turn().await;
        let mut tx = feeds.db.pool.begin().await?;
        store::ensure_account(&mut tx, &me.id).await?;
        let author = store::post_author(&mut tx, post_id)
            .await?
            .ok_or_else(|| FeedError::PostNotFound(post_id.to_string()))?;
        let changed = store::set_like(&mut tx, &me.id, post_id, liked, now_ms).await?;
        if changed && author != me.id {
            store::add_affinity(&mut tx, &me.id, &author, if liked { 1 } else { -1 }).await?;
        }
        let likes = store::likes_of(&mut tx, post_id).await?;
        tx.commit().await?;
        likes
    };
    Ok(Json(LikeState {
        post_id: post_id.to_string(),
        liked,
        likes: likes.max(0) as u64,
    }))
}

/// Like a post. Liking again changes nothing.
#[utoipa::path(
    put,
    path = "/api/feed/posts/{id}/like",
    tag = "feed",
    params(("id" = String, Path, description = "The post")),
    responses(
        (status = 200, description = "Liked", body = LikeState),
        (status = 400, description = "`invalid_post_id`", body = ApiErrorBody),
        SignInRequired,
        (status = 404, description = "`post_not_found`", body = ApiErrorBody),
    )
)]
async fn like(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<LikeState>> {
    set_like(&state, &session, &id, true).await
}

/// Take back a like.
#[utoipa::path(
    delete,
    path = "/api/feed/posts/{id}/like",
    tag = "feed",
    params(("id" = String, Path, description = "The post")),
    responses(
        (status = 200, description = "Not liked", body = LikeState),
        (status = 400, description = "`invalid_post_id`", body = ApiErrorBody),
        SignInRequired,
        (status = 404, description = "`post_not_found`", body = ApiErrorBody),
    )
)]
async fn unlike(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<LikeState>> {
    set_like(&state, &session, &id, false).await
}

/// An account's profile: counts, whether you follow it, its newest posts.
#[utoipa::path(
    get,
    path = "/api/feed/users/{id}",
    tag = "feed",
    params(("id" = String, Path, description = "The account's user id")),
    responses(
        (status = 200, description = "The profile", body = FeedProfile),
        (status = 404, description = "`user_not_found`", body = ApiErrorBody),
    )
)]
async fn profile(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<FeedProfile>> {
    let pool = &state.feed.db.pool;
    let not_found = || FeedError::UserNotFound(id.chars().take(40).collect());
    if !is_user_id(&id) {
        return Err(not_found().into());
    }
    let username = store::username(pool, &id).await?.ok_or_else(not_found)?;
    let reader = session.user.as_ref().map(|u| u.id.as_str()).unwrap_or("");
    let (followers, following, posts_count) = store::counts(pool, &id).await?;
    let followed = !reader.is_empty() && store::follows(pool, reader, &id).await?;
    let posts = store::posts_of(pool, &id, reader, PROFILE_POSTS).await?;
    Ok(Json(FeedProfile {
        user_id: id,
        username,
        followers: followers.max(0) as u64,
        following: following.max(0) as u64,
        posts_count: posts_count.max(0) as u64,
        followed,
        posts,
    }))
}
