//! The ETA API (`/api/eta/*`), typed, with [`crate::net::http`]'s timeout and errors.

use gloo_net::http::Request;
use meridian_shared::eta::wire::{
    MapResponse, RouteResponse, TrafficResponse, TripPosition, TripRequest, TripView,
};

use crate::net::http::{path_segment, send, HttpError};

/// `GET /api/eta/map`: the network (fetched by this page only).
pub async fn map() -> Result<MapResponse, HttpError> {
    send(Request::get("/api/eta/map"), None::<&()>).await
}

/// `GET /api/eta/traffic`.
pub async fn traffic() -> Result<TrafficResponse, HttpError> {
    send(Request::get("/api/eta/traffic"), None::<&()>).await
}

/// The route query of two `[lat, lon]` points.
pub fn route_path(from: [f64; 2], to: [f64; 2]) -> String {
    format!(
        "/api/eta/route?from={:.6},{:.6}&to={:.6},{:.6}",
        from[0], from[1], to[0], to[1]
    )
}

/// `GET /api/eta/route`.
pub async fn route(from: [f64; 2], to: [f64; 2]) -> Result<RouteResponse, HttpError> {
    send(Request::get(&route_path(from, to)), None::<&()>).await
}

/// `POST /api/eta/trips`.
pub async fn start_trip(from: [f64; 2], to: [f64; 2]) -> Result<TripView, HttpError> {
    send(
        Request::post("/api/eta/trips"),
        Some(&TripRequest { from, to }),
    )
    .await
}

/// `POST /api/eta/trips/{id}/positions`.
pub async fn post_position(id: &str, at: [f64; 2]) -> Result<TripView, HttpError> {
    let path = format!("/api/eta/trips/{}/positions", path_segment(id));
    let body = TripPosition {
        lat: at[0],
        lon: at[1],
        t_ms: None,
    };
    send(Request::post(&path), Some(&body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_queries_are_lat_lon_pairs() {
        assert_eq!(
            route_path([60.17, 24.94], [60.1675, 24.9525]),
            "/api/eta/route?from=60.170000,24.940000&to=60.167500,24.952500"
        );
    }
}
