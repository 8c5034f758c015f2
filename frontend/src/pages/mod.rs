//! One module per page. Each page's pure logic (reducers, view models) sits beside its
//! component and is tested natively.

pub mod auth;
pub mod cart;
pub mod docs;
pub mod flags;
pub mod home;
pub mod ids;
pub mod not_found;
pub mod status;
