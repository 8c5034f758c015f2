//! What the browser keeps for the app: the IndexedDB wrapper ([`idb`]), the outbox of
//! unacknowledged publishes kept in it ([`outbox`]), the BroadcastChannel through
//! which the tabs of one browser tell each other about changes ([`broadcast`]), and the
//! shopping cart's local-first replica ([`cart`]).

pub mod broadcast;
pub mod cart;
pub mod idb;
pub mod outbox;
