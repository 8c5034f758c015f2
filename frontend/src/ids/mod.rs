//! The ID generator in the browser (`/ids`): mint, decode and the node-id leases,
//! with the typed calls of `/api/ids` in [`api`] and the page in [`page`].

pub mod api;
pub mod page;

pub use page::IdsPage;
