//! The few things the flags' components read from the DOM and the browser's clock.

use wasm_bindgen::JsValue;
use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

use crate::net::http::HttpError;

/// A Unix time in ms as local `YYYY-MM-DD HH:MM:SS`.
pub fn local_date_time(at_ms: i64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(at_ms as f64));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        date.get_full_year(),
        date.get_month() + 1,
        date.get_date(),
        date.get_hours(),
        date.get_minutes(),
        date.get_seconds()
    )
}

/// A `datetime-local` input's value as Unix ms (local time); `None` when blank or
/// invalid.
pub fn parse_local_time(text: &str) -> Option<i64> {
    if text.trim().is_empty() {
        return None;
    }
    let time = js_sys::Date::new(&JsValue::from_str(text)).get_time();
    time.is_finite().then_some(time as i64)
}

pub fn input_text(event: &InputEvent) -> String {
    event.target_unchecked_into::<HtmlInputElement>().value()
}

pub fn textarea_text(event: &InputEvent) -> String {
    event.target_unchecked_into::<HtmlTextAreaElement>().value()
}

pub fn select_text(event: &Event) -> String {
    event.target_unchecked_into::<HtmlSelectElement>().value()
}

pub fn checkbox(event: &Event) -> bool {
    event.target_unchecked_into::<HtmlInputElement>().checked()
}

/// A 401: the session is not (or no longer) signed in.
pub fn is_sign_in_required(error: &HttpError) -> bool {
    matches!(error, HttpError::Api { status: 401, .. })
}
