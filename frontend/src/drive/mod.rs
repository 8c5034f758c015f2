//! `/drive`: your files. A folder tree with breadcrumbs; drag-and-drop (or pick) upload,
//! chunked and hashed here in wasm with the same code as the server and the agent, so
//! only the chunks the server lacks are sent; download; rename, move, delete, restore
//! (the trash); versions; conflicted copies marked as such; text files opened for
//! editing are cached in IndexedDB (readable offline), and a save made offline waits in
//! localStorage and is sent when the browser is back online (a stale base becomes a
//! conflicted copy on the server, never a lost edit).
//!
//! ```text
//! api    /api/drive calls, the upload (manifest, missing chunks, commit) with progress
//! state  the page's pure reducer (folder, listing, uploads, versions, editor)
//! store  IndexedDB cache of text files and the offline saves' queue
//! page   the components
//! ```

pub mod api;
pub mod page;
pub mod state;
pub mod store;

pub use page::DrivePage;
