//! ETA under live traffic in the browser (`/eta`): the road network drawn on a canvas
//! from our own data (no tiles), roads coloured by live traffic, a route whose ends are
//! dragged with an instant preview computed here in wasm by the shared engine
//! (`meridian_shared::eta`), the server's ETA, and a simulated trip whose ETA the server
//! updates live (its realtime topic).
//!
//! [`model`] is the pure part (the graph from the map payload, live weights, the
//! projection, colours); [`api`] the typed calls; [`page`] the component.

pub mod api;
pub mod model;
pub mod page;

pub use page::EtaPage;
