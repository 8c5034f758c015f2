//! The `meridian sync` agent (see `run`).
