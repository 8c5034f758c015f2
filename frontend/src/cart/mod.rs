//! The shop in the browser (`/cart`): the catalog, the session's local-first cart and
//! its history, together.
//!
//! Layout:
//! - [`api`]: the typed calls of `/api/products` and `/api/cart`.
//! - [`model`]: the cart's replica as a pure model (confirmed view plus pending ops,
//!   batching, refusals, rebasing after sign-in), tested natively.
//! - [`client`]: the browser glue around it (IndexedDB `meridian-cart`, sending with
//!   backoff, the realtime topic, the other tabs).
//! - [`page`]: the page and its components; [`history`]: the history panel.

pub mod api;
pub mod client;
#[cfg(test)]
mod fixtures;
pub mod history;
pub mod model;
pub mod page;

pub use page::CartPage;
