//! Roles in a real browser: headless Chromium against the server (in-process on
//! 127.0.0.1:0, SQLite) serving the built web UI.
//!
//! - On a fresh installation the first account is the admin: the header says so and
//!   links to `/admin`; it creates a flag from the flags page, and a delivery key (its
//!   secret shown once) which it then revokes.
//! - A second account (a viewer, in a second browser) is refused the admin page and sees
//!   the flags page read-only: no kill switch, no create form, the editor disabled.
//! - The admin grants it `editor` on `/admin`; the viewer's page shows the controls
//!   without a reload or a sign-out (the server closes its realtime socket with 4003, the
//!   page asks `/api/auth/me` again), and the admin page lists both accounts with the
//!   change in its log.
//!
//! The selectors are the test contracts of `frontend/src/admin/mod.rs` and
//! `frontend/src/flags/mod.rs`. Every wait polls the page with a bound; nothing sleeps.

use meridian_shared::api::{AdminUserList, Role};
use meridian_tests::browser::{start_web_server, testid, Browser};
use meridian_tests::db::{Backend, TestDatabase};

const PASSWORD: &str = "green-lantern-2024";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_role_shows_its_controls_without_a_reload() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let key = "checkout-v2";

    // The first account of a fresh installation is its admin.
    let admin = Browser::start().await;
    admin.sign_up(&server, "ada", PASSWORD).await;
    admin
        .wait_for_attr("[data-testid=role]", "data-role", "admin")
        .await;
    admin.wait_for("[data-testid=nav-admin] a").await;

    // It creates a flag from the flags page.
    admin.goto(&server.url("/flags")).await;
    admin.wait_for("[data-testid=create-flag]").await;
    admin
        .fill("[data-testid=create-flag] input[name=key]", key)
        .await;
    admin
        .click("[data-testid=create-flag] button[type=submit]")
        .await;
    admin.wait_for(&testid(&format!("flag-row-{key}"))).await;
    admin.wait_for(&testid(&format!("kill-{key}"))).await;
    admin
        .wait_for_absence("[data-testid=flags-read-only]")
        .await;

    // An admin manages the environment's delivery keys: a new key's secret is shown
    // once, and a revoked key is listed as such.
    admin
        .wait_for_attr("[data-testid=keys-panel]", "data-environment", "production")
        .await;
    admin
        .wait_for("[data-testid=key-kind]")
        .await
        .select_by_value("client")
        .await
        .expect("choose a client key");
    admin.click("[data-testid=key-create]").await;
    admin.wait_for("[data-testid=new-key-secret]").await;
    let secret = admin
        .client
        .execute(
            "return document.querySelector('[data-testid=new-key-secret]').value;",
            vec![],
        )
        .await
        .expect("read the new key");
    assert!(
        secret.as_str().is_some_and(|key| key.len() >= 16),
        "a secret is shown: {secret}"
    );
    admin
        .wait_for_attr("[data-testid=keys-panel] li", "data-kind", "client")
        .await;
    admin.click("[data-testid^=revoke-]").await;
    admin.click("[data-testid^=revoke-]").await;
    admin
        .wait_for_attr("[data-testid=keys-panel] li", "data-revoked", "true")
        .await;
    admin.wait_for_absence("[data-testid=new-key]").await;

    // A second account is a viewer: the admin page refuses it, the flags page is
    // read-only.
    let viewer = Browser::start().await;
    viewer.sign_up(&server, "vic", PASSWORD).await;
    viewer
        .wait_for_attr("[data-testid=role]", "data-role", "viewer")
        .await;
    viewer.wait_for_absence("[data-testid=nav-admin]").await;
    viewer.goto(&server.url("/admin")).await;
    viewer
        .wait_for_text_containing("[data-testid=admin-forbidden]", "needs the admin role")
        .await;
    viewer.wait_for_absence("[data-testid=admin-users]").await;
    viewer.goto(&server.url("/flags")).await;
    viewer
        .wait_for_attr("[data-testid=flags-read-only]", "data-role", "viewer")
        .await;
    viewer
        .wait_for_text_containing(
            "[data-testid=flags-read-only]",
            "Read-only: your role is viewer",
        )
        .await;
    viewer
        .wait_for_attr(&testid(&format!("flag-row-{key}")), "data-killed", "false")
        .await;
    viewer
        .wait_for_attr("[data-testid=flag-editor]", "data-read-only", "true")
        .await;
    viewer
        .wait_for_absence(&testid(&format!("kill-{key}")))
        .await;
    viewer.wait_for_absence("[data-testid=create-flag]").await;
    viewer.wait_for_absence("[data-testid=editor-save]").await;
    viewer.wait_for_absence("[data-testid=keys-panel]").await;
    viewer.mark_page("viewer-flags").await;

    // The admin grants it editor on /admin.
    admin.goto(&server.url("/admin")).await;
    admin
        .wait_for_attr("[data-testid=admin-user-vic]", "data-role", "viewer")
        .await;
    admin
        .wait_for_attr("[data-testid=admin-user-ada]", "data-role", "admin")
        .await;
    admin
        .wait_for("[data-testid=role-vic]")
        .await
        .select_by_value("editor")
        .await
        .expect("choose the editor role");
    admin
        .wait_for_attr("[data-testid=admin-user-vic]", "data-role", "editor")
        .await;
    admin
        .wait_until(
            "the role change in the log",
            "return Array.from(document.querySelectorAll('[data-testid=role-audit-entry]'))
                .some(e => e.dataset.username === 'vic'
                    && e.dataset.before === 'viewer' && e.dataset.after === 'editor');",
            vec![],
            "[data-testid=admin-audit]",
        )
        .await;
    admin.wait_for("[data-testid=admin-permissions]").await;

    // The viewer's page follows without a reload or a sign-out.
    viewer
        .wait_for_attr("[data-testid=role]", "data-role", "editor")
        .await;
    viewer.wait_for(&testid(&format!("kill-{key}"))).await;
    viewer.wait_for("[data-testid=create-flag]").await;
    viewer
        .wait_for_attr("[data-testid=flag-editor]", "data-read-only", "false")
        .await;
    viewer.wait_for("[data-testid=editor-save]").await;
    viewer
        .wait_for_absence("[data-testid=flags-read-only]")
        .await;
    viewer.wait_for_text("[data-testid=whoami]", "vic").await;
    assert_eq!(
        viewer.page_mark().await.as_deref(),
        Some("viewer-flags"),
        "the viewer's page was reloaded"
    );

    // The admin API agrees with the page: both accounts, vic an editor.
    let api = admin.session_client(&server).await;
    let list: AdminUserList = api.get("/api/admin/users").await.expect(200);
    let roles: Vec<(&str, Role)> = list
        .users
        .iter()
        .map(|user| (user.username.as_str(), user.role))
        .collect();
    assert!(roles.contains(&("ada", Role::Admin)), "{roles:?}");
    assert!(roles.contains(&("vic", Role::Editor)), "{roles:?}");
    assert_eq!(roles.len(), 2, "{roles:?}");

    viewer.close().await;
    admin.close().await;
}
