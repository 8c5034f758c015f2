//! The admin API (`/api/admin`), typed: every call returns `Result<T, HttpError>` as the
//! helpers of [`crate::net::http`] do. Every route needs `admin:roles` (403 `forbidden`
//! otherwise, 401 `sign_in_required` for a guest).

use gloo_net::http::Request;
use meridian_shared::api::{AdminUser, AdminUserList, Role, RoleChange};

use crate::net::http::{path_segment, send, HttpError};

/// `GET /api/admin/users`: every account, what each role may do, the latest role
/// changes.
pub async fn users() -> Result<AdminUserList, HttpError> {
    send(Request::get("/api/admin/users"), None::<&()>).await
}

/// The path of one account's role.
pub fn role_path(user_id: &str) -> String {
    format!("/api/admin/users/{}/role", path_segment(user_id))
}

/// `PUT /api/admin/users/{user_id}/role`: the account as it now is; 404 `not_found`,
/// 409 `last_admin` (the last admin cannot be demoted).
pub async fn set_role(user_id: &str, role: Role) -> Result<AdminUser, HttpError> {
    send(
        Request::put(&role_path(user_id)),
        Some(&RoleChange { role }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_change_names_the_account_and_the_role() {
        assert_eq!(role_path("u-1"), "/api/admin/users/u-1/role");
        assert_eq!(role_path("a/b"), "/api/admin/users/a%2Fb/role");
        assert_eq!(
            serde_json::to_value(RoleChange { role: Role::Editor }).unwrap(),
            serde_json::json!({"role": "editor"})
        );
    }
}
