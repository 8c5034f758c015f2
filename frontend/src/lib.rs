//! Meridian's web UI: a Yew single-page app, built for `wasm32-unknown-unknown` and served
//! by the Meridian server from `static/`.
//!
//! Layout:
//! - [`app`]: the routes, the header (who am I, connection indicator) and the contexts
//!   every page reads: the [`net::realtime::Realtime`] handle, its
//!   [`net::realtime::RealtimeStatus`] and the [`session::SessionState`].
//! - One folder per system, with its pages, components, state, storage and API calls
//!   together: [`cart`] (the shop), [`flags`] (feature flags), [`ids`] (the ID
//!   generator), [`docs`] (collaborative documents), [`admin`] (accounts and roles),
//!   [`sales`] (the flash sale).
//!   generator), [`docs`] (collaborative documents), [`drive`] (file sync), [`admin`] (accounts and roles).
//! - [`pages`]: the plumbing pages that belong to no system (home, sign-in, status,
//!   not found).
//! - [`components`]: widgets that several pages share.
//! - [`net`]: typed HTTP helpers, the one reconnecting WebSocket ([`net::socket`]) and
//!   the realtime client on it (heartbeat, subscriptions and an offline outbox).
//! - [`store`]: browser storage: IndexedDB, the outbox kept in it, and the
//!   BroadcastChannel between tabs.
//! - [`session`]: who the session belongs to, its role and permissions.
//! - [`browser`]: the few small facts read from the browser (clock, randomness, URLs).
//!
//! Invariants:
//! - Wire types come from `meridian_shared`; nothing here redefines them.
//! - Plumbing (`net`, `store`, `components`, `pages`, `session`, `browser`) names no
//!   system; `store` does not import `net`; a system imports plumbing, never another
//!   system's internals.
//! - Page logic that can be pure is a reducer or a plain function, tested natively with
//!   `cargo test -p meridian-web`; code that touches the DOM is never called by those
//!   tests.

pub mod admin;
pub mod app;
pub mod browser;
pub mod cart;
pub mod components;
pub mod docs;
pub mod drive;
pub mod eta;
pub mod feed;
pub mod flags;
pub mod ids;
pub mod net;
pub mod pages;
pub mod sales;
pub mod session;
pub mod store;
pub mod traces;
pub mod wal;

use wasm_bindgen::prelude::*;

/// The id of the element that `static/index.html` gives the app to render into.
pub const ROOT_ELEMENT_ID: &str = "app";

/// Entry point, run once when the wasm module is instantiated: replaces the loading
/// indicator in `#app` (or, without it, renders into `<body>`) with [`app::App`].
#[wasm_bindgen(start)]
pub fn start() {
    let Some(document) = web_sys::window().and_then(|window| window.document()) else {
        return;
    };
    match document.get_element_by_id(ROOT_ELEMENT_ID) {
        Some(root) => {
            // The loading indicator the server sent is replaced, not kept beside the app.
            root.set_inner_html("");
            root.remove_attribute("aria-busy").ok();
            yew::Renderer::<app::App>::with_root(root).render();
        }
        None => {
            yew::Renderer::<app::App>::new().render();
        }
    }
}
