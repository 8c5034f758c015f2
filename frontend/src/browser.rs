//! The few facts the app reads from the browser itself: the clocks, randomness, the
//! realtime URL, whether the browser believes it is online, and fresh op ids.
//!
//! Each browser-facing function is a thin shell around a pure one (`ws_url`,
//! `uuid_v4_from_bytes`) so that the logic is tested natively. Nothing here panics when a
//! browser API is missing: every fallback is explicit.

use wasm_bindgen::JsCast;

/// Milliseconds since the Unix epoch, by the browser's wall clock.
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// A monotonic clock in milliseconds (`performance.now()`), for measuring durations such
/// as the heartbeat's round trip. Falls back to the wall clock without `performance`.
pub fn monotonic_ms() -> f64 {
    web_sys::window()
        .and_then(|window| window.performance())
        .map(|performance| performance.now())
        .unwrap_or_else(js_sys::Date::now)
}

/// A uniformly distributed number in `[0, 1)`.
pub fn random_unit() -> f64 {
    js_sys::Math::random()
}

/// Whether the browser believes it has a network (`navigator.onLine`). Only `false` is
/// reliable: `true` means "maybe".
pub fn navigator_online() -> bool {
    web_sys::window()
        .map(|window| window.navigator().on_line())
        .unwrap_or(true)
}

/// The realtime channel's URL on the page's own origin: `ws(s)://<host>/api/realtime`.
pub fn realtime_url() -> String {
    page_ws_url("/api/realtime")
}

/// The WebSocket URL of `path` on the page's own origin.
pub fn page_ws_url(path: &str) -> String {
    let location = web_sys::window().map(|window| window.location());
    let protocol = location
        .as_ref()
        .and_then(|location| location.protocol().ok())
        .unwrap_or_else(|| "http:".to_owned());
    let host = location
        .as_ref()
        .and_then(|location| location.host().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    ws_url(&protocol, &host, path)
}

/// The WebSocket URL for `path` on a page served over `protocol` (`"https:"` or
/// `"http:"`) from `host` (with its port, if any).
pub fn ws_url(protocol: &str, host: &str, path: &str) -> String {
    let scheme = if protocol.eq_ignore_ascii_case("https:") {
        "wss"
    } else {
        "ws"
    };
    format!("{scheme}://{host}{path}")
}

/// A fresh idempotency key for a publish: `crypto.randomUUID()` where the browser offers
/// it (secure contexts only), else a version 4 UUID from `crypto.getRandomValues`, else
/// from `Math.random` (which is still unique enough for an op id, just not secret).
pub fn new_op_id() -> String {
    let crypto = web_sys::window().and_then(|window| window.crypto().ok());
    if let Some(crypto) = &crypto {
        let has_random_uuid = js_sys::Reflect::get(crypto, &"randomUUID".into())
            .map(|value| value.is_function())
            .unwrap_or(false);
        if has_random_uuid {
            return crypto.random_uuid();
        }
    }
    let mut bytes = [0u8; 16];
    let filled = crypto
        .as_ref()
        .map(|crypto| crypto.get_random_values_with_u8_array(&mut bytes).is_ok())
        .unwrap_or(false);
    if !filled {
        for byte in bytes.iter_mut() {
            *byte = (random_unit() * 256.0) as u8;
        }
    }
    uuid_v4_from_bytes(bytes)
}

/// Formats 16 random bytes as a version 4, variant 1 UUID (RFC 9562), lowercase.
pub fn uuid_v4_from_bytes(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Local wall-clock time of a Unix timestamp in milliseconds, as `HH:MM`.
pub fn local_time_hh_mm(at_ms: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at_ms as f64));
    format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
}

/// Reads the value of an `<input>` behind a node ref, or an empty string when the node is
/// not mounted.
pub fn input_value(node: &yew::NodeRef) -> String {
    node.get()
        .and_then(|node| node.dyn_into::<web_sys::HtmlInputElement>().ok())
        .map(|input| input.value())
        .unwrap_or_default()
}

/// Clears the `<input>` behind a node ref and gives it the focus again.
pub fn clear_input(node: &yew::NodeRef) {
    if let Some(input) = node
        .get()
        .and_then(|node| node.dyn_into::<web_sys::HtmlInputElement>().ok())
    {
        input.set_value("");
        input.focus().ok();
    }
}

/// A listener on `window`, removed when dropped.
pub struct WindowListener {
    event: &'static str,
    closure: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::Event)>,
}

impl WindowListener {
    /// Listens for `event` on `window`; `None` if the browser refused the listener.
    pub fn add(
        window: &web_sys::Window,
        event: &'static str,
        closure: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::Event)>,
    ) -> Option<WindowListener> {
        window
            .add_event_listener_with_callback(event, closure.as_ref().unchecked_ref())
            .ok()?;
        Some(WindowListener { event, closure })
    }
}

impl Drop for WindowListener {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            let _ = window.remove_event_listener_with_callback(
                self.event,
                self.closure.as_ref().unchecked_ref(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_scheme_follows_the_page() {
        assert_eq!(
            ws_url("https:", "meridian.example:8443", "/api/realtime"),
            "wss://meridian.example:8443/api/realtime"
        );
        assert_eq!(
            ws_url("http:", "127.0.0.1:3000", "/api/realtime"),
            "ws://127.0.0.1:3000/api/realtime"
        );
    }

    #[test]
    fn uuids_carry_version_and_variant() {
        let id = uuid_v4_from_bytes([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let id = uuid_v4_from_bytes([0; 16]);
        assert_eq!(id, "00000000-0000-4000-8000-000000000000");
        assert_eq!(id.len(), 36);
        assert!(meridian_shared::realtime::valid_op_id(&id));
    }
}
