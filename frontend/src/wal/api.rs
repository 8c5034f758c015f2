//! The page's calls (`/api/wal/...`), typed as the helpers of [`crate::net::http`] do.

use gloo_net::http::Request;
use meridian_shared::wal::{
    WalAppendRequest, WalAppendResponse, WalLocalNode, WalNodesResponse, WalRecordInput,
    WalRecordsResponse, WalStateResponse,
};

use crate::net::http::{send, HttpError};

/// `GET /api/wal/nodes`.
pub async fn nodes() -> Result<WalNodesResponse, HttpError> {
    send(Request::get("/api/wal/nodes"), None::<&()>).await
}

/// `POST /api/wal/nodes/{id}/kill` or `.../restart`.
pub async fn node_action(id: u64, action: &str) -> Result<WalLocalNode, HttpError> {
    send(
        Request::post(&format!("/api/wal/nodes/{id}/{action}")),
        None::<&()>,
    )
    .await
}

/// `POST /api/wal/append` of one record.
pub async fn append(key: String, value: String) -> Result<WalAppendResponse, HttpError> {
    let request = WalAppendRequest {
        records: vec![WalRecordInput {
            key,
            value,
            idempotency_key: Some(crate::browser::new_op_id()),
        }],
    };
    send(Request::post("/api/wal/append"), Some(&request)).await
}

/// `GET /api/wal/records?from=LSN`.
pub async fn records(from: u64) -> Result<WalRecordsResponse, HttpError> {
    send(
        Request::get(&format!("/api/wal/records?from={from}&limit=1000")),
        None::<&()>,
    )
    .await
}

/// `GET /api/wal/state?lsn=N`.
pub async fn state_at(lsn: u64) -> Result<WalStateResponse, HttpError> {
    send(
        Request::get(&format!("/api/wal/state?lsn={lsn}")),
        None::<&()>,
    )
    .await
}
