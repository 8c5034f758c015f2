//! The grammar, field by field and operator by operator; refusals and their offsets;
//! random bytes and random token sequences never panic.

use proptest::prelude::*;

use super::*;

fn lowered(text: &str) -> (SpanQuery, Satisfiable) {
    let mut query = SpanQuery::default();
    let satisfiable = lower(&parse(text).unwrap(), &mut query).unwrap();
    (query, satisfiable)
}

fn refusal(text: &str) -> TraceqlError {
    let mut query = SpanQuery::default();
    parse(text)
        .and_then(|q| lower(&q, &mut query))
        .expect_err(text)
}

fn unsupported_at(text: &str) -> (usize, String) {
    match refusal(text) {
        TraceqlError::Unsupported { at, construct } => (at, construct),
        other => panic!("{text}: expected unsupported, got {other:?}"),
    }
}

fn invalid_at(text: &str) -> usize {
    match refusal(text) {
        TraceqlError::Invalid { at, .. } => at,
        other => panic!("{text}: expected invalid, got {other:?}"),
    }
}

#[test]
fn empty_spanset_matches_everything() {
    let (q, s) = lowered("{}");
    assert_eq!(s, Satisfiable::Yes);
    assert!(q.service.is_none() && q.attributes.is_empty() && q.error.is_none());
    assert_eq!(lowered(" { } && {}").1, Satisfiable::Yes);
}

#[test]
fn each_field() {
    assert_eq!(
        lowered(r#"{resource.service.name="api"}"#)
            .0
            .service
            .as_deref(),
        Some("api")
    );
    assert_eq!(
        lowered(r#"{.service.name = "db"}"#).0.service.as_deref(),
        Some("db")
    );
    assert_eq!(
        lowered(r#"{name = "GET /"}"#).0.operation.as_deref(),
        Some("GET /")
    );
    assert_eq!(
        lowered(r#"{span:name = "x"}"#).0.operation.as_deref(),
        Some("x")
    );
    assert_eq!(lowered("{status = error}").0.error, Some(true));
    assert_eq!(lowered("{status = ok}").0.error, Some(false));
    assert_eq!(lowered("{status = unset}").0.error, Some(false));
    assert_eq!(lowered("{status != error}").0.error, Some(false));
    assert_eq!(
        lowered("{duration >= 100ms}").0.min_duration_ns,
        Some(100_000_000)
    );
    assert_eq!(
        lowered(r#"{span.http.route = "/checkout"}"#).0.attributes,
        vec![("http.route".to_owned(), "/checkout".to_owned())]
    );
    assert_eq!(
        lowered(r#"{.db.system = "postgresql"}"#).0.attributes,
        vec![("db.system".to_owned(), "postgresql".to_owned())]
    );
    assert!(matches!(
        refusal("{kind = server}"),
        TraceqlError::Unsupported { at: 1, .. }
    ));
    let (at, construct) = unsupported_at(r#"{ resource.region = "eu" }"#);
    assert_eq!(at, 2);
    assert!(construct.contains("resource.region"), "{construct}");
}

#[test]
fn each_value_kind() {
    let attrs = |text: &str| lowered(text).0.attributes;
    assert_eq!(attrs("{.n = 500}")[0].1, "500");
    assert_eq!(attrs("{.n = -3}")[0].1, "-3");
    assert_eq!(attrs("{.ratio = 1.5}")[0].1, "1.5");
    assert_eq!(attrs("{.cached = true}")[0].1, "true");
    assert_eq!(attrs("{.cached = false}")[0].1, "false");
    assert_eq!(attrs(r#"{.q = "a \"b\" \\ c\n"}"#)[0].1, "a \"b\" \\ c\n");
    assert_eq!(attrs(r#"{.q = `raw \n`}"#)[0].1, r"raw \n");
    assert_eq!(attrs(r#"{.q = "é ✓"}"#)[0].1, "é ✓");
    assert_eq!(invalid_at(r#"{.q = "bad \x"}"#), 11);
    assert_eq!(invalid_at(r#"{.q = "open}"#), 6);
    assert_eq!(invalid_at("{.q = bare}"), 6);
    assert_eq!(invalid_at("{duration > -5ms}"), 12);
    assert_eq!(invalid_at("{duration > 5parsecs}"), 12);
}

#[test]
fn each_operator_on_duration() {
    let range = |text: &str| {
        let q = lowered(text).0;
        (q.min_duration_ns, q.max_duration_ns)
    };
    assert_eq!(
        range("{duration = 1s}"),
        (Some(1_000_000_000), Some(1_000_000_000))
    );
    assert_eq!(range("{duration > 1us}"), (Some(1_001), None));
    assert_eq!(range("{duration >= 1us}"), (Some(1_000), None));
    assert_eq!(range("{duration < 1us}"), (None, Some(999)));
    assert_eq!(range("{duration <= 1m30s}"), (None, Some(90_000_000_000)));
    assert_eq!(
        range("{duration > 10ms && duration > 5ms && duration < 1s}"),
        (Some(10_000_001), Some(999_999_999))
    );
    assert_eq!(lowered("{duration < 0}").1, Satisfiable::No);
    assert_eq!(
        lowered("{duration > 1s && duration < 1ms}").1,
        Satisfiable::No
    );
    let (at, construct) = unsupported_at("{duration != 1s}");
    assert_eq!(at, 1);
    assert!(construct.contains("`!=`"), "{construct}");
}

#[test]
fn operators_the_store_cannot_answer_are_named() {
    for (text, op) in [
        (r#"{name =~ "GET.*"}"#, "=~"),
        (r#"{.a !~ "x"}"#, "!~"),
        (r#"{name != "x"}"#, "!="),
        ("{.n > 5}", ">"),
        ("{.n <= 5}", "<="),
    ] {
        let (at, construct) = unsupported_at(text);
        assert_eq!(at, 1, "{text}");
        assert!(
            construct.contains(&format!("`{op}`")),
            "{text}: {construct}"
        );
    }
    assert!(unsupported_at("{status != ok}").1.contains("status != ok"));
}

#[test]
fn and_joins_conditions_and_parentheses_group_them() {
    let (q, _) =
        lowered(r#"{ .service.name = "api" && (status = error && (span.a = "1")) && span.b = 2 }"#);
    assert_eq!(q.service.as_deref(), Some("api"));
    assert_eq!(q.error, Some(true));
    assert_eq!(q.attributes.len(), 2);
    // Contradictions match nothing rather than the last one winning.
    assert_eq!(lowered(r#"{name = "a" && name = "b"}"#).1, Satisfiable::No);
    assert_eq!(lowered(r#"{name = "a" && name = "a"}"#).1, Satisfiable::Yes);
    assert_eq!(
        lowered("{status = error && status = ok}").1,
        Satisfiable::No
    );
}

#[test]
fn spansets_joined_by_and() {
    let (q, _) = lowered(r#"{name = "a"} && {} && {name = "a"}"#);
    assert_eq!(q.operation.as_deref(), Some("a"));
    let (at, construct) = unsupported_at(r#"{name = "a"} && {name = "b"}"#);
    assert_eq!(at, 16);
    assert!(construct.contains("spansets"), "{construct}");
}

#[test]
fn constructs_outside_the_subset_are_named_with_their_offset() {
    for (text, at, name) in [
        ("{} | count() > 2", 3, "pipeline"),
        (r#"{name = "a" || name = "b"}"#, 12, "||"),
        ("{} || {}", 3, "||"),
        ("{} >> {}", 3, "structural"),
        ("{} > {}", 3, "structural"),
        ("{} ~ {}", 3, "sibling"),
        ("{} !~ {}", 3, "structural"),
        ("{!(name = \"a\")}", 1, "negation"),
        ("({})", 0, "parentheses"),
        ("{trace:rootName = \"a\"}", 1, "intrinsic"),
        ("{.a = nil}", 6, "nil"),
    ] {
        let (got_at, construct) = unsupported_at(text);
        assert_eq!(got_at, at, "{text}: {construct}");
        assert!(construct.contains(name), "{text}: {construct}");
    }
}

#[test]
fn parse_errors_carry_their_offset() {
    for (text, at) in [
        ("", 0),
        ("{", 1),
        ("{name", 5),
        ("{name =", 7),
        (r#"{name = "a""#, 11),
        (r#"{name = "a" extra}"#, 12),
        ("{} {}", 3),
        ("name = 1", 0),
        ("{= 1}", 1),
        ("{name = = }", 8),
        ("{weird = 1}", 1),
        ("{.a = 1 & .b = 2}", 8),
        ("{.a = 1} #", 9),
        ("{()}", 2),
        ("{span. = 1}", 1),
    ] {
        assert_eq!(invalid_at(text), at, "{text}");
    }
    let deep = format!("{{{}.a = 1{}}}", "(".repeat(40), ")".repeat(40));
    assert!(matches!(refusal(&deep), TraceqlError::Invalid { .. }));
    let fine = format!("{{{}.a = 1{}}}", "(".repeat(10), ")".repeat(10));
    assert_eq!(lowered(&fine).0.attributes.len(), 1);
}

#[test]
fn refusals_become_400_with_their_code() {
    let invalid: ApiError = refusal("{").into();
    assert_eq!(
        (invalid.status.as_u16(), invalid.code),
        (400, "invalid_traceql")
    );
    assert!(invalid.message.contains("offset 1"), "{}", invalid.message);
    let unsupported: ApiError = refusal("{} | count() > 1").into();
    assert_eq!(unsupported.code, "traceql_unsupported");
    assert!(
        unsupported.message.contains("offset 3"),
        "{}",
        unsupported.message
    );
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "&&",
    "||",
    "|",
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "=~",
    "!~",
    ">>",
    "~",
    "!",
    "name",
    "status",
    "duration",
    "kind",
    ".a",
    "span.b",
    "resource.c",
    "resource.service.name",
    "\"s\"",
    "\"",
    "`",
    "5",
    "-1",
    "1.5",
    "100ms",
    "true",
    "error",
    "ok",
    "server",
    "nil",
    "&",
    "é",
    "\\",
];

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let text = String::from_utf8_lossy(&bytes);
        let mut query = SpanQuery::default();
        let _ = parse(&text).and_then(|q| lower(&q, &mut query));
    }

    #[test]
    fn random_token_sequences_never_panic(
        picks in proptest::collection::vec((0..TOKENS.len(), any::<bool>()), 0..24)
    ) {
        let text: String = picks
            .iter()
            .map(|&(i, space)| format!("{}{}", TOKENS[i], if space { " " } else { "" }))
            .collect();
        let mut query = SpanQuery::default();
        match parse(&text).and_then(|q| lower(&q, &mut query)) {
            Err(TraceqlError::Invalid { at, .. } | TraceqlError::Unsupported { at, .. }) => {
                prop_assert!(at <= text.len(), "{text}: offset {at}");
            }
            Ok(_) => {}
        }
    }
}
