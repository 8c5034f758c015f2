//! Collaborative documents: the `/api/docs` API (documents, members, versions) and the
//! y-websocket endpoint `/yjs/{doc_id}` that real-time editing runs over.
//!
//! ```text
//! store      SQL: documents, members, the update log, snapshots, versions
//! room       a loaded document: its yrs Doc, connections, awareness; forward, store, ack
//! awareness  the awareness table (y-protocols' rules) with who announced each client
//! socket     one y-websocket connection between its socket and its room
//! cluster    notices between instances sharing PostgreSQL, on the realtime path
//! writer     group commit: every room's pending updates in one transaction
//! ```
//!
//! The wire types, the frame codec and the document schema are in
//! `meridian_shared::docs`.
//!
//! Invariants:
//! - Only the owner and members may open a document; everyone else gets 404, as if it
//!   did not exist. Only the owner and editors change content (REST or socket).
//! - Every accepted update is stored before its sender is acknowledged and before other
//!   instances hear of it; this instance forwards it at once (see `room`).
//! - Membership changes and deletion reach open connections on every instance.

pub mod awareness;
pub mod cluster;
pub mod room;
pub mod socket;
pub mod store;
pub mod writer;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meridian_shared::api::{ApiErrorBody, UserInfo};
use meridian_shared::docs::rich;
use meridian_shared::docs::{
    schema, CreateDoc, CreateVersion, Doc, DocList, DocSummary, Member, RenameDoc, Restored, Role,
    RoomStats, ShareDoc, Version, VersionKind, VersionList,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yrs::updates::decoder::Decode;
use yrs::{Transact, Update};

pub use self::room::Rooms;
use self::room::{RoomError, RoomMsg};
use self::store::DocRow;
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::openapi::{with_platform_errors, SignInRequired};
use crate::AppState;

const MAX_TITLE_CHARS: usize = 200;
const MAX_VERSION_NAME_CHARS: usize = 100;

/// The y-websocket endpoint needs an existing session, like the realtime channel.
pub const WITHOUT_GUEST_SESSION: &[&str] = &["/yjs/"];

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(
        OpenApiRouter::new()
            .routes(routes!(list_docs, create_doc))
            .routes(routes!(room_stats))
            .routes(routes!(get_doc, rename_doc, delete_doc))
            .routes(routes!(share_doc))
            .routes(routes!(remove_member))
            .routes(routes!(list_versions, save_version))
            .routes(routes!(version_update))
            .routes(routes!(restore_version))
            .routes(routes!(socket::yjs_socket)),
    )
}

fn signed_in(session: &Session) -> ApiResult<&UserInfo> {
    session.user.as_ref().ok_or_else(|| {
        ApiError::unauthorized("sign_in_required", "documents are for signed-in accounts")
    })
}

pub(crate) fn doc_not_found(doc_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "doc_not_found",
        format!("no document {doc_id:?} that you may open"),
    )
}

pub(crate) async fn open_access(
    state: &AppState,
    doc_id: &str,
    user_id: &str,
) -> Result<Option<(DocRow, Role)>, sqlx::Error> {
    store::access(&state.db.pool, doc_id, user_id).await
}

/// The document and the caller's role, or 404.
async fn access(
    state: &AppState,
    session: &Session,
    doc_id: &str,
) -> ApiResult<(DocRow, Role, UserInfo)> {
    let user = signed_in(session)?.clone();
    let (doc, role) = open_access(state, doc_id, &user.id)
        .await?
        .ok_or_else(|| doc_not_found(doc_id))?;
    Ok((doc, role, user))
}

fn must_edit(role: Role) -> ApiResult<()> {
    if role.can_edit() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "read_only",
            "viewers cannot change this document",
        ))
    }
}

fn must_own(role: Role) -> ApiResult<()> {
    if role == Role::Owner {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "owner_only",
            "only the document's owner may do this",
        ))
    }
}

fn valid_title(title: &str) -> ApiResult<String> {
    let title = title.trim();
    let chars = title.chars().count();
    if chars == 0 || chars > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_title",
            format!("a title is 1 to {MAX_TITLE_CHARS} characters, without control characters"),
        ));
    }
    Ok(title.to_owned())
}

async fn view(state: &AppState, doc: &DocRow, role: Role) -> ApiResult<Doc> {
    let members = store::members(&state.db.pool, doc).await?;
    Ok(Doc {
        id: doc.id.clone(),
        title: doc.title.clone(),
        role,
        owner: Member {
            user_id: doc.owner_id.clone(),
            username: doc.owner_name.clone(),
            role: Role::Owner,
        },
        members,
        created_ms: doc.created_ms,
        updated_ms: doc.updated_ms,
        sync_path: format!("/yjs/{}", doc.id),
    })
}

fn room_error(err: RoomError, doc_id: &str) -> ApiError {
    match err {
        RoomError::Gone => doc_not_found(doc_id),
        RoomError::Retry => ApiError::unavailable("the document is busy; retry"),
        RoomError::Storage(err) => ApiError::from(err),
        RoomError::Ids(err) => ApiError::from(err),
    }
}

/// The documents you may open, most recently changed first.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "docs",
    responses(
        (status = 200, description = "Your documents and those shared with you", body = DocList),
        SignInRequired,
    )
)]
async fn list_docs(State(state): State<AppState>, session: Session) -> ApiResult<Json<DocList>> {
    let user = signed_in(&session)?;
    let rows = store::list_for(&state.db.pool, &user.id).await?;
    let docs = rows
        .into_iter()
        .map(|(doc, role)| DocSummary {
            id: doc.id,
            title: doc.title,
            role,
            owner: Member {
                user_id: doc.owner_id,
                username: doc.owner_name,
                role: Role::Owner,
            },
            updated_ms: doc.updated_ms,
        })
        .collect();
    Ok(Json(DocList { docs }))
}

/// Create a document (you are its owner).
#[utoipa::path(
    post,
    path = "/api/docs",
    tag = "docs",
    request_body = CreateDoc,
    responses(
        (status = 201, description = "The new document", body = Doc),
        SignInRequired,
        (status = 422, description = "`invalid_title`", body = ApiErrorBody),
        (status = 503, description = "`no_lease` or `clock_behind`: no id could be issued for it; retry after `Retry-After`", body = ApiErrorBody),
    )
)]
async fn create_doc(
    State(state): State<AppState>,
    session: Session,
    Json(body): Json<CreateDoc>,
) -> ApiResult<(StatusCode, Json<Doc>)> {
    let user = signed_in(&session)?.clone();
    let title = valid_title(&body.title)?;
    let now = state.clock.now_ms();
    let doc = DocRow {
        id: state.ids.next_snowflake()?.to_string(),
        title,
        owner_id: user.id,
        owner_name: user.username,
        created_ms: now,
        updated_ms: now,
    };
    store::create(&state.db.pool, &doc.id, &doc.title, &doc.owner_id, now).await?;
    Ok((
        StatusCode::CREATED,
        Json(view(&state, &doc, Role::Owner).await?),
    ))
}

/// A document with its members.
#[utoipa::path(
    get,
    path = "/api/docs/{id}",
    tag = "docs",
    params(("id" = String, Path, description = "The document")),
    responses(
        (status = 200, description = "The document", body = Doc),
        SignInRequired,
        (status = 404, description = "`doc_not_found`", body = ApiErrorBody),
    )
)]
async fn get_doc(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<Doc>> {
    let (doc, role, _) = access(&state, &session, &id).await?;
    Ok(Json(view(&state, &doc, role).await?))
}

/// Rename a document (owner and editors).
#[utoipa::path(
    patch,
    path = "/api/docs/{id}",
    tag = "docs",
    params(("id" = String, Path, description = "The document")),
    request_body = RenameDoc,
    responses(
        (status = 200, description = "The document", body = Doc),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`doc_not_found`", body = ApiErrorBody),
        (status = 422, description = "`invalid_title`", body = ApiErrorBody),
    )
)]
async fn rename_doc(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Json(body): Json<RenameDoc>,
) -> ApiResult<Json<Doc>> {
    let (mut doc, role, _) = access(&state, &session, &id).await?;
    must_edit(role)?;
    doc.title = valid_title(&body.title)?;
    doc.updated_ms = state.clock.now_ms();
    if !store::rename(&state.db.pool, &id, &doc.title, doc.updated_ms).await? {
        return Err(doc_not_found(&id));
    }
    Ok(Json(view(&state, &doc, role).await?))
}

/// Delete a document (owner only); open connections close with 4404.
#[utoipa::path(
    delete,
    path = "/api/docs/{id}",
    tag = "docs",
    params(("id" = String, Path, description = "The document")),
    responses(
        (status = 204, description = "Deleted"),
        SignInRequired,
        (status = 403, description = "`owner_only`", body = ApiErrorBody),
        (status = 404, description = "`doc_not_found`", body = ApiErrorBody),
    )
)]
async fn delete_doc(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (_, role, _) = access(&state, &session, &id).await?;
    must_own(role)?;
    store::delete(&state.db.pool, &id).await?;
    state.docs.tell(&id, RoomMsg::Deleted).await;
    cluster::publish_deleted(&state.hub, &id);
    Ok(StatusCode::NO_CONTENT)
}

/// Share a document with someone (owner only): adds them as editor or viewer, or changes
/// their role.
#[utoipa::path(
    post,
    path = "/api/docs/{id}/members",
    tag = "docs",
    params(("id" = String, Path, description = "The document")),
    request_body = ShareDoc,
    responses(
        (status = 200, description = "The document with its members", body = Doc),
        SignInRequired,
        (status = 403, description = "`owner_only`", body = ApiErrorBody),
        (status = 404, description = "`doc_not_found` or `unknown_user`", body = ApiErrorBody),
        (status = 422, description = "`invalid_role` or `cannot_share_with_owner`", body = ApiErrorBody),
    )
)]
async fn share_doc(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Json(body): Json<ShareDoc>,
) -> ApiResult<Json<Doc>> {
    let (doc, role, _) = access(&state, &session, &id).await?;
    must_own(role)?;
    if body.role == Role::Owner {
        return Err(ApiError::unprocessable(
            "invalid_role",
            "role must be \"editor\" or \"viewer\"",
        ));
    }
    let key = crate::auth::password::username_key(body.username.trim());
    let Some(member) = crate::auth::store::user_by_username_key(&state.db.pool, &key)
        .await?
        .map(|row| row.user)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_user",
            format!("no account named {:?}", body.username.trim()),
        ));
    };
    if member.id == doc.owner_id {
        return Err(ApiError::unprocessable(
            "cannot_share_with_owner",
            "the owner already has every right",
        ));
    }
    store::upsert_member(
        &state.db.pool,
        &id,
        &member.id,
        body.role,
        state.clock.now_ms(),
    )
    .await?;
    member_changed(&state, &id, &member.id, Some(body.role)).await;
    Ok(Json(view(&state, &doc, role).await?))
}

async fn member_changed(state: &AppState, doc_id: &str, user_id: &str, role: Option<Role>) {
    state
        .docs
        .tell(
            doc_id,
            RoomMsg::SetRole {
                user_id: user_id.to_owned(),
                role,
            },
        )
        .await;
    cluster::publish_member(&state.hub, doc_id, user_id, role);
}

/// Remove a member (the owner, or a member leaving).
#[utoipa::path(
    delete,
    path = "/api/docs/{id}/members/{user_id}",
    tag = "docs",
    params(
        ("id" = String, Path, description = "The document"),
        ("user_id" = String, Path, description = "The member"),
    ),
    responses(
        (status = 200, description = "The document with its members after the removal (`role` is the caller's role before it)", body = Doc),
        SignInRequired,
        (status = 403, description = "`owner_only`", body = ApiErrorBody),
        (status = 404, description = "`doc_not_found` or `member_not_found`", body = ApiErrorBody),
    )
)]
async fn remove_member(
    State(state): State<AppState>,
    session: Session,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<Doc>> {
    let (doc, role, user) = access(&state, &session, &id).await?;
    if user.id != user_id {
        must_own(role)?;
    }
    if !store::remove_member(&state.db.pool, &id, &user_id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "member_not_found",
            format!("{user_id:?} is not a member of this document"),
        ));
    }
    member_changed(&state, &id, &user_id, None).await;
    Ok(Json(view(&state, &doc, role).await?))
}

/// The document's saved versions, newest first.
#[utoipa::path(
    get,
    path = "/api/docs/{id}/versions",
    tag = "docs",
    params(("id" = String, Path, description = "The document")),
    responses(
        (status = 200, description = "Versions, newest first", body = VersionList),
        SignInRequired,
        (status = 404, description = "`doc_not_found`", body = ApiErrorBody),
    )
)]
async fn list_versions(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<VersionList>> {
    access(&state, &session, &id).await?;
    let versions = store::versions(&state.db.pool, &id).await?;
    Ok(Json(VersionList { versions }))
}

/// Save the current state as a named version (owner and editors).
#[utoipa::path(
    post,
    path = "/api/docs/{id}/versions",
    tag = "docs",
    params(("id" = String, Path, description = "The document")),
    request_body = CreateVersion,
    responses(
        (status = 201, description = "The saved version", body = Version),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`doc_not_found`", body = ApiErrorBody),
        (status = 422, description = "`invalid_name`", body = ApiErrorBody),
        (status = 503, description = "`unavailable` (the document is busy), or `no_lease` or `clock_behind` (no id could be issued for the version); retry (`Retry-After`)", body = ApiErrorBody),
    )
)]
async fn save_version(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Json(body): Json<CreateVersion>,
) -> ApiResult<(StatusCode, Json<Version>)> {
    let (_, role, user) = access(&state, &session, &id).await?;
    must_edit(role)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_VERSION_NAME_CHARS {
        return Err(ApiError::unprocessable(
            "invalid_name",
            format!("a version name is 1 to {MAX_VERSION_NAME_CHARS} characters"),
        ));
    }
    let version = state
        .docs
        .ask(&id, |reply| RoomMsg::SaveVersion {
            kind: VersionKind::Named,
            name: Some(name.clone()),
            by: Some(user.username.clone()),
            reply,
        })
        .await
        .map_err(|e| room_error(e, &id))?;
    Ok((StatusCode::CREATED, Json(version)))
}

/// A version's content: a Yjs v1 update that builds the whole document as it was.
#[utoipa::path(
    get,
    path = "/api/docs/{id}/versions/{version_id}/update",
    tag = "docs",
    params(
        ("id" = String, Path, description = "The document"),
        ("version_id" = String, Path, description = "The version"),
    ),
    responses(
        (status = 200, description = "application/octet-stream: a Yjs v1 update", content_type = "application/octet-stream", body = Vec<u8>),
        SignInRequired,
        (status = 404, description = "`doc_not_found` or `version_not_found`", body = ApiErrorBody),
    )
)]
async fn version_update(
    State(state): State<AppState>,
    session: Session,
    Path((id, version_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    access(&state, &session, &id).await?;
    let (_, data) = store::version(&state.db.pool, &id, &version_id)
        .await?
        .ok_or_else(|| version_not_found(&version_id))?;
    Ok((
        [(CONTENT_TYPE, "application/octet-stream")],
        Bytes::from(data),
    )
        .into_response())
}

fn version_not_found(version_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "version_not_found",
        format!("no version {version_id:?} of this document"),
    )
}

/// Restore a version: its content replaces the current one as one ordinary edit that
/// every participant receives (owner and editors). The state before is saved first.
#[utoipa::path(
    post,
    path = "/api/docs/{id}/versions/{version_id}/restore",
    tag = "docs",
    params(
        ("id" = String, Path, description = "The document"),
        ("version_id" = String, Path, description = "The version"),
    ),
    responses(
        (status = 200, description = "Restored", body = Restored),
        SignInRequired,
        (status = 403, description = "`read_only`", body = ApiErrorBody),
        (status = 404, description = "`doc_not_found` or `version_not_found`", body = ApiErrorBody),
        (status = 503, description = "`unavailable` (the document is busy), or `no_lease` or `clock_behind` (no id could be issued for the version); retry (`Retry-After`)", body = ApiErrorBody),
    )
)]
async fn restore_version(
    State(state): State<AppState>,
    session: Session,
    Path((id, version_id)): Path<(String, String)>,
) -> ApiResult<Json<Restored>> {
    let (_, role, user) = access(&state, &session, &id).await?;
    must_edit(role)?;
    let (_, data) = store::version(&state.db.pool, &id, &version_id)
        .await?
        .ok_or_else(|| version_not_found(&version_id))?;
    let (blocks, final_line_end) = {
        let doc = schema::new_doc();
        let update = Update::decode_v1(&data).map_err(ApiError::internal)?;
        doc.transact_mut()
            .apply_update(update)
            .map_err(ApiError::internal)?;
        let text = doc.get_or_insert_text(schema::TEXT);
        let txn = doc.transact();
        (
            rich::blocks(&txn, &text),
            rich::ends_with_line_end(&txn, &text),
        )
    };
    let restored = state
        .docs
        .ask(&id, |reply| RoomMsg::Restore {
            blocks: blocks.clone(),
            final_line_end,
            by: user.username.clone(),
            reply,
        })
        .await
        .map_err(|e| room_error(e, &id))?;
    Ok(Json(restored))
}

/// What this server instance holds in memory.
#[utoipa::path(
    get,
    path = "/api/docs/rooms",
    tag = "docs",
    responses(
        (status = 200, description = "Loaded documents on this instance", body = RoomStats),
        SignInRequired,
    )
)]
async fn room_stats(State(state): State<AppState>, session: Session) -> ApiResult<Json<RoomStats>> {
    signed_in(&session)?;
    Ok(Json(state.docs.stats().await))
}
