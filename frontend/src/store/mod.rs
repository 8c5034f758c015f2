//! What the browser keeps for the app: the IndexedDB wrapper ([`idb`]), the outbox of
//! unacknowledged publishes kept in it ([`outbox`]), the BroadcastChannel through
//! which the tabs of one browser tell each other about changes ([`broadcast`]), the
//! shopping cart's local-first replica ([`cart`]), and the feature flags' live
//! configuration, followed over Server-Sent Events and kept in localStorage ([`flags`]).

pub mod broadcast;
pub mod cart;
pub mod flags;
pub mod idb;
pub mod outbox;
