//! The HTTP surface of a real server on both backends: health, W3C trace context, the one
//! error shape of every failure, the OpenAPI document, the web UI's static files and
//! their caching, and compression.

use std::collections::BTreeSet;
use std::time::Instant;

use meridian_shared::api::{DatabaseBackend, HealthResponse};
use meridian_shared::traceparent::TraceParent;
use meridian_tests::both_backends;
use meridian_tests::client::{assert_error_body, Client, Realtime};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::{
    bundle_script, TestServer, BUNDLE_SCRIPT, BUNDLE_STYLE, BUNDLE_WASM, BUNDLE_WASM_BROTLI,
};
use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use serde_json::{json, Value};

const TRACEPARENT: &str = "traceparent";
const CALLER_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn backend_of(db: &TestDatabase) -> DatabaseBackend {
    match db.backend {
        Backend::Sqlite => DatabaseBackend::Sqlite,
        Backend::Postgres => DatabaseBackend::Postgres,
    }
}

fn traceparent_of(response: &reqwest::Response) -> TraceParent {
    let value = response
        .headers()
        .get(TRACEPARENT)
        .expect("every response carries a traceparent")
        .to_str()
        .expect("a text header");
    TraceParent::parse(value).unwrap_or_else(|e| panic!("invalid traceparent {value:?}: {e}"))
}

both_backends!(
    health_reports_version_backend_and_uptime,
    |db: TestDatabase| async move {
        let before_start = Instant::now();
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);

        let health: HealthResponse = client.get("/api/health").await.expect(200);
        assert_eq!(health.status, "ok");
        assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(health.database, backend_of(&db));
        assert!(
            health.uptime_seconds <= before_start.elapsed().as_secs(),
            "uptime {} s is longer than the server has existed",
            health.uptime_seconds
        );
        assert_eq!(health.instance_id, &*server.state.instance_id);
        assert_eq!(health.realtime_connections, 0);

        let (_socket, _) = Realtime::connect(&client).await;
        let health: HealthResponse = client.get("/api/health").await.expect(200);
        assert_eq!(health.realtime_connections, 1);
    }
);

both_backends!(
    a_valid_traceparent_is_continued_with_a_new_span,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        let caller = TraceParent::parse(CALLER_TRACEPARENT).unwrap();

        for path in ["/api/health", "/api/no-such-endpoint"] {
            let response = client
                .http()
                .get(client.url(path))
                .header(TRACEPARENT, CALLER_TRACEPARENT)
                .send()
                .await
                .unwrap();
            let answered = traceparent_of(&response);
            assert_eq!(answered.trace_id, caller.trace_id, "{path}: same trace");
            assert_ne!(answered.parent_id, caller.parent_id, "{path}: a new span");
            assert_eq!(answered.flags, caller.flags, "{path}: flags are kept");
        }
    }
);

both_backends!(
    a_request_without_traceparent_starts_a_trace,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);

        let first = client
            .http()
            .get(client.url("/api/health"))
            .send()
            .await
            .unwrap();
        let second = client
            .http()
            .get(client.url("/api/health"))
            .send()
            .await
            .unwrap();
        let (first, second) = (traceparent_of(&first), traceparent_of(&second));
        assert_ne!(first.trace_id, [0; 16]);
        assert_ne!(first.parent_id, [0; 8]);
        assert_eq!(first.flags, TraceParent::SAMPLED);
        assert_ne!(
            first.trace_id, second.trace_id,
            "each request is its own trace"
        );
    }
);

both_backends!(
    an_invalid_traceparent_is_replaced_by_a_fresh_trace,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        let caller = TraceParent::parse(CALLER_TRACEPARENT).unwrap();

        for invalid in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "not a traceparent",
        ] {
            let response = client
                .http()
                .get(client.url("/api/health"))
                .header(TRACEPARENT, invalid)
                .send()
                .await
                .unwrap();
            let answered = traceparent_of(&response);
            assert_ne!(answered.trace_id, caller.trace_id, "{invalid:?}");
            assert_ne!(answered.trace_id, [0; 16], "{invalid:?}");
            assert_eq!(answered.flags, TraceParent::SAMPLED, "{invalid:?}");
        }
    }
);

both_backends!(
    unknown_routes_and_wrong_methods_answer_the_error_shape,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);

        client
            .get("/api/nothing-here")
            .await
            .assert_error(404, "not_found");
        client.get("/api").await.assert_error(404, "not_found");
        client
            .post_empty("/api/auth/nothing/deeper")
            .await
            .assert_error(404, "not_found");

        client
            .delete("/api/health")
            .await
            .assert_error(405, "method_not_allowed");
        client
            .get("/api/auth/signup")
            .await
            .assert_error(405, "method_not_allowed");
        client
            .post_empty("/api/realtime")
            .await
            .assert_error(405, "method_not_allowed");
        client
            .get("/api/auth/sessions/some-id")
            .await
            .assert_error(405, "method_not_allowed");
    }
);

both_backends!(
    malformed_bodies_answer_the_error_shape,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        let signup = client.url("/api/auth/signup");

        let invalid_json = client
            .http()
            .post(signup.clone())
            .header(CONTENT_TYPE, "application/json")
            .body("{not json");
        client
            .send(invalid_json)
            .await
            .assert_error(400, "invalid_json");

        let missing_field = client
            .http()
            .post(signup.clone())
            .json(&json!({"username": "alice"}));
        client
            .send(missing_field)
            .await
            .assert_error(422, "invalid_body");

        let wrong_type = client
            .http()
            .post(signup.clone())
            .json(&json!({"username": "alice", "password": 42}));
        client
            .send(wrong_type)
            .await
            .assert_error(422, "invalid_body");

        let not_json = client
            .http()
            .post(signup.clone())
            .header(CONTENT_TYPE, "text/plain")
            .body(r#"{"username": "alice", "password": "correct horse battery"}"#);
        client
            .send(not_json)
            .await
            .assert_error(415, "unsupported_media_type");

        let no_content_type = client
            .http()
            .post(signup)
            .body(r#"{"username": "alice", "password": "correct horse battery"}"#);
        client
            .send(no_content_type)
            .await
            .assert_error(415, "unsupported_media_type");
    }
);

both_backends!(
    a_body_over_the_limit_is_413,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |config| config.body_limit_bytes = 1024).await;
        let client = Client::new(&server);
        let body = |password_len: usize| json!({"username": "alice", "password": "p".repeat(password_len)});

        // Just under the limit: the body is read and the credentials refused.
        let under = client.post_json("/api/auth/signin", &body(900)).await;
        under.assert_error(401, "invalid_credentials");

        let over = client.post_json("/api/auth/signin", &body(4096)).await;
        over.assert_error(413, "payload_too_large");
    }
);

both_backends!(
    openapi_documents_every_route,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);

        let reply = client.get("/api/openapi.json").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let doc = &reply.json;
        let version = doc["openapi"].as_str().expect("an `openapi` version");
        assert!(version.starts_with("3.1"), "OpenAPI {version}");

        let paths = doc["paths"].as_object().expect("paths");
        for (path, method) in [
            ("/api/health", "get"),
            ("/api/openapi.json", "get"),
            ("/api/auth/signup", "post"),
            ("/api/auth/signin", "post"),
            ("/api/auth/signout", "post"),
            ("/api/auth/me", "get"),
            ("/api/auth/sessions", "get"),
            ("/api/auth/sessions/{id}", "delete"),
            ("/api/realtime", "get"),
        ] {
            let operation = paths
                .get(path)
                .and_then(|p| p.get(method))
                .unwrap_or_else(|| panic!("{method} {path} is not documented"));
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents its responses"
            );
        }

        let error = &doc["components"]["schemas"]["ApiErrorBody"];
        let required: BTreeSet<&str> = error["required"]
            .as_array()
            .expect("ApiErrorBody is documented")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, BTreeSet::from(["code", "message"]));
    }
);

both_backends!(
    index_and_spa_routes_are_the_rendered_index_never_stored,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);

        let mut bodies = Vec::new();
        for path in ["/", "/index.html", "/status", "/some/deep/route"] {
            let response = client.http().get(client.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            assert_eq!(header(CACHE_CONTROL).as_deref(), Some("no-store"), "{path}");
            let content_type = header(CONTENT_TYPE).unwrap_or_default();
            assert!(
                content_type.starts_with("text/html"),
                "{path}: {content_type}"
            );
            bodies.push(response.text().await.unwrap());
        }
        let index = &bodies[0];
        assert!(
            index.contains(&format!(
                r#"<link rel="stylesheet" href="/pkg/{BUNDLE_STYLE}">"#
            )),
            "{index}"
        );
        assert!(index.contains(&format!(r#"import init from "/pkg/{BUNDLE_SCRIPT}";"#)));
        assert!(index.contains(&format!(r#"module_or_path: "/pkg/{BUNDLE_WASM}""#)));
        assert!(
            !index.contains("MERIDIAN_"),
            "both markers are filled: {index}"
        );
        for body in &bodies[1..] {
            assert_eq!(body, index);
        }
    }
);

both_backends!(
    hashed_bundle_files_are_immutable_and_others_revalidated,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        let get = |path: String| {
            let request = client.http().get(client.url(&path));
            async move { request.send().await.unwrap() }
        };

        let script = get(format!("/pkg/{BUNDLE_SCRIPT}")).await;
        assert_eq!(script.status(), 200);
        assert_eq!(
            script.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(script.headers().get(CONTENT_ENCODING).is_none());
        assert_eq!(script.text().await.unwrap(), bundle_script());

        for name in [BUNDLE_WASM, BUNDLE_STYLE] {
            let file = get(format!("/pkg/{name}")).await;
            assert_eq!(file.status(), 200, "{name}");
            assert_eq!(
                file.headers()[CACHE_CONTROL],
                "public, max-age=31536000, immutable",
                "{name}"
            );
        }

        let manifest = get("/pkg/manifest.json".into()).await;
        assert_eq!(manifest.status(), 200);
        assert_eq!(manifest.headers()[CACHE_CONTROL], "no-cache");
    }
);

both_backends!(
    missing_static_files_are_404_not_the_app,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);

        for path in [
            "/missing.css",
            "/images/missing.png",
            "/pkg/meridian_web-ffffffffffffffff.js",
            "/pkg/anything",
        ] {
            let response = client.http().get(client.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 404, "{path}");
            assert!(response.headers().get(CACHE_CONTROL).is_none(), "{path}");
            let body = response.text().await.unwrap();
            assert!(!body.contains("<!doctype html>"), "{path} is not the app");
        }
    }
);

both_backends!(
    responses_are_gzipped_when_the_client_accepts_it,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

        for path in [format!("/pkg/{BUNDLE_SCRIPT}"), "/api/openapi.json".into()] {
            let plain = client.http().get(client.url(&path)).send().await.unwrap();
            assert_eq!(plain.status(), 200, "{path}");
            assert!(plain.headers().get(CONTENT_ENCODING).is_none(), "{path}");
            let plain = plain.bytes().await.unwrap();

            let gzipped = client
                .http()
                .get(client.url(&path))
                .header(ACCEPT_ENCODING, "gzip")
                .send()
                .await
                .unwrap();
            assert_eq!(gzipped.status(), 200, "{path}");
            assert_eq!(gzipped.headers()[CONTENT_ENCODING], "gzip", "{path}");
            let gzipped = gzipped.bytes().await.unwrap();
            assert_eq!(gzipped[..2], GZIP_MAGIC, "{path}");
            assert!(
                gzipped.len() < plain.len(),
                "{path}: {} gzipped bytes for {} plain",
                gzipped.len(),
                plain.len()
            );
        }
    }
);

both_backends!(
    precompressed_bundle_files_go_to_clients_that_accept_them,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        let path = format!("/pkg/{BUNDLE_WASM}");
        let get = |accept: &'static str| {
            let request = client
                .http()
                .get(client.url(&path))
                .header(ACCEPT_ENCODING, accept);
            async move { request.send().await.unwrap() }
        };

        // A browser that takes brotli gets the file the build compressed, still typed
        // as wasm (streaming compilation needs it) and still immutable.
        let brotli = get("gzip, deflate, br").await;
        assert_eq!(brotli.status(), 200);
        assert_eq!(brotli.headers()[CONTENT_ENCODING], "br");
        assert_eq!(brotli.headers()[CONTENT_TYPE], "application/wasm");
        assert_eq!(
            brotli.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        let vary = brotli.headers()[VARY]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(vary.contains("accept-encoding"), "Vary: {vary}");
        assert_eq!(brotli.bytes().await.unwrap(), BUNDLE_WASM_BROTLI);

        // One that does not gets the plain file.
        let plain = get("identity").await;
        assert_eq!(plain.status(), 200);
        assert!(plain.headers().get(CONTENT_ENCODING).is_none());
        assert_eq!(plain.headers()[CONTENT_TYPE], "application/wasm");
        assert_eq!(plain.bytes().await.unwrap().as_ref(), b"\0asm\x01\0\0\0");
    }
);

both_backends!(
    error_bodies_of_refused_upgrades_have_the_shape_too,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);

        // An ordinary GET of the realtime endpoint is not an upgrade.
        client
            .get("/api/realtime")
            .await
            .assert_error(400, "not_websocket");

        // Without a session cookie the upgrade is refused before it happens.
        let refused = Realtime::try_connect(&server.ws_url(), &[])
            .await
            .err()
            .expect("no cookie, no upgrade");
        assert_eq!(refused.status, 401);
        assert_error_body(&refused.body, "no_session");
    }
);
