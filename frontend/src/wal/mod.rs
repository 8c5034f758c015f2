//! The replicated write-ahead log in the browser (`/wal`): the server's local cluster
//! live (nodes, leader, term, commit and apply index, lag), kill and restart a node,
//! append records, and a slider over LSNs that shows the key-value state at any past
//! point. Calls in [`api`], the page's pure model in [`state`], the view in [`page`].

pub mod api;
pub mod page;
pub mod state;

pub use page::WalPage;
