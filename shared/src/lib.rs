//! Meridian's wire types and the pure logic that both sides run.
//!
//! Everything here crosses the network (or is computed identically in the browser and on
//! the server), so changing this crate is changing the public API. The crate has no
//! async runtime, no HTTP and no database: it builds for `wasm32-unknown-unknown` and for
//! the host, and is tested natively.
//!
//! Invariants:
//! - Every type that crosses the network derives `Serialize`/`Deserialize` here with
//!   explicit `snake_case` names; the server's rows and engines convert into these.
//! - IDs cross JSON as strings.

pub mod api;
pub mod cart;
pub mod docs;
pub mod drive;
pub mod eta;
pub mod feed;
pub mod flags;
pub mod ids;
pub mod realtime;
pub mod sales;
pub mod systems;
pub mod traceparent;
pub mod traces;
pub mod wal;
