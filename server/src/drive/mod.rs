//! File sync: the `/api/drive` API (nodes, uploads, versions, the change feed, shares)
//! and `meridian sync`, the agent that keeps a local folder in step (`agent/`).
//!
//! ```text
//! engine/      every change, one transaction each; conflicts, restores, the tree's checks
//! store        SQL: heads, nodes, versions and their chunks, uploads, shares
//! chunk_store  ChunkStore: chunk bytes by SHA-256 (a local directory by default, or
//!              object storage under `drive/chunks`)
//! retention/   the maintenance pass: old versions, the trash, expired uploads, and
//!              chunks nothing references any more
//! agent/       the sync agent: local state, three-way comparison, watcher
//! ```
//!
//! The wire types, chunking and the name rules are in `meridian_shared::drive`.
//!
//! Upload protocol: `POST /api/drive/uploads` with the manifest (chunk hashes and sizes)
//! answers the chunks the server lacks; each is `PUT` to
//! `/api/drive/uploads/{id}/chunks/{hash}` (checked against its hash, stored atomically);
//! `POST /api/drive/uploads/{id}/commit` makes the version. An interrupted upload resumes
//! with `GET /api/drive/uploads/{id}` (what is still missing). Only chunks the server
//! lacks travel, and a chunk is stored once whoever uploads it.
//!
//! Small edits travel small (`engine::uploads`, `meridian_shared::drive::delta`): a new
//! version's manifest may be `chunk_edits` of its base version's list, and with
//! `signatures` the answer names, for each missing chunk, the base version's chunk it
//! replaces and that chunk's block signature; the client then sends a delta
//! (`PUT /api/drive/uploads/{id}/deltas/{hash}?base={base}`) instead of the chunk.
//!
//! Invariants (see `engine` for the conflict rules):
//! - Only the owner and the accounts a folder above a node is shared with may see it;
//!   everyone else gets 404, as if it did not exist. Read shares cannot change anything.
//! - Nothing is stored half: a chunk is whole in the store before it is listed, and a
//!   version is committed only when all its chunks are listed.
//! - Every version stays in history (restorable) until the retention rule removes it
//!   (`retention`: by default the 100 newest versions of a file, each for 30 days after it
//!   was replaced); the current version of a file always stays. A deleted file keeps all
//!   its versions in the trash, for 30 days by default, then is purged. A removed version
//!   answers 404 `version_not_found`.
//! - A row of `drive_chunks` always has its bytes in the chunk store; a chunk is deleted
//!   only when no version and no upload in progress references it, after a grace period
//!   during which uploads count it as missing (`retention` states the protocol).
//! - The change feed never silently skips a deletion: once tombstones are purged, a
//!   cursor older than their deletion answers 410 `cursor_expired`, and the client lists
//!   the drive again from 0 (the agent does; what is no longer listed is gone).
//! - Each change reaches the `user:` topics of those who see it (`DriveChanged`), after
//!   it commits, on every instance.

pub mod agent;
pub mod chunk_store;
pub mod engine;
pub mod retention;
pub mod store;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meridian_shared::api::{ApiErrorBody, UserInfo};
use meridian_shared::drive::chunking::MAX_CHUNK;
use meridian_shared::drive::{
    Changes, Committed, Manifest, MoveNode, NewFolder, NewUpload, Node, NodeList, Share,
    ShareFolder, ShareList, SharedFolder, SharedList, UploadStatus, VersionList,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::chunk_store::{ChunkStore, LocalChunkStore, ObjectChunkStore, StoredChunk};
pub use self::engine::DriveError;
use self::engine::{authorize, Access};
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::openapi::{with_platform_errors, SignInRequired};
use crate::AppState;

/// Changes answered by one call of the change feed, at most (one change's nodes are
/// never split across calls).
pub const CHANGES_PAGE: i64 = 1000;

/// The drive's handle in `AppState`: where chunks live.
#[derive(Clone)]
pub struct Drive {
    pub chunks: Arc<dyn ChunkStore>,
    /// Where this instance's search for orphaned chunk bytes goes on (`retention`).
    pub orphans_after: Arc<std::sync::Mutex<String>>,
}

impl Drive {
    pub fn new(chunks: Arc<dyn ChunkStore>) -> Drive {
        Drive {
            chunks,
            orphans_after: Arc::default(),
        }
    }

    /// Chunks in `<data_dir>/drive/chunks`, or under `drive/chunks` in object storage.
    pub fn open(data_dir: &std::path::Path, objects: Option<&crate::objects::Objects>) -> Drive {
        match objects {
            Some(objects) => Drive::new(Arc::new(ObjectChunkStore::new(
                objects.under("drive/chunks"),
            ))),
            None => Drive::local(data_dir),
        }
    }

    /// Chunks in `<data_dir>/drive/chunks`.
    pub fn local(data_dir: &std::path::Path) -> Drive {
        Drive::new(Arc::new(LocalChunkStore::new(
            data_dir.join("drive").join("chunks"),
        )))
    }
}

impl From<DriveError> for ApiError {
    fn from(err: DriveError) -> ApiError {
        let err = match err {
            DriveError::Db(err) => return ApiError::from(err),
            DriveError::Ids(err) => return ApiError::from(err),
            DriveError::Storage(err) => return ApiError::internal(err),
            other => other,
        };
        let message = err.to_string();
        let (status, code) = match &err {
            DriveError::NodeNotFound(_) => (StatusCode::NOT_FOUND, "node_not_found"),
            DriveError::UploadNotFound(_) => (StatusCode::NOT_FOUND, "upload_not_found"),
            DriveError::VersionNotFound(_) => (StatusCode::NOT_FOUND, "version_not_found"),
            DriveError::UnknownUser(_) => (StatusCode::NOT_FOUND, "unknown_user"),
            DriveError::ShareNotFound(_) => (StatusCode::NOT_FOUND, "share_not_found"),
            DriveError::ReadOnly => (StatusCode::FORBIDDEN, "read_only"),
            DriveError::OwnerOnly => (StatusCode::FORBIDDEN, "owner_only"),
            DriveError::NameTaken(_) => (StatusCode::CONFLICT, "name_taken"),
            DriveError::Cycle => (StatusCode::CONFLICT, "cycle"),
            DriveError::VersionChanged => (StatusCode::CONFLICT, "version_changed"),
            DriveError::Deleted(_) => (StatusCode::CONFLICT, "node_deleted"),
            DriveError::MissingChunks(_) => (StatusCode::CONFLICT, "missing_chunks"),
            DriveError::InvalidName(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_name"),
            DriveError::NotAFolder(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_a_folder"),
            DriveError::NotAFile(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_a_file"),
            DriveError::CrossDrive => (StatusCode::UNPROCESSABLE_ENTITY, "cross_drive"),
            DriveError::TooDeep => (StatusCode::UNPROCESSABLE_ENTITY, "too_deep"),
            DriveError::InvalidManifest(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_manifest")
            }
            DriveError::InvalidDevice => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_device"),
            DriveError::NotInUpload(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_in_upload"),
            DriveError::ShareWithOwner => {
                (StatusCode::UNPROCESSABLE_ENTITY, "cannot_share_with_owner")
            }
            DriveError::HashMismatch => (StatusCode::BAD_REQUEST, "hash_mismatch"),
            DriveError::InvalidDelta(_) => (StatusCode::BAD_REQUEST, "invalid_delta"),
            DriveError::NotInBase(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_in_base"),
            DriveError::CursorExpired => (StatusCode::GONE, "cursor_expired"),
            DriveError::Db(_) | DriveError::Ids(_) | DriveError::Storage(_) => {
                unreachable!("answered above")
            }
        };
        ApiError::new(status, code, message)
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(
        OpenApiRouter::new()
            .routes(routes!(changes))
            .routes(routes!(children))
            .routes(routes!(create_folder))
            .routes(routes!(get_node, move_node, delete_node))
            .routes(routes!(restore_node))
            .routes(routes!(node_versions))
            .routes(routes!(node_content))
            .routes(routes!(get_version))
            .routes(routes!(version_content))
            .routes(routes!(restore_version))
            .routes(routes!(create_upload))
            .routes(routes!(upload_status))
            .routes(routes!(put_chunk))
            .routes(routes!(put_delta))
            .routes(routes!(commit_upload))
            .routes(routes!(list_shares, share_folder))
            .routes(routes!(unshare_folder))
            .routes(routes!(shared_with_me)),
    )
}

async fn readable(
    state: &AppState,
    user: &UserInfo,
    node_id: &str,
) -> ApiResult<(store::NodeRow, Access)> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(authorize(&mut conn, &user.id, node_id).await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesQuery {
    /// The cursor of the previous answer (0, or absent, for everything).
    since: Option<u64>,
}

/// The change feed of your drive: nodes changed after a cursor, each as it is now
/// (deleted ones too, as tombstones, until they are purged from the trash).
#[utoipa::path(
    get,
    path = "/api/drive/changes",
    tag = "drive",
    params(ChangesQuery),
    responses(
        (status = 200, description = "Changed nodes and the next cursor", body = Changes),
        SignInRequired,
        (status = 410, description = "`cursor_expired`: deletions after this cursor were purged from the trash; list again from 0 (what is not listed is gone)", body = ApiErrorBody),
    )
)]
async fn changes(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ChangesQuery>,
) -> ApiResult<Json<Changes>> {
    let user = session.signed_in()?;
    let since = query.since.unwrap_or(0).min(i64::MAX as u64) as i64;
    let mut conn = state.db.pool.acquire().await?;
    if since > 0 && since < store::purged_seq(&mut conn, &user.id).await? {
        return Err(DriveError::CursorExpired.into());
    }
    let head = store::head(&mut conn, &user.id).await?;
    let mut rows = store::changes(&mut conn, &user.id, since, CHANGES_PAGE).await?;
    let more = rows.len() as i64 == CHANGES_PAGE;
    let cursor = if more {
        // Finish the last change: its nodes all share one sequence number.
        let last = rows.last().map(|r| r.seq).unwrap_or(since);
        rows.retain(|r| r.seq < last);
        rows.extend(store::changes_at(&mut conn, &user.id, last).await?);
        last
    } else {
        rows.last().map(|r| r.seq).unwrap_or(since).max(head)
    };
    Ok(Json(Changes {
        cursor: cursor.max(0) as u64,
        nodes: rows.into_iter().map(Node::from).collect(),
        more,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ChildrenQuery {
    /// The folder (absent: the top of your drive).
    parent_id: Option<String>,
    /// List deleted nodes too (the trash).
    #[serde(default)]
    include_deleted: bool,
}

/// A folder's children, folders first.
#[utoipa::path(
    get,
    path = "/api/drive/children",
    tag = "drive",
    params(ChildrenQuery),
    responses(
        (status = 200, description = "The folder's children", body = NodeList),
        SignInRequired,
        (status = 404, description = "`node_not_found`", body = ApiErrorBody),
        (status = 422, description = "`not_a_folder`", body = ApiErrorBody),
    )
)]
async fn children(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ChildrenQuery>,
) -> ApiResult<Json<NodeList>> {
    let user = session.signed_in()?;
    let (owner, parent) = match &query.parent_id {
        None => (user.id.clone(), store::TOP.to_owned()),
        Some(id) => {
            let (node, _) = readable(&state, user, id).await?;
            if node.kind != meridian_shared::drive::NodeKind::Folder {
                return Err(DriveError::NotAFolder(node.id).into());
            }
            (node.owner_id, node.id)
        }
    };
    let mut conn = state.db.pool.acquire().await?;
    let rows = store::children(&mut conn, &owner, &parent, query.include_deleted).await?;
    Ok(Json(NodeList {
        nodes: rows.into_iter().map(Node::from).collect(),
    }))
}

/// Create a folder.
#[utoipa::path(
    post,
    path = "/api/drive/folders",
    tag = "drive",
    request_body = NewFolder,
    responses(
        (status = 201, description = "The new folder", body = Node),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`node_not_found`", body = ApiErrorBody),
        (status = 409, description = "`name_taken` or `node_deleted`", body = ApiErrorBody),
        (status = 422, description = "`invalid_name`, `not_a_folder` or `too_deep`", body = ApiErrorBody),
    )
)]
async fn create_folder(
    State(state): State<AppState>,
    session: Session,
    Json(body): Json<NewFolder>,
) -> ApiResult<(StatusCode, Json<Node>)> {
    let user = session.signed_in()?;
    let node =
        engine::create_folder(&state, &user.id, body.parent_id.as_deref(), &body.name).await?;
    Ok((StatusCode::CREATED, Json(node)))
}

/// A node.
#[utoipa::path(
    get,
    path = "/api/drive/nodes/{id}",
    tag = "drive",
    params(("id" = String, Path, description = "The node")),
    responses(
        (status = 200, description = "The node", body = Node),
        SignInRequired,
        (status = 404, description = "`node_not_found`", body = ApiErrorBody),
    )
)]
async fn get_node(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<Node>> {
    let user = session.signed_in()?;
    Ok(Json(readable(&state, user, &id).await?.0.into()))
}

/// Rename and/or move a node within its drive.
#[utoipa::path(
    patch,
    path = "/api/drive/nodes/{id}",
    tag = "drive",
    params(("id" = String, Path, description = "The node")),
    request_body = MoveNode,
    responses(
        (status = 200, description = "The node in its new place", body = Node),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`node_not_found`", body = ApiErrorBody),
        (status = 409, description = "`name_taken`, `cycle` or `node_deleted`", body = ApiErrorBody),
        (status = 422, description = "`invalid_name`, `not_a_folder`, `cross_drive` or `too_deep`", body = ApiErrorBody),
    )
)]
async fn move_node(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Json(body): Json<MoveNode>,
) -> ApiResult<Json<Node>> {
    let user = session.signed_in()?;
    Ok(Json(
        engine::move_node(&state, &user.id, &id, body.parent_id.as_deref(), &body.name).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete the file only if this is still its current version (else 409
    /// `version_changed`): a sync client's delete never beats an edit it has not seen.
    if_version: Option<String>,
}

/// Delete a node and what is under it (restorable).
#[utoipa::path(
    delete,
    path = "/api/drive/nodes/{id}",
    tag = "drive",
    params(("id" = String, Path, description = "The node"), DeleteQuery),
    responses(
        (status = 204, description = "Deleted (or already)"),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`node_not_found`", body = ApiErrorBody),
        (status = 409, description = "`version_changed`", body = ApiErrorBody),
    )
)]
async fn delete_node(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let user = session.signed_in()?;
    engine::delete_node(&state, &user.id, &id, query.if_version.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bring back a deleted node (and the folders above it).
#[utoipa::path(
    post,
    path = "/api/drive/nodes/{id}/restore",
    tag = "drive",
    params(("id" = String, Path, description = "The node")),
    responses(
        (status = 200, description = "The node, live again", body = Node),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`node_not_found`", body = ApiErrorBody),
    )
)]
async fn restore_node(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<Node>> {
    let user = session.signed_in()?;
    Ok(Json(engine::restore_node(&state, &user.id, &id).await?))
}

/// A file's versions, newest first.
#[utoipa::path(
    get,
    path = "/api/drive/nodes/{id}/versions",
    tag = "drive",
    params(("id" = String, Path, description = "The file")),
    responses(
        (status = 200, description = "Versions, newest first", body = VersionList),
        SignInRequired,
        (status = 404, description = "`node_not_found`", body = ApiErrorBody),
    )
)]
async fn node_versions(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<VersionList>> {
    let user = session.signed_in()?;
    readable(&state, user, &id).await?;
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(VersionList {
        versions: store::versions(&mut conn, &id).await?,
    }))
}

/// A file's current content.
#[utoipa::path(
    get,
    path = "/api/drive/nodes/{id}/content",
    tag = "drive",
    params(("id" = String, Path, description = "The file")),
    responses(
        (status = 200, description = "The bytes, streamed", content_type = "application/octet-stream", body = Vec<u8>),
        SignInRequired,
        (status = 404, description = "`node_not_found` or `version_not_found` (a folder, or a file with no content)", body = ApiErrorBody),
    )
)]
async fn node_content(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = session.signed_in()?;
    let (node, _) = readable(&state, user, &id).await?;
    let version = node
        .version_id
        .ok_or_else(|| DriveError::VersionNotFound(format!("of {id}")))?;
    stream_version(&state, &version).await
}

async fn readable_version(
    state: &AppState,
    user: &UserInfo,
    version_id: &str,
) -> ApiResult<meridian_shared::drive::VersionInfo> {
    let not_found = || ApiError::from(DriveError::VersionNotFound(version_id.to_owned()));
    let mut conn = state.db.pool.acquire().await?;
    let version = store::version(&mut conn, version_id)
        .await?
        .ok_or_else(not_found)?;
    authorize(&mut conn, &user.id, &version.node_id)
        .await
        .map_err(|_| not_found())?;
    Ok(version)
}

/// A version with its manifest (chunk hashes and sizes, in order).
#[utoipa::path(
    get,
    path = "/api/drive/versions/{id}",
    tag = "drive",
    params(("id" = String, Path, description = "The version")),
    responses(
        (status = 200, description = "The version and its chunks", body = Manifest),
        SignInRequired,
        (status = 404, description = "`version_not_found`", body = ApiErrorBody),
    )
)]
async fn get_version(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<Manifest>> {
    let user = session.signed_in()?;
    let version = readable_version(&state, user, &id).await?;
    let mut conn = state.db.pool.acquire().await?;
    let chunks = store::version_chunks(&mut conn, &id).await?;
    Ok(Json(Manifest { version, chunks }))
}

/// A version's content.
#[utoipa::path(
    get,
    path = "/api/drive/versions/{id}/content",
    tag = "drive",
    params(("id" = String, Path, description = "The version")),
    responses(
        (status = 200, description = "The bytes, streamed", content_type = "application/octet-stream", body = Vec<u8>),
        SignInRequired,
        (status = 404, description = "`version_not_found`", body = ApiErrorBody),
    )
)]
async fn version_content(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = session.signed_in()?;
    readable_version(&state, user, &id).await?;
    stream_version(&state, &id).await
}

/// Streams a version chunk by chunk: one chunk in memory at a time. Its chunks stay
/// stored for the grace period at least, even if retention removes it meanwhile.
async fn stream_version(state: &AppState, version_id: &str) -> ApiResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let chunks = store::version_chunks(&mut conn, version_id).await?;
    let size: u64 = chunks.iter().map(|c| c.size).sum();
    // Removed since the caller looked it up: its chunk list may have been read empty.
    if store::version(&mut conn, version_id)
        .await?
        .is_none_or(|v| v.size != size)
    {
        return Err(DriveError::VersionNotFound(version_id.to_owned()).into());
    }
    drop(conn);
    let store = state.drive.chunks.clone();
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), store),
        |(mut chunks, store)| async move {
            let chunk = chunks.next()?;
            let read = store.get(&chunk.hash).await.map(Bytes::from);
            if let Err(err) = &read {
                tracing::error!(%err, hash = %chunk.hash, "a chunk of a version cannot be read");
            }
            Some((read, (chunks, store)))
        },
    );
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_owned()),
            (CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Make an older version the current one (a new change; history stays).
#[utoipa::path(
    post,
    path = "/api/drive/versions/{id}/restore",
    tag = "drive",
    params(("id" = String, Path, description = "The version")),
    responses(
        (status = 200, description = "The file, with this version current", body = Node),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`version_not_found`", body = ApiErrorBody),
    )
)]
async fn restore_version(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<Node>> {
    let user = session.signed_in()?;
    Ok(Json(engine::restore_version(&state, &user.id, &id).await?))
}

/// Start an upload: the manifest of a new file (`parent_id` + `name`) or of a new version
/// of one (`node_id` + `base_version`); answers the chunks the server lacks.
#[utoipa::path(
    post,
    path = "/api/drive/uploads",
    tag = "drive",
    request_body = NewUpload,
    responses(
        (status = 201, description = "The upload and the chunks to send", body = UploadStatus),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`node_not_found`, or `version_not_found` (the base of `chunk_edits`)", body = ApiErrorBody),
        (status = 409, description = "`node_deleted` (the folder)", body = ApiErrorBody),
        (status = 422, description = "`invalid_manifest` (also `chunks` and `chunk_edits` both, or edits that do not apply), `invalid_name`, `invalid_device`, `not_a_file` or `not_a_folder`", body = ApiErrorBody),
        (status = 503, description = "`no_lease` or `clock_behind`: no id could be issued; retry after `Retry-After`", body = ApiErrorBody),
    )
)]
async fn create_upload(
    State(state): State<AppState>,
    session: Session,
    Json(body): Json<NewUpload>,
) -> ApiResult<(StatusCode, Json<UploadStatus>)> {
    let user = session.signed_in()?;
    let status = engine::create_upload(&state, &user.id, &body).await?;
    Ok((StatusCode::CREATED, Json(status)))
}

/// What an upload still lacks (to resume it after an interruption).
#[utoipa::path(
    get,
    path = "/api/drive/uploads/{id}",
    tag = "drive",
    params(("id" = String, Path, description = "The upload")),
    responses(
        (status = 200, description = "The chunks still missing", body = UploadStatus),
        SignInRequired,
        (status = 404, description = "`upload_not_found`", body = ApiErrorBody),
    )
)]
async fn upload_status(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<UploadStatus>> {
    let user = session.signed_in()?;
    Ok(Json(engine::upload_status(&state, &user.id, &id).await?))
}

/// Send one chunk of an upload (the body is its bytes; checked against the hash).
#[utoipa::path(
    put,
    path = "/api/drive/uploads/{id}/chunks/{hash}",
    tag = "drive",
    params(
        ("id" = String, Path, description = "The upload"),
        ("hash" = String, Path, description = "The chunk's SHA-256, lowercase hex"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "`hash_mismatch`: the bytes are not the chunk's", body = ApiErrorBody),
        SignInRequired,
        (status = 404, description = "`upload_not_found`", body = ApiErrorBody),
        (status = 413, description = "`chunk_too_large`", body = ApiErrorBody),
        (status = 422, description = "`not_in_upload`", body = ApiErrorBody),
    )
)]
async fn put_chunk(
    State(state): State<AppState>,
    session: Session,
    Path((id, hash)): Path<(String, String)>,
    body: Body,
) -> ApiResult<StatusCode> {
    let user = session.signed_in()?;
    let data = axum::body::to_bytes(body, MAX_CHUNK).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "chunk_too_large",
            format!("a chunk has at most {MAX_CHUNK} bytes"),
        )
    })?;
    engine::put_chunk(&state, &user.id, &id, &hash, data.to_vec()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeltaQuery {
    /// The base version's chunk the delta is against (SHA-256, lowercase hex).
    base: String,
}

/// The largest delta body: a whole chunk sent literally, with room for operations.
const MAX_DELTA: usize = 2 * MAX_CHUNK;

/// Send one chunk of an upload as a delta against a chunk of the upload's base version
/// (the format is in `meridian_shared::drive::delta`); the rebuilt chunk is checked
/// against its hash and stored as `PUT .../chunks/{hash}` stores it.
#[utoipa::path(
    put,
    path = "/api/drive/uploads/{id}/deltas/{hash}",
    tag = "drive",
    params(
        ("id" = String, Path, description = "The upload"),
        ("hash" = String, Path, description = "The chunk's SHA-256, lowercase hex"),
        DeltaQuery,
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Rebuilt and stored"),
        (status = 400, description = "`invalid_delta` (malformed, a copy outside the base, the wrong length) or `hash_mismatch`", body = ApiErrorBody),
        SignInRequired,
        (status = 404, description = "`upload_not_found`", body = ApiErrorBody),
        (status = 413, description = "`delta_too_large`", body = ApiErrorBody),
        (status = 422, description = "`not_in_upload`, or `not_in_base`: the base is not a chunk of the upload's base version", body = ApiErrorBody),
    )
)]
async fn put_delta(
    State(state): State<AppState>,
    session: Session,
    Path((id, hash)): Path<(String, String)>,
    Query(query): Query<DeltaQuery>,
    body: Body,
) -> ApiResult<StatusCode> {
    let user = session.signed_in()?;
    let delta = axum::body::to_bytes(body, MAX_DELTA).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "delta_too_large",
            format!("a delta has at most {MAX_DELTA} bytes"),
        )
    })?;
    engine::put_delta(&state, &user.id, &id, &hash, &query.base, &delta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Commit an upload whose chunks are all stored: a new version, a new file, or a
/// conflicted copy when the base was stale (see `outcome`). Committing again answers the
/// same.
#[utoipa::path(
    post,
    path = "/api/drive/uploads/{id}/commit",
    tag = "drive",
    params(("id" = String, Path, description = "The upload")),
    responses(
        (status = 200, description = "Where the version landed", body = Committed),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`upload_not_found` or `node_not_found`", body = ApiErrorBody),
        (status = 409, description = "`missing_chunks` or `node_deleted` (the folder)", body = ApiErrorBody),
        (status = 503, description = "`no_lease` or `clock_behind`: no id could be issued; retry after `Retry-After`", body = ApiErrorBody),
    )
)]
async fn commit_upload(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<Committed>> {
    let user = session.signed_in()?;
    Ok(Json(engine::commit_upload(&state, &user.id, &id).await?))
}

/// Who a folder is shared with (owner only).
#[utoipa::path(
    get,
    path = "/api/drive/nodes/{id}/shares",
    tag = "drive",
    params(("id" = String, Path, description = "The folder")),
    responses(
        (status = 200, description = "The folder's shares", body = ShareList),
        SignInRequired,
        (status = 403, description = "`owner_only`", body = ApiErrorBody),
        (status = 404, description = "`node_not_found`", body = ApiErrorBody),
    )
)]
async fn list_shares(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<ShareList>> {
    let user = session.signed_in()?;
    let (_, access) = readable(&state, user, &id).await?;
    if access != Access::Owner {
        return Err(DriveError::OwnerOnly.into());
    }
    let mut conn = state.db.pool.acquire().await?;
    let shares = store::shares(&mut conn, &id)
        .await?
        .into_iter()
        .map(|(user_id, username, mode)| Share {
            user_id,
            username,
            mode,
        })
        .collect();
    Ok(Json(ShareList { shares }))
}

/// Share a folder with an account, read-only or read-write (owner only).
#[utoipa::path(
    post,
    path = "/api/drive/nodes/{id}/shares",
    tag = "drive",
    params(("id" = String, Path, description = "The folder")),
    request_body = ShareFolder,
    responses(
        (status = 200, description = "The folder's shares", body = ShareList),
        SignInRequired,
        (status = 403, description = "`owner_only`", body = ApiErrorBody),
        (status = 404, description = "`node_not_found` or `unknown_user`", body = ApiErrorBody),
        (status = 409, description = "`node_deleted`", body = ApiErrorBody),
        (status = 422, description = "`not_a_folder` or `cannot_share_with_owner`", body = ApiErrorBody),
    )
)]
async fn share_folder(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Json(body): Json<ShareFolder>,
) -> ApiResult<Json<ShareList>> {
    {
        let user = session.signed_in()?;
        engine::share_folder(&state, &user.id, &id, &body.username, body.mode).await?;
    }
    list_shares(State(state), session, Path(id)).await
}

/// End a share (the owner, or the account it was shared with leaving it).
#[utoipa::path(
    delete,
    path = "/api/drive/nodes/{id}/shares/{user_id}",
    tag = "drive",
    params(
        ("id" = String, Path, description = "The folder"),
        ("user_id" = String, Path, description = "The account it is shared with"),
    ),
    responses(
        (status = 204, description = "No longer shared"),
        SignInRequired,
        (status = 403, description = "`owner_only`", body = ApiErrorBody),
        (status = 404, description = "`node_not_found` or `share_not_found`", body = ApiErrorBody),
    )
)]
async fn unshare_folder(
    State(state): State<AppState>,
    session: Session,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = session.signed_in()?;
    engine::unshare_folder(&state, &user.id, &id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The folders others shared with you.
#[utoipa::path(
    get,
    path = "/api/drive/shared",
    tag = "drive",
    responses(
        (status = 200, description = "Folders shared with you", body = SharedList),
        SignInRequired,
    )
)]
async fn shared_with_me(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<SharedList>> {
    let user = session.signed_in()?;
    let mut conn = state.db.pool.acquire().await?;
    let folders = store::shared_with(&mut conn, &user.id)
        .await?
        .into_iter()
        .map(|(node, owner_username, mode)| SharedFolder {
            node: node.into(),
            owner_username,
            mode,
        })
        .collect();
    Ok(Json(SharedList { folders }))
}
