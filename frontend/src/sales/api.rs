//! The flash sale's API, typed: every call returns `Result<T, HttpError>` as the helpers
//! of [`crate::net::http`] do.

use gloo_net::http::Request;
use meridian_shared::sales::{
    CheckoutAnswer, CreateSale, OrderList, PaymentAnswer, SaleDashboard, SaleList, SaleView,
};

use crate::net::http::{path_segment, send, HttpError};

pub async fn list_sales() -> Result<SaleList, HttpError> {
    send(Request::get("/api/sales"), None::<&()>).await
}

pub async fn sale(id: &str) -> Result<SaleView, HttpError> {
    send(
        Request::get(&format!("/api/sales/{}", path_segment(id))),
        None::<&()>,
    )
    .await
}

pub async fn create_sale(body: &CreateSale) -> Result<SaleView, HttpError> {
    send(Request::post("/api/sales"), Some(body)).await
}

/// `POST /api/sales/{id}/checkout` with `key` as its `Idempotency-Key` (200 reserved and
/// 202 queued both decode as a [`CheckoutAnswer`]).
pub async fn checkout(id: &str, key: &str) -> Result<CheckoutAnswer, HttpError> {
    send(
        Request::post(&format!("/api/sales/{}/checkout", path_segment(id)))
            .header("Idempotency-Key", key),
        None::<&()>,
    )
    .await
}

pub async fn pay(reservation_id: &str) -> Result<PaymentAnswer, HttpError> {
    send(
        Request::post(&format!(
            "/api/reservations/{}/pay",
            path_segment(reservation_id)
        )),
        None::<&()>,
    )
    .await
}

pub async fn orders() -> Result<OrderList, HttpError> {
    send(Request::get("/api/orders"), None::<&()>).await
}

pub async fn dashboard(id: &str) -> Result<SaleDashboard, HttpError> {
    send(
        Request::get(&format!("/api/sales/{}/dashboard", path_segment(id))),
        None::<&()>,
    )
    .await
}
