//! Feature flags in the browser (`/flags`): the page, its panels, their pure state and
//! the typed calls of `/api/flags`, together.
//!
//! Layout:
//! - [`api`]: the typed calls of `/api/flags` (flags, environments, approvals, audit,
//!   preview, delivery keys).
//! - [`stream`]: the live configuration over Server-Sent Events ([`stream::FlagStream`]),
//!   compiled with the shared evaluator and kept in localStorage.
//! - [`state`]: the page's reducer (environment, selection, the admin API's answers,
//!   the preview's context) and what it derives, given the account's [`FlagAccess`].
//! - [`rules`]: the editor of one flag's environment, a reducer; [`values`]: clause
//!   values and rollouts; [`view`]: rows, texts and the preview's context.
//! - Components: [`page`] (the page, its header, the environment switch), [`list`]
//!   (rows and the kill switch), [`create`] (the form and its model), [`editor`],
//!   [`preview`] (the server's preview and the live demo), [`history`] (approvals and
//!   the audit log), [`keys`] (delivery keys); [`dom`] reads inputs and the clock.
//!
//! The live configuration comes from the stream (`/api/flags/stream`) for a signed-in
//! account with `flags:read`; managing flags needs `flags:write` (without it the page is
//! read-only and says so), and delivery keys `flags:keys`. A "live flag demo" evaluates
//! one flag for the preview's context from the stream alone, so it changes as soon as
//! someone anywhere changes or kills the flag. The page also runs the evaluator's test
//! vectors (`shared/tests/flag_vectors.json`, compiled in) in the browser's wasm and
//! shows the result.
//!
//! Test contract (`data-testid`s): `flags-page`; `stream-state` (`data-state` = `live` |
//! `connecting` | `offline`, `data-version`); `env-{name}` (the environment switcher);
//! `vector-check` (`data-passed`, `data-total`, `data-state` = `pass` | `fail`);
//! `flags-sign-in` (a guest's prompt); `flags-read-only` (`data-role`: the note an
//! account without `flags:write` sees);
//! `flag-row-{key}` (`data-killed` = `true` | `false`, `data-enabled`) holding
//! `kill-{key}` then `kill-confirm-{key}` and `kill-result-{key}`; `create-flag` (the
//! form) with `create-error`; `flag-editor` (`data-read-only`) with `editor-enabled`,
//! `serve-default` and `rollout-slider` (the default serve), `add-rule`, `rule-{i}`
//! holding `clause-{i}-{j}-attribute|operator|values`, `serve-rule-{i}` and
//! `rule-{i}-rollout-slider`, `editor-save`, `flag-error` (the server's refusal, which
//! names the rule) and `editor-status`;
//! `flag-demo` holding `flag-demo-value` (text: the variant's name) and
//! `flag-demo-select`; `preview` with `context-key`, `context-attributes`,
//! `preview-local`, `preview-server`, `preview-agree`; `approvals` with
//! `approval-error`; `audit-log` with `audit-entry` children; `keys-panel`
//! (`data-environment`) with `key-kind`, `key-create`, `new-key` holding
//! `new-key-secret`, `keys-error`, and `key-{id}` rows (`data-kind`, `data-revoked`)
//! holding `revoke-{id}`.
//!
//! Invariants: the demo and the local preview evaluate only with
//! `meridian_shared::flags` over the stream's snapshot (never a server answer); saving
//! an environment never changes its kill switch (the config sent carries the kill state
//! the page last saw); only the latest request of a panel may set what it shows; what
//! the account may not do is not offered (the server refuses it all the same).

pub mod api;
pub mod create;
pub mod dom;
pub mod editor;
pub mod history;
pub mod keys;
pub mod list;
pub mod page;
pub mod preview;
pub mod rules;
pub mod state;
pub mod stream;
pub mod values;
pub mod view;

pub use page::FlagsPage;
pub use state::FlagAccess;

/// The environment the page opens on (and the one Meridian's own features read).
pub const DEFAULT_ENVIRONMENT: &str = "production";
/// How many audit entries one page asks for.
pub const AUDIT_PAGE: u32 = 30;
/// The evaluator's test vectors, as `shared/tests/flag_vectors.rs` reads them.
pub const FLAG_VECTORS: &str = include_str!("../../../shared/tests/flag_vectors.json");

/// The permissions the flags declare (`server/src/flags/access.rs`), as `/api/auth/me`
/// names them.
pub mod permission {
    /// See flags, segments, the audit log and the stream.
    pub const READ: &str = "flags:read";
    /// Create, change, kill, delete and approve.
    pub const WRITE: &str = "flags:write";
    /// Create and revoke delivery keys.
    pub const KEYS: &str = "flags:keys";
}

/// A boolean flag on in production and off in development, for the tests of the
/// modules here.
#[cfg(test)]
pub(crate) fn boolean_flag(key: &str) -> meridian_shared::flags::Flag {
    use meridian_shared::flags::{
        Flag, FlagEnvironmentConfig, FlagKind, Serve, Variation, ENVIRONMENTS,
    };
    use serde_json::json;
    Flag {
        key: key.into(),
        name: format!("Flag {key}"),
        description: String::new(),
        kind: FlagKind::Boolean,
        variations: vec![
            Variation {
                name: "on".into(),
                value: json!(true),
                description: String::new(),
            },
            Variation {
                name: "off".into(),
                value: json!(false),
                description: String::new(),
            },
        ],
        environments: ENVIRONMENTS
            .iter()
            .map(|name| {
                (
                    (*name).to_owned(),
                    FlagEnvironmentConfig {
                        enabled: *name == "production",
                        killed: false,
                        off_variation: "off".into(),
                        default_serve: Serve::Variation("on".into()),
                        rules: Vec::new(),
                    },
                )
            })
            .collect(),
        tags: Vec::new(),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::flags::vectors::check_vectors;
    use serde_json::{json, Value};

    #[test]
    fn every_vector_matches_here_too() {
        let report = check_vectors(FLAG_VECTORS);
        assert!(report.all_pass(), "{:?}", report.failures);
        let vectors: Value = serde_json::from_str(FLAG_VECTORS).unwrap();
        let in_file: usize = ["murmur3", "buckets", "evaluations"]
            .iter()
            .map(|part| vectors[part].as_array().unwrap().len())
            .sum();
        assert_eq!(report.total, in_file, "the file's vectors, each once");
        assert!(report.total >= 300, "{} vectors", report.total);
        assert_eq!(
            report.summary(),
            format!("Evaluator check: {0}/{0} vectors match", report.total)
        );
        assert!(
            FLAG_VECTORS.len() < 100_000,
            "{} bytes are compiled into the bundle",
            FLAG_VECTORS.len()
        );
    }

    #[test]
    fn a_wrong_vector_is_reported_by_name() {
        let mut vectors: Value = serde_json::from_str(FLAG_VECTORS).unwrap();
        vectors["murmur3"][0]["hash"] = json!(1);
        vectors["evaluations"][0]["expected"]["variant"] = json!("nope");
        let report = check_vectors(&vectors.to_string());
        assert_eq!(report.passed + 2, report.total);
        assert!(!report.all_pass());
        assert!(report.failures[0].contains("murmur3"));
        let name = vectors["evaluations"][0]["name"].as_str().unwrap();
        assert!(
            report.failures[1].starts_with(name),
            "{:?}",
            report.failures
        );
        let garbage = check_vectors("{");
        assert_eq!(garbage.total, 0);
        assert!(!garbage.all_pass());
    }
}
