//! Accounts and roles in the browser (`/admin`), for accounts holding `admin:roles`:
//! every account with its role (changed with a select), its sessions and last activity,
//! what each role may do, and the log of role changes.
//!
//! Layout: [`api`] (the typed calls of `/api/admin`), [`state`] (the page's pure reducer
//! and what it derives, tested natively), [`page`] (the page).
//!
//! Test contract (`data-testid`s): `admin-page`; `admin-sign-in` (a guest's prompt),
//! `admin-forbidden` (an account without the admin role); `admin-loading`,
//! `admin-error`, `admin-empty`; `admin-users` with `admin-user-{username}` rows
//! (`data-user-id`, `data-role`) holding `role-{username}` (the select),
//! `sessions-{username}` and `role-error-{username}`; `admin-permissions` with
//! `permission-{name}` rows; `admin-audit` with `role-audit-entry` children
//! (`data-username`, `data-before`, `data-after`).
//!
//! Invariants: the page never offers what the server would refuse it for (a guest or a
//! non-admin sees why instead of a table); only the latest list request sets the list;
//! a role change shows the server's answer, never an assumed one.

pub mod api;
pub mod page;
pub mod state;

pub use page::AdminPage;

/// The permission that changes roles, as `/api/auth/me` names it.
pub const ROLES_PERMISSION: &str = "admin:roles";
