//! The documents API (`/api/docs`), typed: every call returns `Result<T, HttpError>` as
//! the helpers of [`crate::net::http`] do, with the same timeout and error decoding.
//! Every route needs a signed-in account (a guest gets 401 `sign_in_required`).

use gloo_net::http::Request;
use meridian_shared::docs::{
    CreateDoc, CreateVersion, Doc, DocList, RenameDoc, Restored, Role, ShareDoc, Version,
    VersionList,
};

use crate::net::http::{
    decode_error, path_segment, send, send_no_content, send_request, HttpError,
};

/// `/api/docs/{id}` followed by `rest` (which starts with `/`, or is empty).
pub fn doc_path(id: &str, rest: &str) -> String {
    format!("/api/docs/{}{rest}", path_segment(id))
}

/// `/api/docs/{id}/versions/{version_id}` followed by `rest`.
pub fn version_path(id: &str, version_id: &str, rest: &str) -> String {
    doc_path(id, &format!("/versions/{}{rest}", path_segment(version_id)))
}

/// `GET /api/docs`: the documents the caller may open, most recently changed first.
pub async fn list() -> Result<DocList, HttpError> {
    send(Request::get("/api/docs"), None::<&()>).await
}

/// `POST /api/docs`.
pub async fn create(title: &str) -> Result<Doc, HttpError> {
    let body = CreateDoc {
        title: title.to_owned(),
    };
    send(Request::post("/api/docs"), Some(&body)).await
}

/// `GET /api/docs/{id}`.
pub async fn get(id: &str) -> Result<Doc, HttpError> {
    send(Request::get(&doc_path(id, "")), None::<&()>).await
}

/// `PATCH /api/docs/{id}`.
pub async fn rename(id: &str, title: &str) -> Result<Doc, HttpError> {
    let body = RenameDoc {
        title: title.to_owned(),
    };
    send(Request::patch(&doc_path(id, "")), Some(&body)).await
}

/// `DELETE /api/docs/{id}` (204).
pub async fn delete(id: &str) -> Result<(), HttpError> {
    send_no_content(Request::delete(&doc_path(id, ""))).await
}

/// `POST /api/docs/{id}/members`: adds someone, or changes their role.
pub async fn share(id: &str, username: &str, role: Role) -> Result<Doc, HttpError> {
    let body = ShareDoc {
        username: username.to_owned(),
        role,
    };
    send(Request::post(&doc_path(id, "/members")), Some(&body)).await
}

/// `DELETE /api/docs/{id}/members/{user_id}`.
pub async fn remove_member(id: &str, user_id: &str) -> Result<Doc, HttpError> {
    let path = doc_path(id, &format!("/members/{}", path_segment(user_id)));
    send(Request::delete(&path), None::<&()>).await
}

/// `GET /api/docs/{id}/versions`, newest first.
pub async fn versions(id: &str) -> Result<VersionList, HttpError> {
    send(Request::get(&doc_path(id, "/versions")), None::<&()>).await
}

/// `POST /api/docs/{id}/versions`: a named version of the content as it is now.
pub async fn save_version(id: &str, name: &str) -> Result<Version, HttpError> {
    let body = CreateVersion {
        name: name.to_owned(),
    };
    send(Request::post(&doc_path(id, "/versions")), Some(&body)).await
}

/// `GET /api/docs/{id}/versions/{version_id}/update`: a Yjs v1 update that builds the
/// whole document as it was.
pub async fn version_update(id: &str, version_id: &str) -> Result<Vec<u8>, HttpError> {
    let response = send_request(
        Request::get(&version_path(id, version_id, "/update")),
        None::<&()>,
    )
    .await?;
    let status = response.status();
    if !response.ok() {
        let text = response.text().await.unwrap_or_default();
        return Err(decode_error(status, &text));
    }
    response
        .binary()
        .await
        .map_err(|error| HttpError::Network(error.to_string()))
}

/// `POST /api/docs/{id}/versions/{version_id}/restore`.
pub async fn restore(id: &str, version_id: &str) -> Result<Restored, HttpError> {
    send(
        Request::post(&version_path(id, version_id, "/restore")),
        None::<&()>,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_ids() {
        assert_eq!(doc_path("d1", ""), "/api/docs/d1");
        assert_eq!(doc_path("a/b", "/versions"), "/api/docs/a%2Fb/versions");
        assert_eq!(
            version_path("d1", "v 2", "/restore"),
            "/api/docs/d1/versions/v%202/restore"
        );
    }
}
