//! The plumbing pages, which belong to no system: home, sign-in and sign-up, the status
//! page with the live lobby, and not found. Each page's pure logic (reducers, view
//! models) sits beside its component and is tested natively; the systems' pages live in
//! their own folders (`crate::cart`, `crate::flags`, ...).

pub mod auth;
pub mod home;
pub mod not_found;
pub mod status;
