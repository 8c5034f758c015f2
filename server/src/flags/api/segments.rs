//! Segments: named sets of contexts (listed keys, rules) that flags target with
//! `in_segment`. A segment change is a configuration change (audited, versioned,
//! published); every flag must still compile after it, and a segment in use cannot go.

use axum::extract::State;
use axum::http::StatusCode;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::flags::admin::SegmentList;
use meridian_shared::flags::Segment;

use super::SegmentKey;
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::flags::access::{READ, WRITE};
use crate::flags::change::{Actor, AuditedChange};
use crate::flags::store::{self, NewAudit};
use crate::flags::{segments_of, to_json};
use crate::AppState;

/// Every segment.
#[utoipa::path(
    get,
    path = "/api/flags/segments",
    tag = "flags",
    responses(
        (status = 200, description = "Segments", body = SegmentList),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
    )
)]
pub(super) async fn list_segments(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<SegmentList>> {
    session.require(&READ)?;
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(SegmentList {
        segments: store::segments(&mut conn).await?,
    }))
}

/// Create or replace a segment.
#[utoipa::path(
    put,
    path = "/api/flags/segments/{key}",
    tag = "flags",
    params(SegmentKey),
    request_body = Segment,
    responses(
        (status = 200, description = "The segment", body = Segment),
        (status = 400, description = "`invalid_segment`, `key_mismatch` or `invalid_json`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin)", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ApiErrorBody),
        (status = 422, description = "`invalid_body`: the JSON does not have the expected shape", body = ApiErrorBody),
    )
)]
pub(super) async fn put_segment(
    State(state): State<AppState>,
    session: Session,
    Path(SegmentKey { key }): Path<SegmentKey>,
    Json(segment): Json<Segment>,
) -> ApiResult<Json<Segment>> {
    let user = session.require(&WRITE)?;
    if segment.key != key {
        return Err(ApiError::bad_request(
            "key_mismatch",
            "the path and the body name different segments",
        ));
    }
    segment
        .validate()
        .map_err(|e| ApiError::bad_request("invalid_segment", e.to_string()))?;
    let mut change = AuditedChange::begin(&state, Actor::user(user)).await?;
    let before = store::segments(change.tx())
        .await?
        .into_iter()
        .find(|s| s.key == key);
    let now = change.now_ms();
    store::put_segment(change.tx(), &segment, now).await?;
    // Every flag must still compile with the new segment.
    let segments = segments_of(change.tx()).await?;
    for flag in store::all_flags(change.tx()).await? {
        flag.validate(&segments).map_err(|e| {
            ApiError::bad_request("invalid_segment", format!("flag {}: {e}", flag.key))
        })?;
    }
    change
        .audit(
            NewAudit::new("segment_update")
                .change(before.as_ref().map(to_json), Some(to_json(&segment))),
        )
        .await?;
    change.commit_and_publish().await?;
    Ok(Json(segment))
}

/// Delete a segment that no flag uses.
#[utoipa::path(
    delete,
    path = "/api/flags/segments/{key}",
    tag = "flags",
    params(SegmentKey),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin)", body = ApiErrorBody),
        (status = 404, description = "`segment_not_found`", body = ApiErrorBody),
        (status = 409, description = "`segment_in_use`", body = ApiErrorBody),
    )
)]
pub(super) async fn delete_segment(
    State(state): State<AppState>,
    session: Session,
    Path(SegmentKey { key }): Path<SegmentKey>,
) -> ApiResult<StatusCode> {
    let user = session.require(&WRITE)?;
    let mut change = AuditedChange::begin(&state, Actor::user(user)).await?;
    let before = store::segments(change.tx())
        .await?
        .into_iter()
        .find(|s| s.key == key)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "segment_not_found",
                format!("there is no segment {key:?}"),
            )
        })?;
    store::delete_segment(change.tx(), &key).await?;
    let segments = segments_of(change.tx()).await?;
    for flag in store::all_flags(change.tx()).await? {
        if flag.validate(&segments).is_err() {
            return Err(ApiError::conflict(
                "segment_in_use",
                format!("flag {} uses segment {key:?}", flag.key),
            ));
        }
    }
    change
        .audit(NewAudit::new("segment_delete").change(Some(to_json(&before)), None))
        .await?;
    change.commit_and_publish().await?;
    Ok(StatusCode::NO_CONTENT)
}
