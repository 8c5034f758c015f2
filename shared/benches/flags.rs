//! Flag evaluations per second on one core, ours against Unleash's own Rust engine
//! (`unleash-yggdrasil`) in the same run: a boolean flag with five rules of mixed
//! operators and a percentage rollout as its default serve (the contexts match no rule,
//! so every clause runs and then the rollout hashes), and the bucket hash alone.
//! `cargo bench -p meridian-shared --bench flags`.
//!
//! Two context sets: 16 contexts in turn (`hot`: what a request sees, its context just
//! parsed and in cache, evaluated against each flag), and 4,096 in turn (`cold`: each
//! context's map nodes and strings come from memory, so this measures cache misses more
//! than evaluation). Ours runs three ways: `evaluate` on the context as parsed;
//! `evaluate_prepared` on the context prepared beforehand ([`PreparedContext`], as a
//! request evaluated against every flag prepares it once: the figure per flag of a
//! batch); and `prepare_and_evaluate`, the preparation paid by one flag alone. Criterion
//! prints `thrpt` in elements (evaluations) per second; plain timed loops at the end
//! print the same figures as one line each, ours and the peer's, per second of the
//! thread's CPU time (which other work on the machine does not dilute) and of wall-clock
//! time.
//!
//! The peer gets the same flag as an Unleash client features document (see
//! [`unleash_features`]: a rule that serves `off` becomes an inverted constraint on the
//! strategies after it, the segment becomes two Unleash segments, the rollout a
//! `flexibleRollout` with the flag's key as its group) and the same contexts (the
//! targeting key as `userId`, the attributes as `properties`). Unleash buckets as we do
//! (MurmurHash3 of `"{group}:{userId}"`, `% 100 + 1`), so the two engines must agree on
//! every context: the set-up checks that before anything is timed, on the bench's
//! contexts and on one context for each rule.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use meridian_shared::flags::{
    bucket, CompiledFlag, EvaluationContext, FlagConfig, PreparedContext, Reason, Segment, Segments,
};
use serde_json::{json, Value};
use unleash_yggdrasil::{ClientFeatures, Context, EngineState};

/// Contexts evaluated in turn, so that the bucket hash sees different keys: few enough
/// to stay in cache, and many enough not to.
const HOT_CONTEXTS: usize = 16;
const COLD_CONTEXTS: usize = 4096;
const FLAG_KEY: &str = "new-checkout";

fn countries() -> Vec<String> {
    (0..30).map(|i| format!("C{i}")).collect()
}

fn five_rule_flag() -> CompiledFlag {
    let config: FlagConfig = serde_json::from_value(json!({
        "key": FLAG_KEY,
        "kind": "boolean",
        "variations": [{"name": "on", "value": true}, {"name": "off", "value": false}],
        "enabled": true,
        "off_variation": "off",
        "rules": [
            {"clauses": [{"attribute": "email", "operator": "ends_with",
                          "values": ["@meridian.dev"], "case_insensitive": true}],
             "serve": {"variation": "on"}},
            {"clauses": [{"attribute": "country", "operator": "in", "values": countries()}],
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
    CompiledFlag::compile(&config, &segments).expect("a valid flag")
}

/// The same flag as an Unleash client features document. Unleash enables a flag when any
/// strategy matches, so rule 2 (which serves `off`) becomes the inverted constraint
/// `not_older` on every strategy after it; an inverted constraint holds when the
/// attribute is missing or not a version, as our clause then fails and evaluation goes
/// on to the next rule.
fn unleash_features() -> ClientFeatures {
    let not_older = json!({"contextName": "app_version", "operator": "SEMVER_LT",
                           "value": "2.0.0-rc.1", "inverted": true});
    let strategy = |constraints: Value, segments: Value| json!({"name": "default", "constraints": constraints, "segments": segments, "parameters": {}});
    serde_json::from_value(json!({
        "version": 2,
        "features": [{
            "name": FLAG_KEY,
            "type": "release",
            "enabled": true,
            "strategies": [
                strategy(json!([{"contextName": "email", "operator": "STR_ENDS_WITH",
                                 "values": ["@meridian.dev"], "caseInsensitive": true}]), json!([])),
                strategy(json!([{"contextName": "country", "operator": "IN",
                                 "values": countries()}]), json!([])),
                strategy(json!([not_older,
                                {"contextName": "plan", "operator": "IN", "values": ["enterprise"]},
                                {"contextName": "age", "operator": "NUM_GTE", "value": "65"}]), json!([])),
                // The segment `beta-testers`: its `included` keys, or its rule.
                strategy(json!([not_older]), json!([1])),
                strategy(json!([not_older]), json!([2])),
                {"name": "flexibleRollout", "constraints": [not_older], "segments": [],
                 "parameters": {"rollout": "30", "stickiness": "default", "groupId": FLAG_KEY}},
            ],
        }],
        "segments": [
            {"id": 1, "constraints": [{"contextName": "userId", "operator": "IN", "values": ["alice", "bob"]}]},
            {"id": 2, "constraints": [{"contextName": "beta", "operator": "IN", "values": ["true"]}]},
        ],
    }))
    .expect("Unleash client features")
}

/// An Unleash context for ours: the targeting key as `userId`, the attributes as
/// `properties` (Unleash's are strings).
fn unleash_context(context: &EvaluationContext) -> Context {
    let properties: HashMap<String, String> = context
        .attributes
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect();
    Context {
        user_id: context.targeting_key.clone(),
        properties: Some(properties),
        ..Context::default()
    }
}

fn bench_contexts() -> Vec<EvaluationContext> {
    (0..COLD_CONTEXTS)
        .map(|i| {
            EvaluationContext::new(format!("user-{i:08}"))
                .with("email", format!("user{i}@example.com"))
                .with("country", "US")
                .with("app_version", "2.3.1")
                .with("plan", "pro")
                .with("age", 30 + (i % 40) as i64)
        })
        .collect()
}

/// Checks that the bench reaches the rollout, and that both engines answer alike, on the
/// bench's contexts and on contexts that each rule decides.
fn check_parity(flag: &CompiledFlag, engine: &EngineState, contexts: &[EvaluationContext]) {
    for context in contexts {
        let ours = flag.evaluate(context);
        assert_eq!(
            ours.reason,
            Reason::Split,
            "the bench must reach the rollout"
        );
        assert_eq!(flag.evaluate_prepared(&PreparedContext::new(context)), ours);
        let theirs = engine.is_enabled(FLAG_KEY, &unleash_context(context), &None);
        assert_eq!(ours.variant == "on", theirs, "{context:?}");
    }
    let base = &contexts[0];
    let decided = [
        (base.clone().with("email", "Ann@Meridian.DEV"), Some(0)),
        (base.clone().with("country", "C17"), Some(1)),
        (base.clone().with("app_version", "1.9.9"), Some(2)),
        (
            base.clone()
                .with("app_version", "2.0.0-beta")
                .with("country", "C1"),
            Some(1),
        ),
        (
            base.clone().with("plan", "enterprise").with("age", 70),
            Some(3),
        ),
        (
            base.clone().with("plan", "enterprise").with("age", 64),
            None,
        ),
        (
            EvaluationContext {
                targeting_key: Some("alice".into()),
                ..base.clone()
            },
            Some(4),
        ),
        (base.clone().with("beta", true), Some(4)),
        (
            base.clone().with("beta", true).with("app_version", "0.1.0"),
            Some(2),
        ),
        (base.clone().with("app_version", "not a version"), None),
    ];
    for (context, rule) in &decided {
        let ours = flag.evaluate(context);
        assert_eq!(ours.rule_index, *rule, "{context:?}");
        let theirs = engine.is_enabled(FLAG_KEY, &unleash_context(context), &None);
        assert_eq!(ours.variant == "on", theirs, "{context:?}");
    }
}

fn bench(
    criterion: &mut Criterion,
    flag: &CompiledFlag,
    contexts: &[EvaluationContext],
    prepared: &[PreparedContext<'_>],
    engine: &EngineState,
    unleash_contexts: &[Context],
) {
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
        let prepared = &prepared[..count];
        let mut next = 0usize;
        group.bench_function(format!("evaluate_prepared/{name}"), |b| {
            b.iter(|| {
                next += 1;
                if next == count {
                    next = 0;
                }
                black_box(flag.evaluate_prepared(black_box(&prepared[next])))
            })
        });
        let mut next = 0usize;
        group.bench_function(format!("prepare_and_evaluate/{name}"), |b| {
            b.iter(|| {
                next += 1;
                if next == count {
                    next = 0;
                }
                let context = PreparedContext::new(black_box(&contexts[next]));
                black_box(flag.evaluate_prepared(&context).variant == "on")
            })
        });
        let unleash_contexts = &unleash_contexts[..count];
        let mut next = 0usize;
        group.bench_function(format!("unleash_yggdrasil_is_enabled/{name}"), |b| {
            b.iter(|| {
                next += 1;
                if next == count {
                    next = 0;
                }
                black_box(engine.is_enabled(
                    black_box(FLAG_KEY),
                    black_box(&unleash_contexts[next]),
                    &None,
                ))
            })
        });
    }
    let keys: Vec<String> = (0..HOT_CONTEXTS).map(|i| format!("user-{i:08}")).collect();
    let mut next = 0usize;
    group.bench_function("bucket_murmur3", |b| {
        b.iter(|| {
            next = (next + 1) & (HOT_CONTEXTS - 1);
            black_box(bucket(black_box(FLAG_KEY), black_box(&keys[next])))
        })
    });
    group.finish();
}

/// Evaluations per second of `evaluate` over `contexts`, in a plain loop of about a
/// second: per second of this thread's time on a CPU (Linux's schedstat; what the
/// evaluator costs, whatever else runs on the machine) and per second of wall-clock time.
fn per_second<C>(contexts: &[C], evaluate: impl Fn(&C) -> bool) -> Rates {
    let start = Instant::now();
    let cpu_start = thread_cpu_time();
    let mut done = 0u64;
    let mut on = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for context in contexts {
            on += u64::from(evaluate(black_box(context)));
        }
        done += contexts.len() as u64;
    }
    black_box(on);
    let wall = done as f64 / start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, thread_cpu_time()) {
        (Some(from), Some(to)) if to > from => done as f64 / (to - from).as_secs_f64(),
        _ => wall,
    };
    Rates { cpu, wall }
}

/// Evaluations per second of CPU time and of wall-clock time.
struct Rates {
    cpu: f64,
    wall: f64,
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} M ({:.2} M wall)", self.cpu / 1e6, self.wall / 1e6)
    }
}

/// This thread's time on a CPU so far (`/proc/thread-self/schedstat`, Linux); `None`
/// elsewhere.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn main() {
    let flag = five_rule_flag();
    let contexts = bench_contexts();
    let engine = EngineState::default();
    if let Some(warnings) = engine.take_state(unleash_yggdrasil::UpdateMessage::FullResponse(
        unleash_features(),
    )) {
        panic!("Unleash refused the features: {warnings:?}");
    }
    let unleash_contexts: Vec<Context> = contexts.iter().map(unleash_context).collect();
    let prepared: Vec<PreparedContext<'_>> = contexts.iter().map(PreparedContext::new).collect();
    check_parity(&flag, &engine, &contexts);

    let mut criterion = Criterion::default().configure_from_args();
    bench(
        &mut criterion,
        &flag,
        &contexts,
        &prepared,
        &engine,
        &unleash_contexts,
    );
    criterion.final_summary();
    for (name, count) in [("hot", HOT_CONTEXTS), ("cold", COLD_CONTEXTS)] {
        let ours = per_second(&contexts[..count], |context| {
            flag.evaluate(context).variant == "on"
        });
        let batch = per_second(&prepared[..count], |context| {
            flag.evaluate_prepared(context).variant == "on"
        });
        let theirs = per_second(&unleash_contexts[..count], |context| {
            engine.is_enabled(FLAG_KEY, context, &None)
        });
        println!(
            "flags, {count} {name} contexts (boolean flag, five rules + 30/70 rollout), \
             evaluations per second of one thread's CPU time (and of wall-clock time): \
             ours {ours}, with the context prepared for a batch {batch}, unleash-yggdrasil \
             {theirs}; ours/unleash {:.1}x, batch/unleash {:.1}x",
            ours.cpu / theirs.cpu,
            batch.cpu / theirs.cpu
        );
    }
}
