//! Accounts and sessions against a real server on both backends: the guest session of a
//! first visit, sign-up, sign-in, sign-out, the sign-in limits (moved through their
//! window with the server's manual clock), the list of one's sessions and revoking one
//! (which also closes its WebSockets), and the cleanup of idle guest sessions.

use std::time::Duration;

use meridian_server::run_maintenance;
use meridian_shared::api::{Me, SessionKind, SessionList};
use meridian_shared::realtime::close_code;
use meridian_tests::both_backends;
use meridian_tests::client::{Client, Realtime, SESSION_COOKIE};
use meridian_tests::db::TestDatabase;
use meridian_tests::server::TestServer;
use reqwest::header::{RETRY_AFTER, SET_COOKIE};

const PASSWORD: &str = "correct-horse-battery";
const WINDOW: Duration = Duration::from_secs(15 * 60);

fn window_ms() -> i64 {
    WINDOW.as_millis() as i64
}

fn retry_after(reply: &meridian_tests::client::Reply) -> u64 {
    reply
        .header(RETRY_AFTER.as_str())
        .expect("a 429 says when to retry")
        .parse()
        .expect("Retry-After in seconds")
}

/// Whether a session row still exists (deleted, not just revoked).
async fn session_exists(server: &TestServer, id: &str) -> bool {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_one(&server.state.db.pool)
        .await
        .expect("count sessions");
    count == 1
}

both_backends!(
    a_first_request_gets_a_guest_session_cookie,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);

        let first = client.get("/api/auth/me").await;
        let me: Me = first.expect(200);
        assert_eq!(me.kind, SessionKind::Guest);
        assert_eq!(me.user, None);
        assert_eq!(me.guest_session_id, None);
        let cookie = first
            .header(SET_COOKIE.as_str())
            .expect("the first answer sets the session cookie");
        let token = cookie
            .strip_prefix(&format!("{SESSION_COOKIE}="))
            .and_then(|rest| rest.split(';').next())
            .expect("the session cookie");
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(attributes.contains(&attribute), "{attribute} in {cookie}");
        }
        assert!(!attributes.contains(&"Secure"), "plain HTTP: {cookie}");

        // The cookie is kept: the same session, and no new cookie.
        let again = client.get("/api/auth/me").await;
        assert_eq!(again.expect::<Me>(200).session_id, me.session_id);
        assert_eq!(again.header(SET_COOKIE.as_str()), None);
        assert_ne!(
            me.session_id, token,
            "the public id is not the secret token"
        );
    }
);

both_backends!(
    signing_up_signs_in_and_remembers_the_guest_session,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        let guest = client.me().await;
        let guest_token = client.session_token().expect("a guest cookie");

        let signed_up: Me = client.signup("Alice", PASSWORD).await.expect(201);
        assert_eq!(signed_up.kind, SessionKind::User);
        let user = signed_up.user.clone().expect("the account");
        assert_eq!(user.username, "Alice");
        assert_eq!(
            signed_up.guest_session_id.as_deref(),
            Some(&*guest.session_id)
        );
        assert_ne!(signed_up.session_id, guest.session_id, "a new session");
        assert_ne!(client.session_token().unwrap(), guest_token, "a new token");

        // A request sent with the guest cookie while the sign-up was on its way is
        // refused without a cookie: a fresh guest cookie would sign the browser out.
        let in_flight = Client::with_session_token(&server, &guest_token);
        let late = in_flight
            .post_json("/api/cart/ops", &serde_json::json!({"ops": []}))
            .await;
        late.assert_error(401, "session_replaced");
        assert_eq!(late.header(SET_COOKIE.as_str()), None);

        assert_eq!(client.me().await, signed_up);
    }
);

both_backends!(
    sign_up_refuses_taken_names_weak_passwords_and_bad_usernames,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let alice = Client::new(&server);
        alice.signup("Alice", PASSWORD).await.expect::<Me>(201);

        let other = Client::new(&server);
        for taken in ["Alice", "alice", "ALICE"] {
            other
                .signup(taken, "another-good-password")
                .await
                .assert_error(409, "username_taken");
        }
        for weak in [
            "short",
            "aaaaaaaaaaaaaa",
            "bob-secret-bob",
            "ababababababab",
        ] {
            other
                .signup("bob", weak)
                .await
                .assert_error(422, "weak_password");
        }
        for bad in ["al", "a b c", "bob!", "ünïcode", &"x".repeat(33)] {
            other
                .signup(bad, PASSWORD)
                .await
                .assert_error(422, "invalid_username");
        }
        assert_eq!(
            other.me().await.kind,
            SessionKind::Guest,
            "nothing signed in"
        );
    }
);

both_backends!(
    signing_out_gives_a_new_guest_and_the_old_cookie_stops_working,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        let signed_up: Me = client.signup("alice", PASSWORD).await.expect(201);
        let user_token = client.session_token().unwrap();

        let signed_out: Me = client.signout().await.expect(200);
        assert_eq!(signed_out.kind, SessionKind::Guest);
        assert_eq!(signed_out.user, None);
        assert_eq!(signed_out.guest_session_id, None);
        assert_ne!(signed_out.session_id, signed_up.session_id);
        assert_ne!(client.session_token().unwrap(), user_token);
        assert_eq!(client.me().await, signed_out);

        // A request that left before the sign-out's answer arrived gets no new cookie,
        // which would overwrite the one the browser just got.
        let replay = Client::with_session_token(&server, &user_token);
        let late = replay.get("/api/auth/me").await;
        late.assert_error(401, "session_replaced");
        assert_eq!(late.header(SET_COOKIE.as_str()), None);
        assert_eq!(replay.session_token().unwrap(), user_token);

        // A minute on, someone replaying the signed-out cookie is a stranger: a new guest.
        server.clock.advance(60_000);
        let reply = replay.get("/api/auth/me").await;
        let stranger: Me = reply.expect(200);
        assert_eq!(stranger.kind, SessionKind::Guest);
        assert_ne!(stranger.session_id, signed_up.session_id);
        assert_ne!(stranger.session_id, signed_out.session_id);
        assert!(
            reply.header(SET_COOKIE.as_str()).is_some(),
            "the replayed cookie is replaced"
        );
        assert_ne!(replay.session_token().unwrap(), user_token);
    }
);

both_backends!(
    sign_in_refuses_wrong_passwords_and_unknown_users_alike,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        Client::new(&server)
            .signup("alice", PASSWORD)
            .await
            .expect::<Me>(201);

        let client = Client::new(&server);
        let guest = client.me().await;
        let wrong = client.signin("alice", "not-the-password").await;
        wrong.assert_error(401, "invalid_credentials");
        let unknown = client.signin("nobody", PASSWORD).await;
        unknown.assert_error(401, "invalid_credentials");
        assert_eq!(wrong.json["message"], unknown.json["message"]);
        assert_eq!(client.me().await, guest, "still the same guest");

        // Usernames are case-insensitive at sign-in too.
        let signed_in: Me = client.signin("ALICE", PASSWORD).await.expect(200);
        assert_eq!(signed_in.kind, SessionKind::User);
        assert_eq!(signed_in.user.unwrap().username, "alice");
        assert_eq!(signed_in.guest_session_id, Some(guest.session_id));
    }
);

both_backends!(
    failed_sign_ins_lock_the_account_until_the_window_passes,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |config| {
            config.signin_failures_per_account = 3;
            config.signin_window = WINDOW;
        })
        .await;
        Client::new(&server)
            .signup("alice", PASSWORD)
            .await
            .expect::<Me>(201);
        Client::new(&server)
            .signup("bob", PASSWORD)
            .await
            .expect::<Me>(201);

        let attacker = Client::new(&server);
        for _ in 0..3 {
            attacker
                .signin("alice", "wrong-password")
                .await
                .assert_error(401, "invalid_credentials");
        }
        let locked = attacker.signin("alice", "wrong-password").await;
        locked.assert_error(429, "too_many_attempts");
        assert_eq!(retry_after(&locked), WINDOW.as_secs());

        // The right password does not get through either, from any browser.
        let owner = Client::new(&server);
        let refused = owner.signin("Alice", PASSWORD).await;
        refused.assert_error(429, "too_many_attempts");
        assert_eq!(retry_after(&refused), WINDOW.as_secs());
        assert_eq!(owner.me().await.kind, SessionKind::Guest);

        // Other accounts are not affected, and a success forgets the failures: bob may
        // fail twice, sign in, and fail twice more without being locked.
        let bob = Client::new(&server);
        for _ in 0..2 {
            bob.signin("bob", "wrong-password")
                .await
                .assert_error(401, "invalid_credentials");
        }
        bob.signin("bob", PASSWORD).await.expect::<Me>(200);
        for _ in 0..2 {
            bob.signin("bob", "wrong-password")
                .await
                .assert_error(401, "invalid_credentials");
        }

        // One millisecond before the window ends: still locked, retry in a second.
        server.clock.advance(window_ms() - 1);
        let almost = owner.signin("alice", PASSWORD).await;
        almost.assert_error(429, "too_many_attempts");
        assert_eq!(retry_after(&almost), 1);

        server.clock.advance(1);
        let me: Me = owner.signin("alice", PASSWORD).await.expect(200);
        assert_eq!(me.user.unwrap().username, "alice");
    }
);

both_backends!(
    too_many_attempts_from_one_address_are_refused_until_the_window_passes,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |config| {
            config.signin_attempts_per_address = 3;
            config.signin_window = WINDOW;
        })
        .await;
        let client = Client::new(&server);
        client.signup("alice", PASSWORD).await.expect::<Me>(201);
        client.signout().await.expect::<Me>(200);
        client
            .signin("alice", "wrong-password")
            .await
            .assert_error(401, "invalid_credentials");
        client
            .signin("nobody", PASSWORD)
            .await
            .assert_error(401, "invalid_credentials");

        // Three attempts (sign-up counts) from 127.0.0.1: the fourth is refused, even
        // with the right password, even from another browser, even to sign up.
        let refused = client.signin("alice", PASSWORD).await;
        refused.assert_error(429, "too_many_attempts");
        assert_eq!(retry_after(&refused), WINDOW.as_secs());
        let other = Client::new(&server);
        other
            .signin("alice", PASSWORD)
            .await
            .assert_error(429, "too_many_attempts");
        other
            .signup("carol", PASSWORD)
            .await
            .assert_error(429, "too_many_attempts");

        server.clock.advance(window_ms() - 1);
        let almost = other.signin("alice", PASSWORD).await;
        almost.assert_error(429, "too_many_attempts");
        assert_eq!(retry_after(&almost), 1);

        server.clock.advance(1);
        other.signin("alice", PASSWORD).await.expect::<Me>(200);
    }
);

both_backends!(
    a_second_browser_signs_in_to_the_same_account,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let laptop = Client::new(&server);
        let on_laptop: Me = laptop.signup("alice", PASSWORD).await.expect(201);

        let phone = Client::new(&server);
        let phone_guest = phone.me().await;
        let on_phone: Me = phone.signin("alice", PASSWORD).await.expect(200);
        assert_eq!(on_phone.user, on_laptop.user, "the account follows");
        assert_ne!(on_phone.session_id, on_laptop.session_id, "its own session");
        assert_eq!(on_phone.guest_session_id, Some(phone_guest.session_id));
        assert_eq!(laptop.me().await, on_laptop, "the laptop stays signed in");

        // Both sessions may watch the account's topic, and both get what the server
        // publishes to it.
        let topic = format!("user:{}", on_laptop.user.unwrap().id);
        let (mut laptop_socket, _) = Realtime::connect(&laptop).await;
        let (mut phone_socket, _) = Realtime::connect(&phone).await;
        assert_eq!(laptop_socket.subscribe(&topic, None).await, (0, false));
        assert_eq!(phone_socket.subscribe(&topic, None).await, (0, false));
        let published = meridian_server::realtime::Events::publish(
            &server.state.db,
            &server.state.hub,
            &topic,
            "server-op-1",
            serde_json::json!({"kind": "profile_changed"}),
            None,
        )
        .await
        .unwrap();
        assert_eq!(published.seq, 1);
        for socket in [&mut laptop_socket, &mut phone_socket] {
            match socket.recv().await {
                meridian_shared::realtime::ServerMessage::Event(event) => {
                    assert_eq!(event.topic, topic);
                    assert_eq!(event.seq, 1);
                    assert_eq!(event.payload["kind"], "profile_changed");
                }
                other => panic!("expected the event, got {other:?}"),
            }
        }
    }
);

both_backends!(
    sessions_are_listed_and_another_device_can_be_revoked,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let laptop = Client::with_user_agent(&server, "laptop-browser");
        let on_laptop: Me = laptop.signup("alice", PASSWORD).await.expect(201);
        let phone = Client::with_user_agent(&server, "phone-browser");
        let on_phone: Me = phone.signin("alice", PASSWORD).await.expect(200);

        let list: SessionList = laptop.get("/api/auth/sessions").await.expect(200);
        assert_eq!(list.sessions.len(), 2, "{list:?}");
        let current: Vec<_> = list.sessions.iter().filter(|s| s.current).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].id, on_laptop.session_id);
        assert_eq!(current[0].user_agent.as_deref(), Some("laptop-browser"));
        let other = list
            .sessions
            .iter()
            .find(|s| s.id == on_phone.session_id)
            .expect("the phone's session is listed");
        assert!(!other.current);
        assert_eq!(other.kind, SessionKind::User);
        assert_eq!(other.user_agent.as_deref(), Some("phone-browser"));

        // The phone's open WebSocket is closed when its session is revoked.
        let (mut phone_socket, welcome) = Realtime::connect(&phone).await;
        assert_eq!(welcome.session_id, on_phone.session_id);

        let revoked = laptop
            .delete(&format!("/api/auth/sessions/{}", on_phone.session_id))
            .await;
        assert_eq!(revoked.status, 204, "{}", revoked.json);
        assert_eq!(
            phone_socket.recv_close().await,
            (close_code::SESSION_REVOKED, "session revoked".to_owned())
        );
        server.wait_for_connections(0).await;

        let phone_now = phone.me().await;
        assert_eq!(
            phone_now.kind,
            SessionKind::Guest,
            "the phone is signed out"
        );
        assert_ne!(phone_now.session_id, on_phone.session_id);
        let list: SessionList = laptop.get("/api/auth/sessions").await.expect(200);
        let ids: Vec<&str> = list.sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, [on_laptop.session_id.as_str()]);

        // Revoking again, or a session that is not one's own, is not found.
        laptop
            .delete(&format!("/api/auth/sessions/{}", on_phone.session_id))
            .await
            .assert_error(404, "not_found");
        let stranger = Client::new(&server);
        let stranger_me: Me = stranger.signup("mallory", PASSWORD).await.expect(201);
        stranger
            .delete(&format!("/api/auth/sessions/{}", on_laptop.session_id))
            .await
            .assert_error(404, "not_found");
        laptop
            .delete(&format!("/api/auth/sessions/{}", stranger_me.session_id))
            .await
            .assert_error(404, "not_found");
        assert_eq!(laptop.me().await, on_laptop);

        // Guests have no session list.
        let guest = Client::new(&server);
        guest
            .get("/api/auth/sessions")
            .await
            .assert_error(401, "sign_in_required");
        guest
            .delete(&format!("/api/auth/sessions/{}", on_laptop.session_id))
            .await
            .assert_error(401, "sign_in_required");
    }
);

both_backends!(
    signing_out_closes_the_sessions_websockets,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        client.signup("alice", PASSWORD).await.expect::<Me>(201);
        let (mut socket, _) = Realtime::connect(&client).await;

        client.signout().await.expect::<Me>(200);
        assert_eq!(
            socket.recv_close().await,
            (close_code::SESSION_REVOKED, "session replaced".to_owned())
        );
    }
);

both_backends!(
    idle_guest_sessions_are_deleted_unless_an_account_links_them,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let ttl = server.state.config.guest_session_ttl.as_millis() as i64;

        let idle = Client::new(&server);
        let idle_guest = idle.me().await;
        let active = Client::new(&server);
        let active_guest = active.me().await;
        let member = Client::new(&server);
        let member_guest = member.me().await;
        let account: Me = member.signup("alice", PASSWORD).await.expect(201);
        assert_eq!(
            account.guest_session_id.as_deref(),
            Some(&*member_guest.session_id)
        );

        server.clock.advance(ttl + 1);
        // Seen again after the TTL: not idle any more.
        assert_eq!(active.me().await, active_guest);
        // Born after the TTL.
        let newcomer = Client::new(&server);
        let newcomer_guest = newcomer.me().await;

        run_maintenance(&server.state).await.unwrap();
        assert!(!session_exists(&server, &idle_guest.session_id).await);
        assert!(session_exists(&server, &active_guest.session_id).await);
        assert!(session_exists(&server, &newcomer_guest.session_id).await);
        assert!(
            session_exists(&server, &member_guest.session_id).await,
            "linked from a live account session"
        );
        assert!(session_exists(&server, &account.session_id).await);
        assert_eq!(member.me().await, account);
        assert_eq!(newcomer.me().await, newcomer_guest);
        let again = run_maintenance(&server.state).await.unwrap();
        assert_eq!(again.guest_sessions_deleted, 0, "nothing else was idle");

        // The idle browser comes back as a new guest.
        let returned = idle.me().await;
        assert_eq!(returned.kind, SessionKind::Guest);
        assert_ne!(returned.session_id, idle_guest.session_id);

        // Once the account session is signed out, its guest session is no longer
        // linked, and it is idle.
        member.signout().await.expect::<Me>(200);
        let report = run_maintenance(&server.state).await.unwrap();
        assert_eq!(report.guest_sessions_deleted, 1);
        assert!(!session_exists(&server, &member_guest.session_id).await);
        assert!(session_exists(&server, &active_guest.session_id).await);
    }
);

both_backends!(
    a_session_change_on_one_instance_holds_on_another_at_once,
    |db: TestDatabase| async move {
        // Two instances on one database. B keeps the sessions it has read; each change
        // made on A must hold on B's very next request.
        let a = TestServer::start(&db).await;
        let b = TestServer::start(&db).await;
        let alice = Client::new(&a);
        alice.signup("alice", PASSWORD).await.expect::<Me>(201);
        let bob = Client::new(&a);
        let bob_me: Me = bob.signup("bob", PASSWORD).await.expect(201);
        let bob_id = bob_me.user.clone().expect("an account").id;
        let bob_on_b = bob.same_browser_at(&b.base_url());
        assert_eq!(bob_on_b.me().await, bob_me);
        assert_eq!(bob_on_b.me().await, bob_me);
        assert_eq!(b.state.sessions.len(), 1, "B knows bob's session");

        // A role change.
        let viewer = bob_on_b.me().await.access.expect("access");
        assert!(!viewer.allows("flags:write"));
        alice
            .send(
                alice
                    .http()
                    .put(alice.url(&format!("/api/admin/users/{bob_id}/role")))
                    .json(&serde_json::json!({ "role": "editor" })),
            )
            .await
            .expect::<serde_json::Value>(200);
        let editor = bob_on_b.me().await.access.expect("access");
        assert!(editor.allows("flags:write"), "{:?}", editor.permissions);

        // Revoking a session from another one.
        let phone = Client::new(&a);
        let on_phone: Me = phone.signin("bob", PASSWORD).await.expect(200);
        let phone_on_b = phone.same_browser_at(&b.base_url());
        assert_eq!(phone_on_b.me().await, on_phone);
        let revoked = bob
            .delete(&format!("/api/auth/sessions/{}", on_phone.session_id))
            .await;
        assert_eq!(revoked.status, 204, "{}", revoked.json);
        let after = phone_on_b.me().await;
        assert_eq!(
            after.kind,
            SessionKind::Guest,
            "the revoked session is gone"
        );

        // Signing out.
        let token = bob.session_token().expect("bob's cookie");
        bob.signout().await.expect::<Me>(200);
        Client::with_session_token(&b, &token)
            .get("/api/auth/me")
            .await
            .assert_error(401, "session_replaced");
        a.shutdown().await;
        b.shutdown().await;
    }
);
