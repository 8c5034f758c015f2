//! The feature flags' API (`/api/flags`), typed: every call returns
//! `Result<T, HttpError>` as the helpers of [`crate::net::http`] do, with the same
//! timeout and error decoding. Every route but the stream needs a signed-in account
//! (401 `sign_in_required` otherwise); changes need `flags:write` and delivery keys
//! `flags:keys` (403 `forbidden` otherwise).

use gloo_net::http::Request;
use meridian_shared::flags::admin::{
    ApprovalList, AuditLog, ChangeOutcome, EnvironmentChange, EnvironmentList, EnvironmentSettings,
    FlagList, KeyKind, KeyList, KillOutcome, KillRequest, NewKey, NewKeyRequest, Preview,
    PreviewRequest, ScheduleList,
};
use meridian_shared::flags::Flag;

use crate::net::http::{path_segment, send, send_no_content, HttpError};

/// The body of `POST /api/flags`.
pub use meridian_shared::flags::admin::FlagDefinition as NewFlag;

/// `/api/flags/{key}` followed by `rest` (which starts with `/`, or is empty).
pub fn flag_path(key: &str, rest: &str) -> String {
    format!("/api/flags/{}{rest}", path_segment(key))
}

/// The path of a page of the audit log: every flag's, or one flag's.
pub fn flag_audit_path(key: Option<&str>, before: Option<u64>, limit: u32) -> String {
    let base = match key {
        Some(key) => flag_path(key, "/audit"),
        None => "/api/flags/audit".to_owned(),
    };
    match before {
        Some(before) => format!("{base}?limit={limit}&before={before}"),
        None => format!("{base}?limit={limit}"),
    }
}

/// The stream of one environment's configuration (Server-Sent Events).
pub fn flag_stream_path(environment: &str) -> String {
    format!(
        "/api/flags/stream?environment={}",
        path_segment(environment)
    )
}

/// `GET /api/flags`: every flag, in every environment.
pub async fn flags() -> Result<FlagList, HttpError> {
    send(Request::get("/api/flags"), None::<&()>).await
}

/// `POST /api/flags`: creates a flag (201), or 400 `invalid_flag` naming the field, or
/// 409 `flag_exists`.
pub async fn create_flag(flag: &NewFlag) -> Result<Flag, HttpError> {
    send(Request::post("/api/flags"), Some(flag)).await
}

/// `DELETE /api/flags/{key}` (204).
pub async fn delete_flag(key: &str) -> Result<(), HttpError> {
    send_no_content(Request::delete(&flag_path(key, ""))).await
}

/// `PUT /api/flags/{key}/environments/{environment}`: applied (200), or waiting for an
/// approval or for its time (202); 400 `invalid_flag` names the rule.
pub async fn change_flag_environment(
    key: &str,
    environment: &str,
    change: &EnvironmentChange,
) -> Result<ChangeOutcome, HttpError> {
    let path = flag_path(key, &format!("/environments/{}", path_segment(environment)));
    send(Request::put(&path), Some(change)).await
}

/// `POST /api/flags/{key}/kill`: the kill switch (or, with `killed: false`, lifting it),
/// answered with how far the change reached the stream's subscribers.
pub async fn kill_flag(key: &str, request: &KillRequest) -> Result<KillOutcome, HttpError> {
    send(Request::post(&flag_path(key, "/kill")), Some(request)).await
}

/// `POST /api/flags/{key}/preview`: the server's evaluation of a context.
pub async fn preview_flag(key: &str, request: &PreviewRequest) -> Result<Preview, HttpError> {
    send(Request::post(&flag_path(key, "/preview")), Some(request)).await
}

/// `GET /api/flags/audit` or `GET /api/flags/{key}/audit`: newest first.
pub async fn flag_audit(
    key: Option<&str>,
    before: Option<u64>,
    limit: u32,
) -> Result<AuditLog, HttpError> {
    send(
        Request::get(&flag_audit_path(key, before, limit)),
        None::<&()>,
    )
    .await
}

/// `GET /api/flags/approvals?status=pending`.
pub async fn pending_approvals() -> Result<ApprovalList, HttpError> {
    send(
        Request::get("/api/flags/approvals?status=pending"),
        None::<&()>,
    )
    .await
}

/// `POST /api/flags/approvals/{id}/approve` or `.../reject`; 403 `self_approval` for the
/// change's own author.
pub async fn decide_approval(id: &str, approve: bool) -> Result<ChangeOutcome, HttpError> {
    let verb = if approve { "approve" } else { "reject" };
    let path = format!("/api/flags/approvals/{}/{verb}", path_segment(id));
    send(Request::post(&path), None::<&()>).await
}

/// `GET /api/flags/schedules`: scheduled changes, latest first.
pub async fn flag_schedules() -> Result<ScheduleList, HttpError> {
    send(Request::get("/api/flags/schedules"), None::<&()>).await
}

/// `GET /api/flags/environments`.
pub async fn flag_environments() -> Result<EnvironmentList, HttpError> {
    send(Request::get("/api/flags/environments"), None::<&()>).await
}

/// `PUT /api/flags/environments/{name}`: whether its changes need a second user.
pub async fn set_flag_environment(
    name: &str,
    require_approval: bool,
) -> Result<EnvironmentSettings, HttpError> {
    let path = format!("/api/flags/environments/{}", path_segment(name));
    let body = serde_json::json!({ "require_approval": require_approval });
    send(Request::put(&path), Some(&body)).await
}

/// `/api/flags/environments/{name}/keys` followed by `rest`.
pub fn keys_path(environment: &str, rest: &str) -> String {
    format!(
        "/api/flags/environments/{}/keys{rest}",
        path_segment(environment)
    )
}

/// `GET /api/flags/environments/{name}/keys`: the environment's delivery keys, revoked
/// ones included (never their secrets).
pub async fn environment_keys(environment: &str) -> Result<KeyList, HttpError> {
    send(Request::get(&keys_path(environment, "")), None::<&()>).await
}

/// `POST /api/flags/environments/{name}/keys` (201): a new key, whose secret is in this
/// answer only.
pub async fn create_key(environment: &str, kind: KeyKind) -> Result<NewKey, HttpError> {
    send(
        Request::post(&keys_path(environment, "")),
        Some(&NewKeyRequest { kind }),
    )
    .await
}

/// `DELETE /api/flags/environments/{name}/keys/{id}` (204): revoked at once.
pub async fn revoke_key(environment: &str, id: &str) -> Result<(), HttpError> {
    let path = keys_path(environment, &format!("/{}", path_segment(id)));
    send_no_content(Request::delete(&path)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_paths_escape_what_is_not_a_key() {
        assert_eq!(
            flag_path("new-checkout", "/kill"),
            "/api/flags/new-checkout/kill"
        );
        assert_eq!(flag_path("a/b c", ""), "/api/flags/a%2Fb%20c");
        assert_eq!(path_segment("ü"), "%C3%BC");
        assert_eq!(flag_audit_path(None, None, 50), "/api/flags/audit?limit=50");
        assert_eq!(
            flag_audit_path(Some("beta"), Some(7), 20),
            "/api/flags/beta/audit?limit=20&before=7"
        );
        assert_eq!(
            flag_stream_path("production"),
            "/api/flags/stream?environment=production"
        );
    }

    #[test]
    fn key_paths_name_the_environment_and_the_key() {
        assert_eq!(
            keys_path("production", ""),
            "/api/flags/environments/production/keys"
        );
        assert_eq!(
            keys_path("dev env", "/k1"),
            "/api/flags/environments/dev%20env/keys/k1"
        );
        assert_eq!(
            serde_json::to_value(NewKeyRequest {
                kind: KeyKind::Client
            })
            .unwrap(),
            serde_json::json!({"kind": "client"})
        );
    }

    #[test]
    fn a_new_flag_serialises_as_the_server_reads_it() {
        use meridian_shared::flags::{FlagKind, Variation};
        use std::collections::BTreeMap;
        let flag = NewFlag {
            key: "beta".into(),
            name: "Beta".into(),
            description: String::new(),
            kind: FlagKind::Boolean,
            variations: vec![Variation {
                name: "on".into(),
                value: serde_json::json!(true),
                description: String::new(),
            }],
            environments: BTreeMap::new(),
            tags: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&flag).unwrap(),
            serde_json::json!({
                "key": "beta",
                "name": "Beta",
                "kind": "boolean",
                "variations": [{"name": "on", "value": true}],
            })
        );
    }
}
