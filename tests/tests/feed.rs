//! The news feed over HTTP and the realtime channel, on both backends:
//!
//! - post, follow, like, reply, profile; unfollow removes the author's posts;
//! - every follower sees a post exactly once, pushed (fanout) or pulled (large account);
//! - a fanout chunk replayed (lost progress) stores and announces nothing twice; kill -9
//!   mid-fanout, restart: every active follower has the post once, inactive ones none;
//! - inactive readers are skipped by fanout and rebuilt when they return;
//! - ranking is deterministic for a fixed clock; pages never repeat or skip an item
//!   while posts arrive and likes change;
//! - new posts announce themselves on `user:<id>`;
//! - bad input gets 4xx with the one error shape; guests get 401.

use std::collections::HashSet;
use std::time::Duration;

use meridian_server::feed::fanout;
use meridian_shared::feed::{
    FeedEvent, FeedPage, FeedPost, FeedProfile, FollowState, LikeState, NewPost,
};
use meridian_shared::realtime::ServerMessage;
use meridian_tests::both_backends;
use meridian_tests::client::{Client, Realtime};
use meridian_tests::db::TestDatabase;
use meridian_tests::process::ServerProcess;
use meridian_tests::server::TestServer;
use serde_json::json;
use sqlx::AnyPool;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "feed-tests-pass-1";
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A signed-up account: its browser and user id.
async fn account(base_url: &str, name: &str) -> (Client, String) {
    let client = Client::at(base_url);
    client
        .signup(name, PASSWORD)
        .await
        .expect::<serde_json::Value>(201);
    let id = client.me().await.user.expect("signed in").id;
    (client, id)
}

async fn feed(client: &Client, query: &str) -> FeedPage {
    client.get(&format!("/api/feed{query}")).await.expect(200)
}

/// Every post id of a reader's feed, following cursors to the end.
async fn all_feed_ids(client: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page = feed(client, "?limit=100").await;
    loop {
        ids.extend(page.items.iter().map(|i| i.post.id.clone()));
        match page.next_cursor {
            Some(cursor) => page = feed(client, &format!("?limit=100&cursor={cursor}")).await,
            None => return ids,
        }
    }
}

async fn post(client: &Client, text: &str) -> FeedPost {
    client
        .post_json(
            "/api/feed/posts",
            &NewPost {
                text: text.into(),
                reply_to: None,
            },
        )
        .await
        .expect(201)
}

async fn follow(client: &Client, user_id: &str) -> FollowState {
    client
        .send(
            client
                .http()
                .put(client.url(&format!("/api/feed/follows/{user_id}"))),
        )
        .await
        .expect(200)
}

async fn like(client: &Client, post_id: &str) -> LikeState {
    client
        .send(
            client
                .http()
                .put(client.url(&format!("/api/feed/posts/{post_id}/like"))),
        )
        .await
        .expect(200)
}

async fn drain(server: &TestServer) {
    fanout::drain(&server.state.feed)
        .await
        .expect("fanout drains");
}

fn count_of(ids: &[String], id: &str) -> usize {
    ids.iter().filter(|x| *x == id).count()
}

both_backends!(
    post_follow_like_reply_profile_unfollow,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (alice, alice_id) = account(&base, "alice").await;
        let (bob, bob_id) = account(&base, "bob").await;
        let empty = feed(&bob, "").await;
        assert!(empty.items.is_empty());
        assert_eq!(empty.next_cursor, None);

        let state = follow(&bob, &alice_id).await;
        assert_eq!((state.followed, state.followers), (true, 1));
        // Following again changes nothing.
        assert_eq!(follow(&bob, &alice_id).await.followers, 1);

        let hello = post(&alice, "hello from alice").await;
        assert_eq!(hello.author_id, alice_id);
        drain(&server).await;
        let page = feed(&bob, "").await;
        assert_eq!(page.items.len(), 1);
        let item = &page.items[0];
        assert_eq!(item.post.id, hello.id);
        assert_eq!(item.post.author_name, "alice");
        assert!(
            item.reasons.iter().any(|r| r.code == "followed"),
            "{:?}",
            item.reasons
        );

        // Like (twice: counted once), reply; the author's counts and affinity follow.
        assert_eq!(like(&bob, &hello.id).await.likes, 1);
        assert_eq!(like(&bob, &hello.id).await.likes, 1);
        let reply: FeedPost = bob
            .post_json(
                "/api/feed/posts",
                &json!({"text": "hi alice", "reply_to": hello.id}),
            )
            .await
            .expect(201);
        assert_eq!(reply.reply_to.as_deref(), Some(hello.id.as_str()));
        let profile: FeedProfile = bob
            .get(&format!("/api/feed/users/{alice_id}"))
            .await
            .expect(200);
        assert_eq!(profile.username, "alice");
        assert_eq!(
            (profile.followers, profile.following, profile.posts_count),
            (1, 0, 1)
        );
        assert!(profile.followed);
        assert_eq!(profile.posts[0].likes, 1);
        assert_eq!(profile.posts[0].replies, 1);
        assert!(profile.posts[0].liked);
        let second = post(&alice, "second").await;
        drain(&server).await;
        let page = feed(&bob, "").await;
        let top = page
            .items
            .iter()
            .find(|i| i.post.id == second.id)
            .expect("the new post");
        assert!(
            top.reasons.iter().any(|r| r.code == "affinity"),
            "liking and replying build affinity: {:?}",
            top.reasons
        );
        // A guest sees profiles too.
        let guest = Client::at(&base);
        let seen: FeedProfile = guest
            .get(&format!("/api/feed/users/{alice_id}"))
            .await
            .expect(200);
        assert!(!seen.followed);
        assert!(!seen.posts[0].liked);
        let unliked: LikeState = bob
            .delete(&format!("/api/feed/posts/{}/like", hello.id))
            .await
            .expect(200);
        assert_eq!((unliked.liked, unliked.likes), (false, 0));

        // Unfollow: alice's posts leave bob's feed (bob's own reply stays).
        let state: FollowState = bob
            .delete(&format!("/api/feed/follows/{alice_id}"))
            .await
            .expect(200);
        assert_eq!((state.followed, state.followers), (false, 0));
        let ids = all_feed_ids(&bob).await;
        assert_eq!(ids, vec![reply.id.clone()]);
        let me: FeedProfile = alice
            .get(&format!("/api/feed/users/{bob_id}"))
            .await
            .expect(200);
        assert_eq!(me.following, 0);
    }
);

both_backends!(
    every_follower_sees_a_post_once_pushed_or_pulled,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| {
            c.feed_pull_threshold = 3;
            c.feed_fanout_chunk = 2;
        })
        .await;
        let base = server.base_url();
        let (star, star_id) = account(&base, "star").await;
        let (small, small_id) = account(&base, "small").await;
        let mut fans = Vec::new();
        for n in 0..5 {
            let (fan, _) = account(&base, &format!("fan{n}")).await;
            feed(&fan, "").await; // active
            follow(&fan, &star_id).await;
            if n < 2 {
                follow(&fan, &small_id).await;
            }
            fans.push(fan);
        }
        let big = post(&star, "from a large account").await;
        let little = post(&small, "from a small account").await;
        drain(&server).await;
        for (n, fan) in fans.iter().enumerate() {
            let page = feed(fan, "").await;
            let ids: Vec<String> = page.items.iter().map(|i| i.post.id.clone()).collect();
            assert_eq!(count_of(&ids, &big.id), 1, "fan{n}: {ids:?}");
            let pulled = page.items.iter().find(|i| i.post.id == big.id).unwrap();
            assert!(pulled.reasons.iter().any(|r| r.code == "followed_large"));
            assert_eq!(count_of(&ids, &little.id), usize::from(n < 2), "fan{n}");
        }
        // The large account's post was never pushed; the small one's went to its 2 fans.
        let pool = &server.state.db.pool;
        let pushed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM feed_inbox WHERE post_id = $1")
            .bind(big.id.parse::<i64>().unwrap())
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(pushed, 1, "only the author's own inbox");
        let pushed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM feed_inbox WHERE post_id = $1")
            .bind(little.id.parse::<i64>().unwrap())
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(pushed, 3, "the author and two followers");
    }
);

both_backends!(
    a_replayed_fanout_stores_and_announces_nothing_twice,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| c.feed_fanout_chunk = 2).await;
        let base = server.base_url();
        let (author, author_id) = account(&base, "author").await;
        let mut readers = Vec::new();
        for n in 0..5 {
            let (reader, id) = account(&base, &format!("reader{n}")).await;
            feed(&reader, "").await;
            follow(&reader, &author_id).await;
            readers.push((reader, id));
        }
        let p = post(&author, "once only").await;
        drain(&server).await;
        let pool = &server.state.db.pool;
        let post_id = p.id.parse::<i64>().unwrap();
        // Progress lost (as if every chunk's commit had been undone but its writes kept):
        // the job runs again from the start.
        sqlx::query("UPDATE feed_fanout SET next_follower = '', done = 0 WHERE post_id = $1")
            .bind(post_id)
            .execute(pool)
            .await
            .unwrap();
        drain(&server).await;
        let (delivered, done): (i64, i64) = {
            let row: (i64, i64) =
                sqlx::query_as("SELECT delivered, done FROM feed_fanout WHERE post_id = $1")
                    .bind(post_id)
                    .fetch_one(pool)
                    .await
                    .unwrap();
            row
        };
        assert_eq!(
            (delivered, done),
            (5, 1),
            "the replay delivered nothing new"
        );
        for (reader, id) in &readers {
            let ids = all_feed_ids(reader).await;
            assert_eq!(count_of(&ids, &p.id), 1);
            let events: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM realtime_events WHERE topic = $1")
                    .bind(format!("user:{id}"))
                    .fetch_one(pool)
                    .await
                    .unwrap();
            assert_eq!(events, 1, "one notice for {id}");
        }
    }
);

both_backends!(
    inactive_readers_are_skipped_and_rebuilt_on_return,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| {
            c.feed_inactive_after = Duration::from_millis(DAY_MS as u64)
        })
        .await;
        let base = server.base_url();
        let (author, author_id) = account(&base, "writer").await;
        let (active, _) = account(&base, "active").await;
        let (away, _) = account(&base, "away").await;
        for reader in [&active, &away] {
            feed(reader, "").await;
            follow(reader, &author_id).await;
        }
        server.clock.advance(2 * DAY_MS);
        feed(&active, "").await; // still active
        let p = post(&author, "while you were away").await;
        drain(&server).await;
        let delivered: i64 =
            sqlx::query_scalar("SELECT delivered FROM feed_fanout WHERE post_id = $1")
                .bind(p.id.parse::<i64>().unwrap())
                .fetch_one(&server.state.db.pool)
                .await
                .unwrap();
        assert_eq!(delivered, 1, "the inactive reader was skipped");
        assert_eq!(count_of(&all_feed_ids(&active).await, &p.id), 1);
        // The returning reader's inbox is rebuilt on their read.
        assert_eq!(count_of(&all_feed_ids(&away).await, &p.id), 1);
    }
);

both_backends!(
    pages_never_repeat_or_skip_while_posts_arrive,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (a, a_id) = account(&base, "poster_a").await;
        let (b, b_id) = account(&base, "poster_b").await;
        let (reader, _) = account(&base, "reader").await;
        feed(&reader, "").await;
        follow(&reader, &a_id).await;
        follow(&reader, &b_id).await;
        let mut posted = HashSet::new();
        for n in 0..12 {
            posted.insert(post(&a, &format!("a{n}")).await.id);
            posted.insert(post(&b, &format!("b{n}")).await.id);
            server.clock.advance(60_000);
        }
        drain(&server).await;
        let mut seen = Vec::new();
        let mut page = feed(&reader, "?limit=5").await;
        let first_order: Vec<String> = page.items.iter().map(|i| i.post.id.clone()).collect();
        let mut n = 0;
        loop {
            seen.extend(page.items.iter().map(|i| i.post.id.clone()));
            // Meanwhile: new posts, likes, time.
            let fresh = post(&a, &format!("late{n}")).await;
            like(&reader, &page.items[0].post.id).await;
            server.clock.advance(3_600_000);
            drain(&server).await;
            n += 1;
            match page.next_cursor {
                Some(cursor) => page = feed(&reader, &format!("?limit=5&cursor={cursor}")).await,
                None => {
                    assert!(!seen.contains(&fresh.id));
                    break;
                }
            }
        }
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no repeats: {seen:?}");
        assert_eq!(unique, posted, "no skips");
        assert_eq!(n, 5, "24 items in pages of 5");
        // A new first page sees the late posts.
        let now = all_feed_ids(&reader).await;
        assert_eq!(now.len(), 24 + 5);
        assert_ne!(now[..5], first_order[..], "the new ranking has moved on");
    }
);

both_backends!(
    ranking_is_deterministic_for_a_fixed_clock,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (a, a_id) = account(&base, "rank_a").await;
        let (b, b_id) = account(&base, "rank_b").await;
        let (reader, _) = account(&base, "rank_reader").await;
        feed(&reader, "").await;
        follow(&reader, &a_id).await;
        follow(&reader, &b_id).await;
        for n in 0..6 {
            let p = post(&a, &format!("a{n} https://example.com")).await;
            post(&b, &format!("b{n}")).await;
            if n % 2 == 0 {
                like(&reader, &p.id).await;
            }
            server.clock.advance(600_000);
        }
        drain(&server).await;
        let first = feed(&reader, "?limit=100").await;
        let second = feed(&reader, "?limit=100").await;
        assert_eq!(first.items, second.items);
        assert_eq!(first.items.len(), 12);
        for item in &first.items {
            assert!(!item.reasons.is_empty());
        }
        assert!(first
            .items
            .iter()
            .any(|i| i.reasons.iter().any(|r| r.code == "diversity")));
    }
);

both_backends!(
    new_posts_announce_themselves_live,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (author, author_id) = account(&base, "live_author").await;
        let (reader, reader_id) = account(&base, "live_reader").await;
        feed(&reader, "").await;
        follow(&reader, &author_id).await;
        let (mut socket, _) = Realtime::connect(&reader).await;
        socket.subscribe(&format!("user:{reader_id}"), None).await;
        let p = post(&author, "ping").await;
        let event = socket
            .recv_until("a new post notice", |message| match message {
                ServerMessage::Event(event) => {
                    serde_json::from_value::<FeedEvent>(event.payload.clone()).ok()
                }
                _ => None,
            })
            .await;
        assert_eq!(
            event,
            FeedEvent::NewPost {
                post_id: p.id,
                author_id
            }
        );
    }
);

both_backends!(
    bad_input_gets_4xx_and_guests_401,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let guest = Client::at(&base);
        let (alice, alice_id) = account(&base, "alice4xx").await;
        let (bob, _) = account(&base, "bob4xx").await;
        guest
            .get("/api/feed")
            .await
            .assert_error(401, "sign_in_required");
        guest
            .post_json("/api/feed/posts", &json!({"text": "hi"}))
            .await
            .assert_error(401, "sign_in_required");
        guest
            .send(
                guest
                    .http()
                    .put(guest.url(&format!("/api/feed/follows/{alice_id}"))),
            )
            .await
            .assert_error(401, "sign_in_required");
        for body in [
            json!({"text": ""}),
            json!({"text": "   "}),
            json!({"text": "x".repeat(501)}),
        ] {
            alice
                .post_json("/api/feed/posts", &body)
                .await
                .assert_error(422, "invalid_text");
        }
        alice
            .post_json("/api/feed/posts", &json!({"text": "hi", "reply_to": "abc"}))
            .await
            .assert_error(400, "invalid_post_id");
        alice
            .post_json(
                "/api/feed/posts",
                &json!({"text": "hi", "reply_to": "12345"}),
            )
            .await
            .assert_error(404, "post_not_found");
        alice
            .post_json("/api/feed/posts", &json!({"txt": "hi"}))
            .await
            .assert_error(422, "invalid_body");
        for query in ["?limit=0", "?limit=101", "?limit=-3"] {
            alice
                .get(&format!("/api/feed{query}"))
                .await
                .assert_error(400, "invalid_limit");
        }
        assert_eq!(alice.get("/api/feed?limit=x").await.status.as_u16(), 400);
        for cursor in ["garbage", "1.2", "99999.0", "1.-1"] {
            alice
                .get(&format!("/api/feed?cursor={cursor}"))
                .await
                .assert_error(400, "invalid_cursor");
        }
        // Another account's cursor is refused.
        for n in 0..3 {
            post(&alice, &format!("p{n}")).await;
        }
        let page = feed(&alice, "?limit=1").await;
        let cursor = page.next_cursor.expect("more than one page");
        bob.get(&format!("/api/feed?cursor={cursor}"))
            .await
            .assert_error(400, "invalid_cursor");
        alice
            .send(
                alice
                    .http()
                    .put(alice.url(&format!("/api/feed/follows/{alice_id}"))),
            )
            .await
            .assert_error(422, "self_follow");
        alice
            .send(alice.http().put(alice.url("/api/feed/follows/424242")))
            .await
            .assert_error(404, "user_not_found");
        alice
            .send(alice.http().put(alice.url("/api/feed/posts/abc/like")))
            .await
            .assert_error(400, "invalid_post_id");
        alice
            .send(alice.http().put(alice.url("/api/feed/posts/777/like")))
            .await
            .assert_error(404, "post_not_found");
        guest
            .get("/api/feed/users/nobody")
            .await
            .assert_error(404, "user_not_found");
    }
);

/// Seeds `accounts` with the real binary, then marks every account active.
async fn seed_with_binary(db: &TestDatabase, accounts: usize) {
    let out = tokio::process::Command::new(BIN)
        .arg("feed-seed")
        .arg("--accounts")
        .arg(accounts.to_string())
        .arg("--pull-threshold")
        .arg("1000000")
        .arg("--data-dir")
        .arg(db.data_dir())
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .expect("run feed-seed");
    assert!(
        out.status.success(),
        "feed-seed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn open_pool(db: &TestDatabase) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(&db.url)
        .await
        .expect("open the test database")
}

both_backends!(
    kill_9_mid_fanout_resumes_without_duplicates_or_gaps,
    |db: TestDatabase| async move {
        const ACCOUNTS: usize = 2500;
        seed_with_binary(&db, ACCOUNTS).await;
        let pool = open_pool(&db).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Everyone active except every tenth account.
        sqlx::query("UPDATE feed_accounts SET last_read_ms = $1")
            .bind(now)
            .execute(&pool)
            .await
            .unwrap();
        let inactive: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM users WHERE username LIKE 'demo%0' AND username <> 'demo0'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for id in &inactive {
            sqlx::query("UPDATE feed_accounts SET last_read_ms = NULL WHERE user_id = $1")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
        let mut first = ServerProcess::start(BIN, &db).await;
        let celeb = Client::at(&first.base_url());
        celeb
            .signin("demo0", meridian_server::feed::seed::DEMO_PASSWORD)
            .await
            .expect::<serde_json::Value>(200);
        let celeb_id = celeb.me().await.user.unwrap().id;
        let p = post(&celeb, "to everyone").await;
        let post_id: i64 = p.id.parse().unwrap();
        // Kill -9 once the first chunk has committed, before the last.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let delivered: i64 =
                sqlx::query_scalar("SELECT delivered FROM feed_fanout WHERE post_id = $1")
                    .bind(post_id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            if delivered > 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no chunk committed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        first.kill_9().await;
        let (delivered_at_kill, done_at_kill): (i64, i64) =
            sqlx::query_as("SELECT delivered, done FROM feed_fanout WHERE post_id = $1")
                .bind(post_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        eprintln!("delivered before kill -9: {delivered_at_kill}");
        assert_eq!(
            done_at_kill, 0,
            "killed mid-fanout ({delivered_at_kill} delivered)"
        );

        let second = ServerProcess::start(BIN, &db).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let done: i64 = sqlx::query_scalar("SELECT done FROM feed_fanout WHERE post_id = $1")
                .bind(post_id)
                .fetch_one(&pool)
                .await
                .unwrap();
            if done == 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "fanout did not finish after restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let followers: Vec<String> =
            sqlx::query_scalar("SELECT follower_id FROM feed_follows WHERE followee_id = $1")
                .bind(&celeb_id)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            followers.len(),
            ACCOUNTS - 1,
            "demo0 is followed by everyone"
        );
        let inactive: HashSet<String> = inactive.into_iter().collect();
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM feed_inbox WHERE post_id = $1")
                .bind(post_id)
                .fetch_all(&pool)
                .await
                .unwrap();
        let got: HashSet<String> = rows.iter().cloned().collect();
        assert_eq!(got.len(), rows.len());
        for f in &followers {
            assert_eq!(got.contains(f), !inactive.contains(f), "follower {f}");
        }
        let (delivered, _): (i64, i64) =
            sqlx::query_as("SELECT delivered, done FROM feed_fanout WHERE post_id = $1")
                .bind(post_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(delivered as usize, followers.len() - inactive.len());
        // One notice per delivered follower.
        let notices: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM realtime_events WHERE op_id = $1")
                .bind(format!("feed-post:{post_id}"))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(notices, delivered);
        // And a follower reads it once.
        let reader = Client::at(&second.base_url());
        reader
            .signin("demo1", meridian_server::feed::seed::DEMO_PASSWORD)
            .await
            .expect::<serde_json::Value>(200);
        assert_eq!(count_of(&all_feed_ids(&reader).await, &p.id), 1);
        pool.close().await;
    }
);

/// Two instances on one PostgreSQL: both run fanout workers on the one queue; a post
/// made on A reaches a reader on B once, announced on B's realtime channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_fanout_queue() {
    let db = TestDatabase::create(meridian_tests::db::Backend::Postgres).await;
    let a = TestServer::start_with(&db, |c| c.feed_fanout_chunk = 1).await;
    let b = TestServer::start_with(&db, |c| c.feed_fanout_chunk = 1).await;
    let (author, author_id) = account(&a.base_url(), "cluster_author").await;
    let mut readers = Vec::new();
    for n in 0..6 {
        let (reader, id) = account(&b.base_url(), &format!("cluster_reader{n}")).await;
        feed(&reader, "").await;
        follow(&reader, &author_id).await;
        readers.push((reader, id));
    }
    let (mut socket, _) = Realtime::connect(&readers[0].0).await;
    socket
        .subscribe(&format!("user:{}", readers[0].1), None)
        .await;
    let p = post(&author, "across instances").await;
    // Both workers race over the chunks.
    let (x, y) = tokio::join!(fanout::drain(&a.state.feed), fanout::drain(&b.state.feed));
    x.unwrap();
    y.unwrap();
    let announced = socket
        .recv_until(
            "the notice on the other instance",
            |message| match message {
                ServerMessage::Event(event) => {
                    serde_json::from_value::<FeedEvent>(event.payload.clone()).ok()
                }
                _ => None,
            },
        )
        .await;
    assert_eq!(
        announced,
        FeedEvent::NewPost {
            post_id: p.id.clone(),
            author_id
        }
    );
    for (reader, _) in &readers {
        assert_eq!(count_of(&all_feed_ids(reader).await, &p.id), 1);
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM feed_inbox WHERE post_id = $1")
        .bind(p.id.parse::<i64>().unwrap())
        .fetch_one(&a.state.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 7, "six readers and the author, once each");
}
