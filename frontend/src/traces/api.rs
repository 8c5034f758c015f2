//! The tracing API (`/api/tracing/...`), typed, through [`crate::net::http`].

use gloo_net::http::Request;
use meridian_shared::traces::{
    ServiceDependenciesResponse, TraceSearchResponse, TraceTree, TracedServicesResponse,
};

use crate::net::http::{path_segment, send, HttpError};

/// The search form's conditions; empty fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchForm {
    pub service: String,
    pub operation: String,
    pub tags: String,
    /// `""`, `error` or `ok`.
    pub status: String,
    pub min_duration_ms: String,
}

fn encode_query(pairs: &[(&str, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", path_segment(v.trim())))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The search URL of `form` (a bad duration is left out, not sent).
pub fn search_path(form: &SearchForm) -> String {
    let min_us = form
        .min_duration_ms
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|ms| *ms >= 0.0)
        .map(|ms| ((ms * 1000.0) as u64).to_string())
        .unwrap_or_default();
    format!(
        "/api/tracing/search{}",
        encode_query(&[
            ("service", form.service.clone()),
            ("operation", form.operation.clone()),
            ("tags", form.tags.clone()),
            ("status", form.status.clone()),
            ("min_duration_us", min_us),
            ("limit", "50".into()),
        ])
    )
}

pub async fn search(form: &SearchForm) -> Result<TraceSearchResponse, HttpError> {
    send(Request::get(&search_path(form)), None::<&()>).await
}

pub async fn trace(trace_id: &str) -> Result<TraceTree, HttpError> {
    let path = format!("/api/tracing/traces/{}", path_segment(trace_id));
    send(Request::get(&path), None::<&()>).await
}

pub async fn services() -> Result<TracedServicesResponse, HttpError> {
    send(Request::get("/api/tracing/services"), None::<&()>).await
}

pub async fn dependencies() -> Result<ServiceDependenciesResponse, HttpError> {
    send(Request::get("/api/tracing/dependencies"), None::<&()>).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_paths_leave_out_empty_fields_and_encode_the_rest() {
        assert_eq!(
            search_path(&SearchForm::default()),
            "/api/tracing/search?limit=50"
        );
        let form = SearchForm {
            service: "api".into(),
            tags: "http.route=/x".into(),
            min_duration_ms: "1.5".into(),
            status: "error".into(),
            ..Default::default()
        };
        assert_eq!(
            search_path(&form),
            "/api/tracing/search?service=api&tags=http.route%3D%2Fx&status=error&min_duration_us=1500&limit=50"
        );
    }
}
