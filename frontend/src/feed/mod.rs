//! The news feed in the browser (`/feed`): the ranked feed with its reasons, compose,
//! like, reply, follow and unfollow, profiles, the "N new posts" banner fed by the
//! `user:<id>` topic, and switching between the seeded demo accounts.
//!
//! - [`api`]: the typed calls of `/api/feed`.
//! - [`state`]: the page's pure reducer (tested natively).
//! - [`storage`]: IndexedDB `meridian-feed`: the last feed shown (read offline) and the
//!   posts composed offline (sent on reconnect).
//! - [`page`]: the component.

pub mod api;
pub mod page;
pub mod state;
pub mod storage;

pub use page::FeedPage;
