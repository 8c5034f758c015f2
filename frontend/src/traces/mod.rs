//! Distributed tracing in the browser (`/tracing`): search, the service map, and a
//! trace's waterfall (`/tracing/{trace_id}`), virtualised so that a 100,000-span trace
//! opens and scrolls. Calls in [`api`], the waterfall's pure model in [`state`], the
//! views in [`page`].

pub mod api;
pub mod page;
pub mod state;

pub use page::{TracePage, TracingPage};
