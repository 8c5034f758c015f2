//! Distributed tracing against the real server, on both backends:
//!
//! - OTLP/HTTP in protobuf and JSON, gzip and deflate; the trace comes back whole through
//!   `/api/tracing/traces/{id}` and Tempo's `/api/traces/{id}` (JSON and protobuf) and
//!   `/api/v2/traces/{id}`; partial success; Zipkin v2;
//! - a stock OpenTelemetry SDK exporter (`opentelemetry-otlp`, HTTP protobuf) sends to us;
//! - bad input: malformed bodies 400, wrong types 415, over 20 MiB 413, a full store 429
//!   with `Retry-After`; reading needs an account; nothing else breaks afterwards;
//! - search, services, the dependency graph, Tempo's search (tags, and TraceQL in `q`) and tags;
//! - a 100,000-span trace; late spans and orphans;
//! - kill -9 during ingest loses nothing that was answered 200.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use meridian_shared::traces::{
    to_hex, ServiceDependenciesResponse, TraceSearchResponse, TraceTree, TracedServicesResponse,
};
use meridian_tests::both_backends;
use meridian_tests::client::Client;
use meridian_tests::db::TestDatabase;
use meridian_tests::process::ServerProcess;
use meridian_tests::server::TestServer;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn span(trace: [u8; 16], id: u64, parent: u64, start: u64, dur: u64, name: &str) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            vec![]
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + dur,
        ..Default::default()
    }
}

fn export(groups: Vec<(&str, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![attr("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// A three-service trace: api → auth, api → db (failed).
fn checkout_trace(trace: [u8; 16]) -> ExportTraceServiceRequest {
    let t0 = now_ns();
    let mut db = span(trace, 3, 1, t0 + 20_000_000, 30_000_000, "SELECT cart");
    db.status = Some(Status {
        message: "timeout".into(),
        code: StatusCode::Error as i32,
    });
    db.attributes.push(attr("db.system", "postgresql"));
    let mut root = span(trace, 1, 0, t0, 100_000_000, "POST /checkout");
    root.attributes.push(attr("http.route", "/checkout"));
    export(vec![
        ("api", vec![root]),
        (
            "auth",
            vec![span(trace, 2, 1, t0 + 1_000_000, 10_000_000, "verify")],
        ),
        ("db", vec![db]),
    ])
}

async fn post_otlp(
    client: &Client,
    body: Vec<u8>,
    content_type: &str,
    encoding: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .http()
        .post(client.url("/v1/traces"))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.expect("send OTLP")
}

async fn viewer(server: &TestServer) -> Client {
    let client = Client::new(server);
    client
        .signup("tracer", "tracing-password-1")
        .await
        .expect::<Value>(201);
    client
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

both_backends!(
    otlp_in_every_encoding_comes_back_whole,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let agent = Client::new(&server);
        let reader = viewer(&server).await;

        let encodings: [(&str, Option<&str>); 4] = [
            ("application/x-protobuf", None),
            ("application/x-protobuf", Some("gzip")),
            ("application/json", None),
            ("application/json", Some("deflate")),
        ];
        for (n, (content_type, encoding)) in encodings.into_iter().enumerate() {
            let trace = [n as u8 + 1; 16];
            let request = checkout_trace(trace);
            let raw = if content_type == "application/json" {
                serde_json::to_vec(&request).unwrap()
            } else {
                request.encode_to_vec()
            };
            let body = match encoding {
                Some("gzip") => gzip(&raw),
                Some("deflate") => deflate(&raw),
                _ => raw,
            };
            let response = post_otlp(&agent, body, content_type, encoding).await;
            assert_eq!(response.status(), 200, "{content_type} {encoding:?}");
            let bytes = response.bytes().await.unwrap();
            if content_type == "application/json" {
                assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), json!({}));
            } else {
                let answer = ExportTraceServiceResponse::decode(&bytes[..]).unwrap();
                assert!(answer.partial_success.is_none());
            }

            // Ours: the assembled tree.
            let tree: TraceTree = reader
                .get(&format!("/api/tracing/traces/{}", to_hex(&trace)))
                .await
                .expect(200);
            assert_eq!(tree.spans.len(), 3);
            assert_eq!(tree.root_service, "api");
            assert_eq!(tree.root_name, "POST /checkout");
            assert_eq!(tree.services, ["api", "auth", "db"]);
            assert_eq!(tree.error_count, 1);
            assert_eq!(tree.spans[1].depth, 1);
            assert!(tree.spans[0]
                .attributes
                .iter()
                .any(|a| a.key == "http.route"));

            // Tempo v1 JSON, v1 protobuf, v2 JSON.
            let tempo = agent.get(&format!("/api/traces/{}", to_hex(&trace))).await;
            assert_eq!(tempo.status, 200);
            let batches = tempo.json["batches"].as_array().unwrap();
            assert_eq!(batches.len(), 3);
            assert_eq!(
                batches[0]["scopeSpans"][0]["spans"][0]["traceId"],
                json!(to_hex(&trace))
            );
            let proto = agent
                .http()
                .get(agent.url(&format!("/api/traces/{}", to_hex(&trace))))
                .header("accept", "application/protobuf")
                .send()
                .await
                .unwrap();
            assert_eq!(proto.status(), 200);
            let decoded = ExportTraceServiceRequest::decode(proto.bytes().await.unwrap()).unwrap();
            let mut sent: Vec<Span> = request
                .resource_spans
                .iter()
                .flat_map(|r| r.scope_spans[0].spans.clone())
                .collect();
            let mut got: Vec<Span> = decoded
                .resource_spans
                .iter()
                .flat_map(|r| r.scope_spans[0].spans.clone())
                .collect();
            sent.sort_by(|a, b| a.span_id.cmp(&b.span_id));
            got.sort_by(|a, b| a.span_id.cmp(&b.span_id));
            assert_eq!(got, sent, "every field of every span survives");
            let v2 = agent
                .get(&format!("/api/v2/traces/{}", to_hex(&trace)))
                .await;
            assert_eq!(
                v2.json["trace"]["resourceSpans"].as_array().unwrap().len(),
                3
            );
        }
        server.shutdown().await;
    }
);

both_backends!(
    bad_input_gets_4xx_and_nothing_breaks,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| {
            c.traces_max_buffered_spans = 10;
            c.traces_self_sample_rate = 0.0;
        })
        .await;
        let agent = Client::new(&server);

        let garbage = post_otlp(
            &agent,
            b"\xff\xff\xff\xff".to_vec(),
            "application/x-protobuf",
            None,
        )
        .await;
        assert_eq!(garbage.status(), 400);
        let body: Value = garbage.json().await.unwrap();
        assert_eq!(body["code"], "invalid_otlp");
        let bad_json = post_otlp(
            &agent,
            b"{\"resourceSpans\": 5}".to_vec(),
            "application/json",
            None,
        )
        .await;
        assert_eq!(bad_json.status(), 400);
        let bad_gzip = post_otlp(
            &agent,
            b"not gzip".to_vec(),
            "application/json",
            Some("gzip"),
        )
        .await;
        assert_eq!(bad_gzip.status(), 400);
        let text = post_otlp(&agent, b"hello".to_vec(), "text/plain", None).await;
        assert_eq!(text.status(), 415);
        let brotli = post_otlp(&agent, b"x".to_vec(), "application/json", Some("br")).await;
        assert_eq!(brotli.status(), 415);

        // Over 20 MiB: refused, whether sent plain or as a small gzip bomb.
        let huge = vec![b' '; 21 * 1024 * 1024];
        let too_big = post_otlp(&agent, huge.clone(), "application/json", None).await;
        assert_eq!(too_big.status(), 413);
        let bomb = post_otlp(&agent, gzip(&huge), "application/json", Some("gzip")).await;
        assert_eq!(bomb.status(), 413);

        // Spans with broken ids: partial success, the rest stored.
        let mut request = checkout_trace([9; 16]);
        request.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2];
        let partial = post_otlp(
            &agent,
            serde_json::to_vec(&request).unwrap(),
            "application/json",
            None,
        )
        .await;
        assert_eq!(partial.status(), 200);
        let body: Value = partial.json().await.unwrap();
        assert_eq!(body["partialSuccess"]["rejectedSpans"], 1);

        // A full buffer: 429 with Retry-After, at once.
        let many: Vec<Span> = (1..=20)
            .map(|i| span([8; 16], i, 0, now_ns(), 1, "x"))
            .collect();
        let full = post_otlp(
            &agent,
            export(vec![("api", many)]).encode_to_vec(),
            "application/x-protobuf",
            None,
        )
        .await;
        assert_eq!(full.status(), 429);
        assert!(full.headers().get("retry-after").is_some());

        // Zipkin garbage.
        let zipkin = agent
            .post_json("/api/v2/spans", &json!({"not": "a list"}))
            .await;
        zipkin.assert_error(400, "invalid_zipkin");

        // Reading needs an account; bad ids are 400, unknown ones 404.
        agent
            .get(&format!("/api/tracing/traces/{}", to_hex(&[9; 16])))
            .await
            .assert_error(401, "sign_in_required");
        let reader = viewer(&server).await;
        reader
            .get("/api/tracing/traces/not-hex")
            .await
            .assert_error(400, "invalid_trace_id");
        reader
            .get(&format!("/api/tracing/traces/{}", "ab".repeat(16)))
            .await
            .assert_error(404, "not_found");
        agent
            .get("/api/traces/zz")
            .await
            .assert_error(400, "invalid_trace_id");
        reader
            .get("/api/tracing/search?limit=0")
            .await
            .assert_error(400, "invalid_limit");
        reader
            .get("/api/tracing/search?tags=novalue")
            .await
            .assert_error(400, "invalid_tags");
        agent
            .get("/api/search?minDuration=fast")
            .await
            .assert_error(400, "invalid_duration");

        // Still serving: the two good spans of the partial export are there.
        let tree: TraceTree = reader
            .get(&format!("/api/tracing/traces/{}", to_hex(&[9; 16])))
            .await
            .expect(200);
        assert_eq!(tree.spans.len(), 2);
        assert_eq!(tree.orphan_count, 2, "their parent was the refused span");
        server.shutdown().await;
    }
);

both_backends!(
    search_services_dependencies_and_tempo_search,
    |db: TestDatabase| async move {
        // Without the server's own spans, so that the services are exactly the sent ones.
        let server = TestServer::start_with(&db, |c| c.traces_self_sample_rate = 0.0).await;
        let agent = Client::new(&server);
        for n in 1..=3u8 {
            let response = post_otlp(
                &agent,
                checkout_trace([n; 16]).encode_to_vec(),
                "application/x-protobuf",
                None,
            )
            .await;
            assert_eq!(response.status(), 200);
        }
        let quick = export(vec![(
            "web",
            vec![span([7; 16], 1, 0, now_ns(), 1_000, "GET /")],
        )]);
        post_otlp(
            &agent,
            quick.encode_to_vec(),
            "application/x-protobuf",
            None,
        )
        .await;
        let zipkin = agent
            .post_json(
                "/api/v2/spans",
                &json!([{"traceId": "00000000000000aa", "id": "00000000000000bb", "name": "legacy",
                     "timestamp": now_ns() / 1000, "duration": 5, "kind": "SERVER",
                     "localEndpoint": {"serviceName": "zipkin-svc"}}]),
            )
            .await;
        assert_eq!(zipkin.status, 202);
        // Half of them sealed into blocks, the rest in memory: search sees both.
        server.state.traces.store.flush().await.unwrap();
        let extra = checkout_trace([4; 16]);
        post_otlp(
            &agent,
            extra.encode_to_vec(),
            "application/x-protobuf",
            None,
        )
        .await;

        let reader = viewer(&server).await;
        let found: TraceSearchResponse = reader
            .get("/api/tracing/search?service=db&status=error")
            .await
            .expect(200);
        assert_eq!(found.traces.len(), 4);
        assert!(found
            .traces
            .iter()
            .all(|t| t.root_service == "api" && t.span_count == 3));
        let slow: TraceSearchResponse = reader
            .get("/api/tracing/search?min_duration_us=50000")
            .await
            .expect(200);
        assert_eq!(slow.traces.len(), 4, "the 100 ms roots");
        let tagged: TraceSearchResponse = reader
            .get("/api/tracing/search?tags=db.system%3Dpostgresql&limit=2")
            .await
            .expect(200);
        assert_eq!(tagged.traces.len(), 2);
        let services: TracedServicesResponse =
            reader.get("/api/tracing/services").await.expect(200);
        let names: Vec<&str> = services.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "auth", "db", "web", "zipkin-svc"]);
        let deps: ServiceDependenciesResponse =
            reader.get("/api/tracing/dependencies").await.expect(200);
        let api_db = deps
            .dependencies
            .iter()
            .find(|d| d.parent == "api" && d.child == "db")
            .unwrap();
        assert_eq!((api_db.call_count, api_db.error_count), (4, 4));

        // Tempo's search, tags and echo.
        let tempo = agent.get("/api/search?tags=service.name%3Dweb").await;
        assert_eq!(tempo.status, 200);
        assert_eq!(tempo.json["traces"][0]["traceID"], json!(to_hex(&[7; 16])));
        assert_eq!(tempo.json["traces"][0]["rootServiceName"], "web");
        let long = agent.get("/api/search?minDuration=90ms&limit=10").await;
        assert_eq!(long.json["traces"].as_array().unwrap().len(), 4);
        let none = agent
            .get("/api/search?maxDuration=1us&tags=name%3D%22POST%20%2Fcheckout%22")
            .await;
        assert!(none.json["traces"].as_array().unwrap().is_empty());
        let tags = agent.get("/api/search/tags").await;
        assert!(tags.json["tagNames"]
            .as_array()
            .unwrap()
            .contains(&json!("db.system")));
        let values = agent.get("/api/search/tag/service.name/values").await;
        assert!(values.json["tagValues"]
            .as_array()
            .unwrap()
            .contains(&json!("zipkin-svc")));
        let echo = agent
            .http()
            .get(agent.url("/api/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(echo.text().await.unwrap(), "echo");
        let zipkin_trace = agent.get("/api/traces/aa").await;
        assert_eq!(zipkin_trace.status, 200, "a 64-bit Zipkin id, padded");
        server.shutdown().await;
    }
);

/// Tempo's `/api/search` with TraceQL in `q`, as Grafana's query builder sends it
/// (`spss`, spans per spanset, is accepted and has no effect: no `spanSets` are returned).
async fn traceql(client: &Client, q: &str) -> meridian_tests::client::Reply {
    let mut url = client.url("/api/search");
    url.query_pairs_mut()
        .append_pair("q", q)
        .append_pair("limit", "50")
        .append_pair("spss", "3");
    client.send(client.http().get(url)).await
}

/// The trace ids a TraceQL search found, sorted.
async fn traceql_ids(client: &Client, q: &str) -> Vec<String> {
    let reply = traceql(client, q).await;
    assert_eq!(reply.status, 200, "{q}: {}", reply.json);
    let mut ids: Vec<String> = reply.json["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

both_backends!(tempo_search_with_traceql, |db: TestDatabase| async move {
    let server = TestServer::start_with(&db, |c| c.traces_self_sample_rate = 0.0).await;
    let agent = Client::new(&server);
    for n in 1..=2u8 {
        let response = post_otlp(
            &agent,
            checkout_trace([n; 16]).encode_to_vec(),
            "application/x-protobuf",
            None,
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    // One checkout sealed into a block, the other and the quick trace in memory.
    server.state.traces.store.flush().await.unwrap();
    let mut quick_span = span([7; 16], 1, 0, now_ns(), 1_000, "GET /");
    quick_span.attributes.push(KeyValue {
        key: "http.status_code".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(200)),
        }),
        ..Default::default()
    });
    let quick = export(vec![("web", vec![quick_span])]);
    let response = post_otlp(
        &agent,
        quick.encode_to_vec(),
        "application/x-protobuf",
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let checkouts = vec![to_hex(&[1; 16]), to_hex(&[2; 16])];
    let web = vec![to_hex(&[7; 16])];
    let all = vec![to_hex(&[1; 16]), to_hex(&[2; 16]), to_hex(&[7; 16])];

    for (q, expected) in [
        ("{}", &all),
        ("{ } && { }", &all),
        (r#"{ resource.service.name = "web" }"#, &web),
        (r#"{ .service.name = "db" && status = error }"#, &checkouts),
        (
            r#"{ name = "POST /checkout" && duration > 90ms }"#,
            &checkouts,
        ),
        ("{ duration < 1ms }", &web),
        (r#"{ span.db.system = "postgresql" }"#, &checkouts),
        (r#"{ .http.status_code = 200 }"#, &web),
        (
            r#"{ resource.service.name = "api" && (span.http.route = "/checkout") } && {}"#,
            &checkouts,
        ),
    ] {
        assert_eq!(&traceql_ids(&agent, q).await, expected, "{q}");
    }
    for q in [
        r#"{ .service.name = "auth" && status = error }"#,
        r#"{ name = "verify" && duration > 50ms }"#,
        r#"{ span.http.route = "/nowhere" }"#,
        r#"{ name = "GET /" && name = "verify" }"#,
    ] {
        assert!(traceql_ids(&agent, q).await.is_empty(), "{q}");
    }

    for (q, code, needle) in [
        (r#"{ name =~ "GET.*" }"#, "traceql_unsupported", "`=~`"),
        ("{ } | count() > 1", "traceql_unsupported", "offset 4"),
        (
            r#"{ name = "a" || name = "b" }"#,
            "traceql_unsupported",
            "||",
        ),
        ("{ } >> { }", "traceql_unsupported", "structural"),
        (
            r#"{ name = "a" } && { name = "b" }"#,
            "traceql_unsupported",
            "spansets",
        ),
        ("{ kind = server }", "traceql_unsupported", "kind"),
        ("{ name = ", "invalid_traceql", "offset 9"),
        ("{ name = \"open }", "invalid_traceql", "unterminated"),
        ("\u{0}\u{ff}{{", "invalid_traceql", "offset 0"),
    ] {
        let reply = traceql(&agent, q).await;
        reply.assert_error(400, code);
        let message = reply.json["message"].as_str().unwrap();
        assert!(message.contains(needle), "{q}: {message}");
    }
    // Still serving.
    assert_eq!(traceql_ids(&agent, "{}").await, all);
    server.shutdown().await;
});

both_backends!(
    late_spans_orphans_and_a_100k_span_trace,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let agent = Client::new(&server);
        let reader = viewer(&server).await;

        // Late: the child arrives after the root was sealed into a block; a grandchild's
        // parent never arrives.
        let t = [0x42; 16];
        let t0 = now_ns();
        post_otlp(
            &agent,
            export(vec![("api", vec![span(t, 1, 0, t0, 1_000_000, "root")])]).encode_to_vec(),
            "application/x-protobuf",
            None,
        )
        .await;
        server.state.traces.store.flush().await.unwrap();
        post_otlp(
            &agent,
            export(vec![(
                "db",
                vec![
                    span(t, 2, 1, t0 + 10, 100, "late child"),
                    span(t, 9, 8, t0 + 20, 100, "orphan"),
                ],
            )])
            .encode_to_vec(),
            "application/x-protobuf",
            None,
        )
        .await;
        let tree: TraceTree = reader
            .get(&format!("/api/tracing/traces/{}", to_hex(&t)))
            .await
            .expect(200);
        assert_eq!(tree.spans.len(), 3);
        assert_eq!(tree.orphan_count, 1);
        assert_eq!(tree.spans[1].name, "late child");

        // 100,000 spans: a root with a fan-out of 1,000 calls, each with 99 children.
        let big = [0x77; 16];
        let mut spans = vec![span(big, 1, 0, t0, 10_000_000_000, "batch job")];
        let mut id = 2u64;
        for call in 0..1_000u64 {
            let call_id = id;
            spans.push(span(big, call_id, 1, t0 + call * 1_000, 5_000_000, "call"));
            id += 1;
            for _ in 0..99 {
                spans.push(span(
                    big,
                    id,
                    call_id,
                    t0 + call * 1_000 + 10,
                    1_000,
                    "step",
                ));
                id += 1;
            }
        }
        assert_eq!(spans.len(), 100_001, "a root, 1,000 calls, 99,000 steps");
        for chunk in spans.chunks(10_000) {
            let response = post_otlp(
                &agent,
                gzip(&export(vec![("worker", chunk.to_vec())]).encode_to_vec()),
                "application/x-protobuf",
                Some("gzip"),
            )
            .await;
            assert_eq!(response.status(), 200);
        }
        server.state.traces.store.flush().await.unwrap();
        // Unoptimised, the test build needs longer than the client's usual patience to
        // assemble and serialise 100,000 spans (the benchmark measures the release build).
        let response = reader
            .http()
            .get(reader.url(&format!("/api/tracing/traces/{}", to_hex(&big))))
            .timeout(std::time::Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let tree: TraceTree = response.json().await.unwrap();
        assert_eq!(tree.spans.len(), 100_001);
        assert_eq!(tree.orphan_count, 0);
        assert_eq!(tree.spans.iter().map(|s| s.depth).max(), Some(2));
        let proto = agent
            .http()
            .get(agent.url(&format!("/api/traces/{}", to_hex(&big))))
            .timeout(std::time::Duration::from_secs(120))
            .header("accept", "application/protobuf")
            .send()
            .await
            .unwrap();
        let decoded = ExportTraceServiceRequest::decode(proto.bytes().await.unwrap()).unwrap();
        assert_eq!(
            decoded.resource_spans[0].scope_spans[0].spans.len(),
            100_001
        );
        server.shutdown().await;
    }
);

both_backends!(
    a_stock_opentelemetry_exporter_sends_to_us,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let endpoint = server.url("/v1/traces");
        // The SDK's simple processor blocks on each export: run it on a blocking thread
        // (which still sees the runtime, as the async HTTP client needs).
        let trace_id = tokio::task::spawn_blocking(move || {
            use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
            use opentelemetry_otlp::{Protocol, WithExportConfig};
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .build()
                .expect("build the OTLP exporter");
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_simple_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("otel-sdk-test")
                        .build(),
                )
                .build();
            let tracer = provider.tracer("meridian-tests");
            let trace_id = tracer.in_span("parent", |cx| {
                tracer.in_span("child", |_| {});
                tracer.in_span("second child", |_| {});
                cx.span().span_context().trace_id()
            });
            provider.force_flush().expect("flush");
            provider.shutdown().expect("shut down the provider");
            trace_id.to_string()
        })
        .await
        .unwrap();

        let reader = viewer(&server).await;
        let tree: TraceTree = reader
            .get(&format!("/api/tracing/traces/{trace_id}"))
            .await
            .expect(200);
        let names: Vec<&str> = tree.spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["parent", "child", "second child"]);
        assert_eq!(tree.root_service, "otel-sdk-test");
        assert_eq!(tree.orphan_count, 0);
        let tempo = reader.get(&format!("/api/traces/{trace_id}")).await;
        assert_eq!(
            tempo.json["batches"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        server.shutdown().await;
    }
);

both_backends!(
    kill_9_during_ingest_loses_nothing_acknowledged,
    |db: TestDatabase| async move {
        let mut first = ServerProcess::start(BIN, &db).await;
        let base = first.base_url();
        let acknowledged: Arc<Mutex<Vec<[u8; 16]>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        for sender in 0..4u64 {
            let base = base.clone();
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            senders.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut rng = rand::rngs::StdRng::seed_from_u64(sender);
                while !stop.load(Ordering::SeqCst) {
                    let trace: [u8; 16] = rng.random();
                    let spans = (1..=50)
                        .map(|i| span(trace, i, i - 1, now_ns(), 1_000, "op"))
                        .collect();
                    let body = export(vec![("svc", spans)]).encode_to_vec();
                    let sent = http
                        .post(format!("{base}/v1/traces"))
                        .header("content-type", "application/x-protobuf")
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => acknowledged.lock().unwrap().push(trace),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }));
        }
        // Kill once a good number of exports have been acknowledged, mid-stream.
        meridian_tests::server::eventually("200 acknowledged exports", || {
            acknowledged.lock().unwrap().len() >= 200
        })
        .await;
        let status = first.kill_9().await;
        assert!(!status.success());
        stop.store(true, Ordering::SeqCst);
        for sender in senders {
            sender.await.unwrap();
        }
        let acknowledged = acknowledged.lock().unwrap().clone();

        let second = ServerProcess::start(BIN, &db).await;
        let agent = Client::at(&second.base_url());
        for trace in &acknowledged {
            let reply = agent
                .http()
                .get(agent.url(&format!("/api/traces/{}", to_hex(trace))))
                .header("accept", "application/protobuf")
                .send()
                .await
                .unwrap();
            assert_eq!(
                reply.status(),
                200,
                "trace {} was acknowledged",
                to_hex(trace)
            );
            let decoded = ExportTraceServiceRequest::decode(reply.bytes().await.unwrap()).unwrap();
            let spans: usize = decoded
                .resource_spans
                .iter()
                .map(|r| r.scope_spans[0].spans.len())
                .sum();
            assert_eq!(spans, 50, "every span of trace {} once", to_hex(trace));
        }
    }
);

both_backends!(
    the_server_traces_its_own_requests,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let reader = viewer(&server).await;
        // A caller's span, as a browser would send it.
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let reply = reader
            .send(
                reader
                    .http()
                    .get(reader.url("/api/tracing/services"))
                    .header("traceparent", traceparent),
            )
            .await;
        assert_eq!(reply.status, 200);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let tree = loop {
            let reply = reader
                .get("/api/tracing/traces/0af7651916cd43dd8448eb211c80319c")
                .await;
            if reply.status == 200 {
                break reply.parse::<TraceTree>();
            }
            assert!(std::time::Instant::now() < deadline, "the request's span");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(tree.spans.len(), 1);
        let span = &tree.spans[0];
        assert_eq!(span.service, "meridian");
        assert_eq!(span.name, "GET /api/tracing/services");
        assert_eq!(span.parent_span_id, "b7ad6b7169203331");
        assert!(span.orphan, "the caller's own span was never sent");
        // Ingest is never traced, and a sample rate of 0 records nothing.
        let tracer = &server.state.traces.self_tracer;
        assert!(tracer.recorded.load(Ordering::SeqCst) >= 1);
        assert_eq!(tracer.dropped.load(Ordering::SeqCst), 0);
        server.shutdown().await;
        let quiet = TestServer::start_with(&db, |c| c.traces_self_sample_rate = 0.0).await;
        let client = Client::new(&quiet);
        client.get("/api/health").await;
        assert_eq!(
            quiet
                .state
                .traces
                .self_tracer
                .recorded
                .load(Ordering::SeqCst),
            0
        );
        quiet.shutdown().await;
    }
);
