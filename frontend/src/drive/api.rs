//! The drive's API (`/api/drive`), typed like the rest of [`crate::net::http`].

use std::collections::HashSet;

use gloo_net::http::Request;
use meridian_shared::drive::chunking::manifest_of;
use meridian_shared::drive::{
    Committed, MoveNode, NewFolder, NewUpload, Node, NodeList, UploadStatus, VersionInfo,
    VersionList,
};

use crate::net::http::{
    decode_error, path_segment, send, send_no_content, send_request, HttpError,
};

/// `GET /api/drive/children`: a folder's children (the top of the drive for `None`).
pub async fn children(
    parent_id: Option<&str>,
    include_deleted: bool,
) -> Result<Vec<Node>, HttpError> {
    let mut url = String::from("/api/drive/children?");
    if let Some(id) = parent_id {
        url.push_str(&format!("parent_id={}&", path_segment(id)));
    }
    if include_deleted {
        url.push_str("include_deleted=true");
    }
    Ok(send::<NodeList, ()>(Request::get(&url), None).await?.nodes)
}

pub async fn create_folder(parent_id: Option<&str>, name: &str) -> Result<Node, HttpError> {
    let body = NewFolder {
        parent_id: parent_id.map(str::to_owned),
        name: name.to_owned(),
    };
    send(Request::post("/api/drive/folders"), Some(&body)).await
}

pub async fn move_node(id: &str, parent_id: Option<&str>, name: &str) -> Result<Node, HttpError> {
    let body = MoveNode {
        parent_id: parent_id.map(str::to_owned),
        name: name.to_owned(),
    };
    send(
        Request::patch(&format!("/api/drive/nodes/{}", path_segment(id))),
        Some(&body),
    )
    .await
}

pub async fn delete(id: &str) -> Result<(), HttpError> {
    send_no_content(Request::delete(&format!(
        "/api/drive/nodes/{}",
        path_segment(id)
    )))
    .await
}

pub async fn restore(id: &str) -> Result<Node, HttpError> {
    send::<Node, ()>(
        Request::post(&format!("/api/drive/nodes/{}/restore", path_segment(id))),
        None,
    )
    .await
}

pub async fn versions(id: &str) -> Result<Vec<VersionInfo>, HttpError> {
    let url = format!("/api/drive/nodes/{}/versions", path_segment(id));
    Ok(send::<VersionList, ()>(Request::get(&url), None)
        .await?
        .versions)
}

pub async fn restore_version(version_id: &str) -> Result<Node, HttpError> {
    let url = format!("/api/drive/versions/{}/restore", path_segment(version_id));
    send::<Node, ()>(Request::post(&url), None).await
}

/// The URL of a file's current content (a download link).
pub fn content_url(id: &str) -> String {
    format!("/api/drive/nodes/{}/content", path_segment(id))
}

/// The URL of one version's content.
pub fn version_url(version_id: &str) -> String {
    format!("/api/drive/versions/{}/content", path_segment(version_id))
}

/// A version's bytes.
pub async fn fetch_version(version_id: &str) -> Result<Vec<u8>, HttpError> {
    let response = send_request::<()>(Request::get(&version_url(version_id)), None).await?;
    let status = response.status();
    if !response.ok() {
        let text = response.text().await.unwrap_or_default();
        return Err(decode_error(status, &text));
    }
    response
        .binary()
        .await
        .map_err(|e| HttpError::Network(e.to_string()))
}

/// Uploads `data` to `target` (its manifest computed here): only the chunks the server
/// lacks are sent; `progress(sent, total)` hears the bytes sent so far.
pub async fn upload(
    data: &[u8],
    mut target: NewUpload,
    progress: impl Fn(u64, u64),
) -> Result<Committed, HttpError> {
    target.chunks = manifest_of(data);
    let status: UploadStatus = send(Request::post("/api/drive/uploads"), Some(&target)).await?;
    let missing: HashSet<&String> = status.missing.iter().collect();
    let total: u64 = target
        .chunks
        .iter()
        .filter(|c| missing.contains(&c.hash))
        .map(|c| c.size)
        .sum();
    let mut sent = 0u64;
    progress(sent, total);
    let mut offset = 0usize;
    let mut done: HashSet<&String> = HashSet::new();
    for chunk in &target.chunks {
        let piece = &data[offset..offset + chunk.size as usize];
        offset += chunk.size as usize;
        if !missing.contains(&chunk.hash) || !done.insert(&chunk.hash) {
            continue;
        }
        let url = format!(
            "/api/drive/uploads/{}/chunks/{}",
            path_segment(&status.upload_id),
            chunk.hash
        );
        let body = js_sys::Uint8Array::from(piece);
        let request = Request::put(&url)
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .map_err(|e| HttpError::Network(e.to_string()))?;
        let response = request
            .send()
            .await
            .map_err(|e| HttpError::Network(e.to_string()))?;
        if !response.ok() {
            let text = response.text().await.unwrap_or_default();
            return Err(decode_error(response.status(), &text));
        }
        sent += chunk.size;
        progress(sent, total);
    }
    let url = format!(
        "/api/drive/uploads/{}/commit",
        path_segment(&status.upload_id)
    );
    send::<Committed, ()>(Request::post(&url), None).await
}

/// A new file named `name` in `parent_id`.
pub fn new_file(parent_id: Option<&str>, name: &str) -> NewUpload {
    NewUpload {
        chunk_edits: None,
        signatures: false,
        node_id: None,
        base_version: None,
        parent_id: parent_id.map(str::to_owned),
        name: Some(name.to_owned()),
        device: device(),
        chunks: Vec::new(),
    }
}

/// A new version of `node_id` made from `base_version`.
pub fn new_version(node_id: &str, base_version: Option<&str>) -> NewUpload {
    NewUpload {
        chunk_edits: None,
        signatures: false,
        node_id: Some(node_id.to_owned()),
        base_version: base_version.map(str::to_owned),
        parent_id: None,
        name: None,
        device: device(),
        chunks: Vec::new(),
    }
}

/// This device's name in conflicted copies.
pub fn device() -> String {
    "browser".to_owned()
}
