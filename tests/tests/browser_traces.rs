//! The tracing page in a real browser: a search finds the traces an OpenTelemetry
//! exporter sent, a click opens one, and a 10,001-span trace's waterfall is virtualised
//! (only the viewport's rows exist), scrolls to its last span, collapses, and shows a
//! span's attributes. The click on Search is itself a trace: the browser's client span
//! and the server's span of that request, opened in the waterfall.

use meridian_shared::traces::{to_hex, TraceSearchResponse};
use meridian_tests::browser::{start_web_server, testid, Browser};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::json;

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![attr("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_opens_a_virtualised_waterfall() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let agent = Client::new(&server);
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // A root in "gateway" with 10,000 children in "worker".
    let trace = [0x5a; 16];
    let mut root = Span {
        trace_id: trace.to_vec(),
        span_id: 1u64.to_be_bytes().to_vec(),
        name: "GET /big".into(),
        start_time_unix_nano: t0,
        end_time_unix_nano: t0 + 2_000_000_000,
        ..Default::default()
    };
    root.attributes.push(attr("http.route", "/big"));
    let children: Vec<Span> = (2..=10_001u64)
        .map(|i| Span {
            trace_id: trace.to_vec(),
            span_id: i.to_be_bytes().to_vec(),
            parent_span_id: 1u64.to_be_bytes().to_vec(),
            name: format!("step {i}"),
            start_time_unix_nano: t0 + i * 100_000,
            end_time_unix_nano: t0 + i * 100_000 + 50_000,
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans("gateway", vec![root]),
            resource_spans("worker", children),
        ],
    };
    let response = agent
        .http()
        .post(agent.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let browser = Browser::start().await;
    browser
        .sign_up(&server, "tracer", "tracing-password-1")
        .await;
    browser.goto(&server.url("/tracing")).await;
    browser.wait_for(&testid("trace-search")).await;
    // The service list arrives from the server.
    browser
        .wait_for("[data-testid=search-service] option[value=gateway]")
        .await;
    browser.click(&testid("search-submit")).await;
    let result = format!(
        "[data-testid=trace-result][data-trace-id='{}'] a",
        to_hex(&trace)
    );
    browser.wait_for(&result).await;
    browser.click(&result).await;

    // The waterfall: all 10,001 spans known, a few dozen rendered.
    browser
        .wait_for_attr(&testid("waterfall"), "data-span-count", "10001")
        .await;
    browser
        .wait_until(
            "a virtualised waterfall",
            "const n = document.querySelectorAll('[data-testid=waterfall-row]').length;
             return n > 5 && n < 200;",
            vec![],
            "[data-testid=waterfall]",
        )
        .await;
    // Scrolled to the end, the last span's row exists (and the first one no longer).
    browser
        .wait_until(
            "the last span after scrolling to the end",
            "const box = document.querySelector('.tracing-waterfall');
             box.scrollTop = box.scrollHeight;
             box.dispatchEvent(new Event('scroll'));
             return document.querySelector(\"[data-span-id='0000000000002711']\") !== null
                 && document.querySelector(\"[data-span-id='0000000000000001']\") === null;",
            vec![],
            ".tracing-waterfall",
        )
        .await;
    // Back to the top: the root's details, then collapse it to one row.
    browser
        .wait_until(
            "the root again",
            "const box = document.querySelector('.tracing-waterfall');
             box.scrollTop = 0;
             box.dispatchEvent(new Event('scroll'));
             return document.querySelector(\"[data-span-id='0000000000000001']\") !== null;",
            vec![],
            ".tracing-waterfall",
        )
        .await;
    browser.click("[data-span-id='0000000000000001']").await;
    browser
        .wait_for_text_containing(&testid("span-details"), "/big")
        .await;
    browser
        .click("[data-span-id='0000000000000001'] .tracing-toggle")
        .await;
    browser
        .wait_until(
            "one row once the root is collapsed",
            "return document.querySelectorAll('[data-testid=waterfall-row]').length === 1;",
            vec![json!(null)],
            "[data-testid=waterfall]",
        )
        .await;

    // The click on Search was traced: the browser's span and the server's, one trace.
    let reader = browser.session_client(&server).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let clicked = loop {
        let found: TraceSearchResponse = reader
            .get("/api/tracing/search?service=meridian-web&operation=GET%20%2Fapi%2Ftracing%2Fsearch")
            .await
            .expect(200);
        if let Some(t) = found.traces.iter().find(|t| t.services.len() == 2) {
            break t.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the click's trace: {found:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(clicked.services, ["meridian", "meridian-web"]);
    assert_eq!(
        clicked.root_service, "meridian-web",
        "the browser's span is the root"
    );
    browser
        .goto(&server.url(&format!("/tracing/{}", clicked.trace_id)))
        .await;
    browser
        .wait_for_attr(&testid("waterfall"), "data-span-count", "2")
        .await;
    browser
        .wait_until(
            "the browser's and the server's span",
            "const s = [...document.querySelectorAll('.tracing-service')].map(e => e.textContent);
             return s.length === 2 && s[0] === 'meridian-web' && s[1] === 'meridian';",
            vec![],
            "[data-testid=waterfall]",
        )
        .await;
    browser.close().await;
    server.shutdown().await;
}
