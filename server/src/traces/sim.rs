//! The 50-service simulator behind `meridian trace-sim`: seeded traces with realistic
//! call graphs, exported as OTLP/HTTP protobuf to a server at a chosen rate.
//!
//! The topology is a layered call graph of `services` services (at least 50): a gateway
//! calls a few front services, each calls a few more, down to databases and queues. One
//! request walks all of it, so every trace crosses every service. Each call is a client
//! span in the caller and a server span in the callee (the callee's clock skewed by up to
//! ±2 ms, as real machines are), with: fan-out (children run concurrently), retries (a
//! failed attempt, then a successful one), errors (2% of calls; they propagate to the
//! caller's status), queues (a producer span, and a consumer span later in another
//! service, linked to it: follows-from), and async work (an internal span that outlives
//! its parent).
//!
//! [`generate_trace`] is pure (seeded RNG); [`run`] sends.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{
    status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::convert::string_attribute;

/// The call graph: `children[i]` are the services service `i` calls.
#[derive(Debug, Clone)]
pub struct Topology {
    pub names: Vec<String>,
    pub children: Vec<Vec<usize>>,
    /// Services reached through a queue rather than a call.
    pub queued: Vec<bool>,
}

impl Topology {
    /// A layered graph of `services` services: every service but the gateway has one
    /// caller in the layer above; fan-out 2 to 4.
    pub fn layered(services: usize, rng: &mut StdRng) -> Topology {
        let services = services.max(2);
        let mut names = vec!["gateway".to_owned()];
        let kinds = [
            "api", "svc", "worker", "cache", "db", "search", "auth", "billing",
        ];
        for i in 1..services {
            names.push(format!(
                "{}-{i:02}",
                kinds[rng.random_range(0..kinds.len())]
            ));
        }
        let mut children = vec![Vec::new(); services];
        let mut frontier = vec![0usize];
        let mut next = 1;
        while next < services {
            let mut layer = Vec::new();
            for &parent in &frontier {
                for _ in 0..rng.random_range(2..=4) {
                    if next < services {
                        children[parent].push(next);
                        layer.push(next);
                        next += 1;
                    }
                }
            }
            frontier = layer;
        }
        let queued = (0..services)
            .map(|i| i > 1 && rng.random_ratio(1, 8))
            .collect();
        Topology {
            names,
            children,
            queued,
        }
    }
}

/// One generated trace: spans with their services.
pub fn generate_trace(topology: &Topology, rng: &mut StdRng, start_ns: u64) -> Vec<(String, Span)> {
    let trace: [u8; 16] = rng.random();
    let mut out = Vec::new();
    let mut next_id = 1u64;
    let skews: Vec<i64> = (0..topology.names.len())
        .map(|_| rng.random_range(-2_000_000..=2_000_000))
        .collect();
    // (service, parent span id, start) of the server spans still to expand.
    let root = serve(
        topology,
        rng,
        &trace,
        &mut next_id,
        0,
        None,
        start_ns,
        &skews,
        &mut out,
    );
    let _ = root;
    out
}

fn new_span(
    trace: &[u8; 16],
    id: u64,
    parent: Option<u64>,
    name: String,
    kind: SpanKind,
    start: u64,
    end: u64,
) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end.max(start),
        ..Default::default()
    }
}

fn error_status(message: &str) -> Option<Status> {
    Some(Status {
        message: message.to_owned(),
        code: StatusCode::Error as i32,
    })
}

/// The server span of `service` handling a request at `start` (its own clock), with
/// everything below it. Returns (end, failed).
#[allow(clippy::too_many_arguments)]
fn serve(
    topology: &Topology,
    rng: &mut StdRng,
    trace: &[u8; 16],
    next_id: &mut u64,
    service: usize,
    parent: Option<u64>,
    start: u64,
    skews: &[i64],
    out: &mut Vec<(String, Span)>,
) -> (u64, bool) {
    let id = *next_id;
    *next_id += 1;
    let name = &topology.names[service];
    let mut cursor = start + rng.random_range(50_000..500_000);
    let mut failed = false;
    // Children concurrently (fan-out): each starts a little after the previous one.
    let mut end = cursor;
    for &child in &topology.children[service] {
        let call_start = cursor + rng.random_range(10_000..200_000);
        cursor = call_start;
        if topology.queued[child] {
            // Producer now; the consumer runs later, linked (follows-from).
            let producer = *next_id;
            *next_id += 1;
            let p = new_span(
                trace,
                producer,
                Some(id),
                format!("publish {}", topology.names[child]),
                SpanKind::Producer,
                call_start,
                call_start + 100_000,
            );
            out.push((name.clone(), p));
            let consumer_start = shift(
                call_start + rng.random_range(1_000_000..50_000_000),
                skews[child],
            );
            let (_, _) = serve(
                topology,
                rng,
                trace,
                next_id,
                child,
                Some(producer),
                consumer_start,
                skews,
                out,
            );
            if let Some((_, last)) = out.iter_mut().rev().find(|(s, sp)| {
                *s == topology.names[child] && sp.parent_span_id == producer.to_be_bytes()
            }) {
                last.kind = SpanKind::Consumer as i32;
                last.links.push(Link {
                    trace_id: trace.to_vec(),
                    span_id: producer.to_be_bytes().to_vec(),
                    ..Default::default()
                });
            }
            continue;
        }
        let attempts = if rng.random_ratio(1, 20) { 2 } else { 1 };
        let mut attempt_start = call_start;
        for attempt in 0..attempts {
            let client = *next_id;
            *next_id += 1;
            let server_start = shift(attempt_start + 30_000, skews[child]);
            let (server_end, child_failed) = serve(
                topology,
                rng,
                trace,
                next_id,
                child,
                Some(client),
                server_start,
                skews,
                out,
            );
            let timed_out = attempts == 2 && attempt == 0;
            let client_end = unshift(server_end, skews[child]) + 30_000;
            let mut c = new_span(
                trace,
                client,
                Some(id),
                format!("call {}", topology.names[child]),
                SpanKind::Client,
                attempt_start,
                client_end,
            );
            c.attributes.push(string_attribute(
                "peer.service",
                topology.names[child].clone(),
            ));
            if attempt > 0 {
                c.attributes
                    .push(string_attribute("retry.attempt", attempt.to_string()));
            }
            if timed_out {
                c.status = error_status("timeout, retrying");
            } else if child_failed {
                c.status = error_status("downstream error");
                failed = true;
            }
            out.push((name.clone(), c));
            end = end.max(client_end);
            attempt_start = client_end + 50_000;
        }
    }
    // Async work that outlives the request.
    if rng.random_ratio(1, 10) {
        let a = *next_id;
        *next_id += 1;
        let s = new_span(
            trace,
            a,
            Some(id),
            "async flush".into(),
            SpanKind::Internal,
            end,
            end + rng.random_range(5_000_000..30_000_000),
        );
        out.push((name.clone(), s));
    }
    if rng.random_ratio(1, 50) {
        failed = true;
    }
    let server_end = end + rng.random_range(50_000..300_000);
    let mut span = new_span(
        trace,
        id,
        parent,
        format!("handle {name}"),
        SpanKind::Server,
        start,
        server_end,
    );
    span.attributes
        .push(string_attribute("http.route", format!("/{name}")));
    if failed {
        span.status = error_status("request failed");
    }
    out.push((name.clone(), span));
    (server_end, failed)
}

fn shift(t: u64, skew: i64) -> u64 {
    (t as i64 + skew).max(0) as u64
}

fn unshift(t: u64, skew: i64) -> u64 {
    (t as i64 - skew).max(0) as u64
}

/// Groups spans into an export request, one resource per service.
pub fn to_export(spans: Vec<(String, Span)>) -> ExportTraceServiceRequest {
    let mut by_service: std::collections::BTreeMap<String, Vec<Span>> = Default::default();
    for (service, span) in spans {
        by_service.entry(service).or_default().push(span);
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_attribute("service.name", service)],
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

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `host:port` of the server.
    pub addr: String,
    pub services: usize,
    /// Traces per second.
    pub rate: f64,
    pub seconds: u64,
    pub seed: u64,
}

/// What a run sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimReport {
    pub traces: u64,
    pub spans: u64,
    pub refused: u64,
    pub failed: u64,
}

async fn post(addr: &str, body: &[u8]) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(status)
}

/// Sends `rate` traces a second for `seconds`.
pub async fn run(config: &SimConfig) -> SimReport {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let topology = Topology::layered(config.services, &mut rng);
    let mut report = SimReport::default();
    let every = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    while started.elapsed() < Duration::from_secs(config.seconds) {
        tick.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let spans = generate_trace(&topology, &mut rng, now);
        let n = spans.len() as u64;
        let body = to_export(spans).encode_to_vec();
        match post(&config.addr, &body).await {
            Ok(200) => {
                report.traces += 1;
                report.spans += n;
            }
            Ok(429) => report.refused += 1,
            _ => report.failed += 1,
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn a_trace_crosses_every_service_with_retries_queues_and_errors() {
        let mut rng = StdRng::seed_from_u64(7);
        let topology = Topology::layered(60, &mut rng);
        let mut saw = (false, false, false);
        for _ in 0..20 {
            let spans = generate_trace(&topology, &mut rng, 1_000_000_000);
            let services: HashSet<&str> = spans.iter().map(|(s, _)| s.as_str()).collect();
            assert_eq!(services.len(), 60, "every service in every trace");
            let ids: HashMap<Vec<u8>, &Span> =
                spans.iter().map(|(_, s)| (s.span_id.clone(), s)).collect();
            assert_eq!(ids.len(), spans.len(), "span ids are unique");
            let roots = spans
                .iter()
                .filter(|(_, s)| s.parent_span_id.is_empty())
                .count();
            assert_eq!(roots, 1);
            for (_, s) in &spans {
                assert!(s.parent_span_id.is_empty() || ids.contains_key(&s.parent_span_id));
                assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
            }
            saw.0 |= spans
                .iter()
                .any(|(_, s)| s.attributes.iter().any(|a| a.key == "retry.attempt"));
            saw.1 |= spans.iter().any(|(_, s)| !s.links.is_empty());
            saw.2 |= spans.iter().any(|(_, s)| {
                s.status
                    .as_ref()
                    .is_some_and(|st| st.code == StatusCode::Error as i32)
            });
        }
        assert_eq!(
            saw,
            (true, true, true),
            "retries, follows-from links and errors"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_traces() {
        let gen = || {
            let mut rng = StdRng::seed_from_u64(3);
            let t = Topology::layered(50, &mut rng);
            generate_trace(&t, &mut rng, 0)
        };
        assert_eq!(gen(), gen());
    }
}
