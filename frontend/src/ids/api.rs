//! The ID generator's API (`/api/ids`), typed: every call returns `Result<T, HttpError>`
//! as the helpers of [`crate::net::http`] do, with the same timeout and error decoding.

use gloo_net::http::Request;
use meridian_shared::ids::{IdLeases, IdParts, IdsRequest, IdsResponse};

use crate::net::http::{path_segment, send, HttpError};

/// `POST /api/ids`: mint `count` IDs in `format`.
pub async fn mint_ids(request: &IdsRequest) -> Result<IdsResponse, HttpError> {
    send(Request::post("/api/ids"), Some(request)).await
}

/// The path that describes `id`.
pub fn describe_path(id: &str) -> String {
    format!("/api/ids/{}", path_segment(id))
}

/// `GET /api/ids/{id}`: what an ID says.
pub async fn describe_id(id: &str) -> Result<IdParts, HttpError> {
    send(Request::get(&describe_path(id)), None::<&()>).await
}

/// `GET /api/ids/leases`: the node-id leases and this instance's generator.
pub async fn id_leases() -> Result<IdLeases, HttpError> {
    send(Request::get("/api/ids/leases"), None::<&()>).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_one_path_segment() {
        assert_eq!(describe_path("123456789"), "/api/ids/123456789");
        assert_eq!(
            describe_path("0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b"),
            "/api/ids/0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(describe_path("a/b"), "/api/ids/a%2Fb");
    }
}
