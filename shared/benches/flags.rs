//! Flag evaluations per second on one core: a boolean flag with five rules of mixed
//! operators and a percentage rollout as its default serve (the context matches no rule,
//! so every clause runs and then the rollout hashes), and the bucket hash alone.
//! `cargo bench -p meridian-shared --bench flags`.
//!
//! Two context sets: 16 contexts in turn (`hot`: what a request sees, its context just
//! parsed and in cache, evaluated against each flag), and 4,096 in turn (`cold`: each
//! context's map nodes and strings come from memory, so this measures cache misses more
//! than evaluation). Criterion prints `thrpt` in elements (evaluations) per second; plain
//! timed loops at the end print the same figures as one line each.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use meridian_shared::flags::{
    bucket, CompiledFlag, EvaluationContext, FlagConfig, Reason, Segment, Segments,
};
use serde_json::json;

/// Contexts evaluated in turn, so that the bucket hash sees different keys: few enough
/// to stay in cache, and many enough not to.
const HOT_CONTEXTS: usize = 16;
const COLD_CONTEXTS: usize = 4096;

fn five_rule_flag() -> (CompiledFlag, Vec<EvaluationContext>) {
    let countries: Vec<String> = (0..30).map(|i| format!("C{i}")).collect();
    let config: FlagConfig = serde_json::from_value(json!({
        "key": "new-checkout",
        "kind": "boolean",
        "variations": [{"name": "on", "value": true}, {"name": "off", "value": false}],
        "enabled": true,
        "off_variation": "off",
        "rules": [
            {"clauses": [{"attribute": "email", "operator": "ends_with",
                          "values": ["@meridian.dev"], "case_insensitive": true}],
             "serve": {"variation": "on"}},
            {"clauses": [{"attribute": "country", "operator": "in", "values": countries}],
             "serve": {"variation": "on"}},
            {"clauses": [{"attribute": "app_version", "operator": "semver_lt", "values": ["2.0.0-rc.1"]}],
             "serve": {"variation": "off"}},
            {"clauses": [{"attribute": "plan", "operator": "equals", "values": ["enterprise"]},
                         {"attribute": "age", "operator": "gte", "values": [65]}],
             "serve": {"variation": "on"}},
            {"clauses": [{"operator": "in_segment", "values": ["beta-testers"]}],
             "serve": {"variation": "on"}},
        ],
        "default_serve": {"rollout": {"variations": [
            {"variation": "on", "weight": 30}, {"variation": "off", "weight": 70}]}},
    }))
    .expect("a flag");
    let segments: Segments = [serde_json::from_value::<Segment>(json!({
        "key": "beta-testers",
        "included": ["alice", "bob"],
        "rules": [{"clauses": [{"attribute": "beta", "operator": "equals", "values": [true]}]}],
    }))
    .expect("a segment")]
    .into_iter()
    .collect();
    let flag = CompiledFlag::compile(&config, &segments).expect("a valid flag");
    let contexts: Vec<EvaluationContext> = (0..COLD_CONTEXTS)
        .map(|i| {
            EvaluationContext::new(format!("user-{i:08}"))
                .with("email", format!("user{i}@example.com"))
                .with("country", "US")
                .with("app_version", "2.3.1")
                .with("plan", "pro")
                .with("age", 30 + (i % 40) as i64)
        })
        .collect();
    for context in &contexts {
        let answer = flag.evaluate(context);
        assert_eq!(
            answer.reason,
            Reason::Split,
            "the bench must reach the rollout"
        );
    }
    (flag, contexts)
}

fn bench(criterion: &mut Criterion, flag: &CompiledFlag, contexts: &[EvaluationContext]) {
    let mut group = criterion.benchmark_group("flags");
    group.throughput(Throughput::Elements(1));
    for (name, count) in [("hot", HOT_CONTEXTS), ("cold", COLD_CONTEXTS)] {
        let contexts = &contexts[..count];
        let mut next = 0usize;
        group.bench_function(format!("evaluate_5_rules_and_rollout/{name}"), |b| {
            b.iter(|| {
                // A branch, not `%`: a division would cost as much as a clause.
                next += 1;
                if next == count {
                    next = 0;
                }
                black_box(flag.evaluate(black_box(&contexts[next])))
            })
        });
    }
    let keys: Vec<String> = (0..HOT_CONTEXTS).map(|i| format!("user-{i:08}")).collect();
    let mut next = 0usize;
    group.bench_function("bucket_murmur3", |b| {
        b.iter(|| {
            next = (next + 1) & (HOT_CONTEXTS - 1);
            black_box(bucket(black_box("new-checkout"), black_box(&keys[next])))
        })
    });
    group.finish();
}

/// Evaluations per second over a plain loop of about a second.
fn evaluations_per_second(flag: &CompiledFlag, contexts: &[EvaluationContext]) -> f64 {
    let start = Instant::now();
    let mut done = 0u64;
    let mut on = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for context in contexts {
            on += u64::from(flag.evaluate(black_box(context)).variant == "on");
        }
        done += contexts.len() as u64;
    }
    black_box(on);
    done as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let (flag, contexts) = five_rule_flag();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &flag, &contexts);
    criterion.final_summary();
    for (name, count) in [("hot", HOT_CONTEXTS), ("cold", COLD_CONTEXTS)] {
        let rate = evaluations_per_second(&flag, &contexts[..count]);
        println!(
            "flags: {:.1} million evaluations/second on one thread \
             (boolean flag, five rules + 30/70 rollout, {count} {name} contexts)",
            rate / 1e6
        );
    }
}
