//! What the browser keeps for the app: the IndexedDB wrapper ([`idb`]), the outbox of
//! unacknowledged publishes kept in it ([`outbox`]), and the BroadcastChannel through
//! which the tabs of one browser tell each other about changes ([`broadcast`]).

pub mod broadcast;
pub mod idb;
pub mod outbox;
