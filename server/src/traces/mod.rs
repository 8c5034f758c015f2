//! Distributed tracing (placeholder while the engine is built).
pub mod store;
