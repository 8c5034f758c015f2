//! Roles on accounts (issue "roles and keys"), on both backends: the first account of a
//! fresh installation is the admin and every later one a viewer; only an admin sees
//! accounts and changes roles; every change is logged; the last admin cannot be
//! demoted; a change takes effect on the account's next request and closes its realtime
//! connections with 4003 so that they reconnect with what the new role allows; and
//! `meridian admin grant` works while no server runs.

use meridian_shared::api::{AdminUser, AdminUserList, Me, Role};
use meridian_shared::realtime::close_code;
use meridian_tests::both_backends;
use meridian_tests::client::{Client, Realtime};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use meridian_tests::server::TestServer;
use serde_json::json;

const PASSWORD: &str = "roles-and-keys-42";
const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");

async fn signed_up(server: &TestServer, username: &str) -> Client {
    let client = Client::new(server);
    client.signup(username, PASSWORD).await.expect::<Me>(201);
    client
}

fn role_of(me: &Me) -> Role {
    me.access
        .as_ref()
        .expect("a signed-in session has access")
        .role
}

async fn set_role(admin: &Client, user_id: &str, role: &str) -> meridian_tests::client::Reply {
    admin
        .send(
            admin
                .http()
                .put(admin.url(&format!("/api/admin/users/{user_id}/role")))
                .json(&json!({ "role": role })),
        )
        .await
}

both_backends!(
    first_account_is_admin_and_later_ones_viewers,
    |db| async move {
        let server = TestServer::start(&db).await;
        let alice = signed_up(&server, "alice").await;
        let bob = signed_up(&server, "bob").await;
        let me = alice.me().await;
        assert_eq!(role_of(&me), Role::Admin);
        let access = me.access.unwrap();
        for permission in ["admin:roles", "flags:read", "flags:write", "flags:keys"] {
            assert!(access.allows(permission), "admin lacks {permission}");
        }
        let me = bob.me().await;
        assert_eq!(role_of(&me), Role::Viewer);
        // A viewer reads (each system declares what a viewer may) and changes nothing.
        let viewer = me.access.unwrap();
        assert!(viewer.allows("flags:read"), "{:?}", viewer.permissions);
        for permission in ["admin:roles", "flags:write", "flags:keys", "sales:admin"] {
            assert!(!viewer.allows(permission), "a viewer has {permission}");
        }
        // A guest has no access at all.
        let guest = Client::new(&server);
        assert!(guest.me().await.access.is_none());
        server.shutdown().await;
    }
);

both_backends!(only_admins_see_and_change_roles, |db| async move {
    let server = TestServer::start(&db).await;
    let alice = signed_up(&server, "alice").await;
    let bob = signed_up(&server, "bob").await;
    let bob_id = bob.me().await.user.unwrap().id;
    let alice_id = alice.me().await.user.unwrap().id;

    Client::new(&server)
        .get("/api/admin/users")
        .await
        .assert_error(401, "sign_in_required");
    let refused = bob.get("/api/admin/users").await;
    refused.assert_error(403, "forbidden");
    let message = refused.json["message"].as_str().unwrap();
    assert!(message.contains("admin:roles"), "{message}");
    set_role(&bob, &alice_id, "viewer")
        .await
        .assert_error(403, "forbidden");

    let list: AdminUserList = alice.get("/api/admin/users").await.expect(200);
    let names: Vec<_> = list
        .users
        .iter()
        .map(|u| (u.username.as_str(), u.role))
        .collect();
    assert_eq!(names, [("alice", Role::Admin), ("bob", Role::Viewer)]);
    assert!(list.users.iter().all(|u| u.sessions == 1));
    assert!(list
        .permissions
        .iter()
        .any(|p| p.name == "flags:write" && p.role == Role::Editor));

    let granted: AdminUser = set_role(&alice, &bob_id, "editor").await.expect(200);
    assert_eq!(granted.role, Role::Editor);
    // The next request of bob's session already has the new role.
    let me = bob.me().await;
    assert_eq!(role_of(&me), Role::Editor);
    assert!(me.access.unwrap().allows("flags:write"));

    let list: AdminUserList = alice.get("/api/admin/users").await.expect(200);
    let latest = &list.audit[0];
    assert_eq!(
        (
            latest.username.as_str(),
            latest.actor_name.as_str(),
            latest.before,
            latest.after
        ),
        ("bob", "alice", Some(Role::Viewer), Role::Editor)
    );
    assert_eq!(latest.actor_id.as_deref(), Some(alice_id.as_str()));
    // The first account's promotion is logged too.
    assert!(list
        .audit
        .iter()
        .any(|a| a.username == "alice" && a.after == Role::Admin && a.actor_id.is_none()));

    // Bad input: an unknown role, an unknown account.
    set_role(&alice, &bob_id, "owner")
        .await
        .assert_error(422, "invalid_body");
    set_role(&alice, "no-such-account", "editor")
        .await
        .assert_error(404, "not_found");
    server.shutdown().await;
});

both_backends!(the_last_admin_cannot_be_demoted, |db| async move {
    let server = TestServer::start(&db).await;
    let alice = signed_up(&server, "alice").await;
    let bob = signed_up(&server, "bob").await;
    let alice_id = alice.me().await.user.unwrap().id;
    let bob_id = bob.me().await.user.unwrap().id;

    set_role(&alice, &alice_id, "editor")
        .await
        .assert_error(409, "last_admin");
    assert_eq!(role_of(&alice.me().await), Role::Admin);

    // With a second admin, the first may step down; then the second is the last.
    set_role(&alice, &bob_id, "admin")
        .await
        .expect::<AdminUser>(200);
    set_role(&alice, &alice_id, "viewer")
        .await
        .expect::<AdminUser>(200);
    assert_eq!(role_of(&alice.me().await), Role::Viewer);
    set_role(&bob, &bob_id, "viewer")
        .await
        .assert_error(409, "last_admin");
    // Setting the role an account already has changes nothing and logs nothing.
    let before: AdminUserList = bob.get("/api/admin/users").await.expect(200);
    set_role(&bob, &bob_id, "admin")
        .await
        .expect::<AdminUser>(200);
    let after: AdminUserList = bob.get("/api/admin/users").await.expect(200);
    assert_eq!(before.audit.len(), after.audit.len());
    server.shutdown().await;
});

both_backends!(a_role_change_closes_the_accounts_sockets, |db| async move {
    let server = TestServer::start(&db).await;
    let alice = signed_up(&server, "alice").await;
    let bob = signed_up(&server, "bob").await;
    let bob_id = bob.me().await.user.unwrap().id;
    let (mut alice_socket, _) = Realtime::connect(&alice).await;
    let (mut bob_socket, _) = Realtime::connect(&bob).await;
    server.wait_for_connections(2).await;

    set_role(&alice, &bob_id, "editor")
        .await
        .expect::<AdminUser>(200);
    let (code, reason) = bob_socket.recv_close().await;
    assert_eq!(code, close_code::ACCESS_CHANGED, "{reason}");
    server.wait_for_connections(1).await;
    // The reconnected socket works, and the admin's own socket was left alone.
    let (_again, _) = Realtime::connect(&bob).await;
    server.wait_for_connections(2).await;
    alice_socket.subscribe("public:lobby", None).await;
    server.shutdown().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_reaches_every_instance() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let a = ServerProcess::start(BIN, &db).await;
    let b = ServerProcess::start(BIN, &db).await;
    let alice = Client::at(&a.base_url());
    alice.signup("alice", PASSWORD).await.expect::<Me>(201);
    let bob = Client::at(&b.base_url());
    bob.signup("bob", PASSWORD).await.expect::<Me>(201);
    let bob_id = bob.me().await.user.unwrap().id;
    let (mut bob_socket, _) = Realtime::connect(&bob).await;

    set_role(&alice, &bob_id, "editor")
        .await
        .expect::<AdminUser>(200);
    // Bob's next request on the other instance has the new role, and his socket there
    // was closed.
    assert_eq!(role_of(&bob.me().await), Role::Editor);
    let (code, _) = bob_socket.recv_close().await;
    assert_eq!(code, close_code::ACCESS_CHANGED);
}

/// `meridian admin grant` against the database of a stopped server.
async fn grant_while_stopped(db: TestDatabase) {
    let mut server = ServerProcess::start(BIN, &db).await;
    let alice = Client::at(&server.base_url());
    alice.signup("alice", PASSWORD).await.expect::<Me>(201);
    let bob = Client::at(&server.base_url());
    bob.signup("bob", PASSWORD).await.expect::<Me>(201);
    server.kill_9().await;

    let grant = |username: &str, role: &str| {
        std::process::Command::new(BIN)
            .args([
                "admin",
                "grant",
                "--username",
                username,
                "--role",
                role,
                "--data-dir",
            ])
            .arg(db.data_dir())
            .env("DATABASE_URL", &db.url)
            .env_remove("MERIDIAN_DATA_DIR")
            .output()
            .expect("run meridian admin grant")
    };
    let out = grant("BOB", "admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("now admin (was viewer)"));
    let out = grant("nobody", "admin");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account named"));
    let out = grant("bob", "superuser");
    assert!(!out.status.success());

    let server = ServerProcess::start(BIN, &db).await;
    let bob = Client::at(&server.base_url());
    bob.signin("bob", PASSWORD).await.expect::<Me>(200);
    assert_eq!(role_of(&bob.me().await), Role::Admin);
    let list: AdminUserList = bob.get("/api/admin/users").await.expect(200);
    assert!(list
        .audit
        .iter()
        .any(|a| a.username == "bob" && a.actor_name == "command line"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_grant_works_while_the_server_is_stopped_sqlite() {
    grant_while_stopped(TestDatabase::create(Backend::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_grant_works_while_the_server_is_stopped_postgres() {
    grant_while_stopped(TestDatabase::create(Backend::Postgres).await).await;
}
