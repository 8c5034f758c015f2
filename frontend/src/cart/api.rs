//! The shop's API (`/api/products`, `/api/cart`), typed: every call returns
//! `Result<T, HttpError>` as the helpers of [`crate::net::http`] do, with the same
//! timeout and error decoding.

use gloo_net::http::Request;
use meridian_shared::cart::{CartHistory, CartOpsRequest, CartView, ProductList};

use crate::net::http::{send, HttpError};

/// `GET /api/products`: the catalog, in catalog order.
pub async fn products() -> Result<ProductList, HttpError> {
    send(Request::get("/api/products"), None::<&()>).await
}

/// `GET /api/cart`: the session's cart (a guest's, or the signed-in account's).
pub async fn cart() -> Result<CartView, HttpError> {
    send(Request::get("/api/cart"), None::<&()>).await
}

/// `POST /api/cart/ops`: applies the ops all or nothing, in order; answers with the
/// resulting cart.
pub async fn cart_ops(request: &CartOpsRequest) -> Result<CartView, HttpError> {
    send(Request::post("/api/cart/ops"), Some(request)).await
}

/// `GET /api/cart/history`: up to `limit` entries older than the cursor `before` (the
/// newest without it), newest first.
pub async fn cart_history(before: Option<u64>, limit: u32) -> Result<CartHistory, HttpError> {
    send(Request::get(&cart_history_path(before, limit)), None::<&()>).await
}

/// The path of a page of cart history.
pub fn cart_history_path(before: Option<u64>, limit: u32) -> String {
    match before {
        Some(before) => format!("/api/cart/history?limit={limit}&before={before}"),
        None => format!("/api/cart/history?limit={limit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_pages_carry_their_cursor() {
        assert_eq!(cart_history_path(None, 50), "/api/cart/history?limit=50");
        assert_eq!(
            cart_history_path(Some(17), 20),
            "/api/cart/history?limit=20&before=17"
        );
    }
}
