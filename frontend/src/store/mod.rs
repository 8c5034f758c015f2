//! What the browser keeps for the app, naming no system: the IndexedDB wrapper
//! ([`idb`]), the outbox of unacknowledged publishes kept in it ([`outbox`]), and the
//! BroadcastChannel through which the tabs of one browser tell each other about changes
//! ([`broadcast`]). Systems keep their own stores in their folders (the cart's replica in
//! `crate::cart`, the flags' last known configuration in `crate::flags::stream`).
//!
//! Invariant: nothing here imports `crate::net` (the realtime client builds on the
//! store, not the other way round).

pub mod broadcast;
pub mod idb;
pub mod outbox;
