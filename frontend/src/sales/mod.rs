//! The flash sale in the browser (`/sale`): a sale with its countdown, buy → queue
//! position → reserved (a timer) → pay → confirmed, the buyer's orders, and for admins
//! the creation form and a live dashboard. Calls of `/api/sales` in [`api`], the
//! purchase's pure reducer in [`state`], the page in [`page`].

pub mod api;
pub mod page;
pub mod state;

pub use page::SalePage;
