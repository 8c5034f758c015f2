//! TraceQL, the subset Grafana's Tempo data source emits from its Search tab and query
//! builder, parsed and mapped onto the span store's `SpanQuery`.
//!
//! ```text
//! query     := spanset ( "&&" spanset )*
//! spanset   := "{" [ condition ( "&&" condition )* ] "}"
//! condition := field op value | "(" condition ( "&&" condition )* ")"
//! field     := resource.service.name | .service.name | name | status | kind | duration
//!            | span.<attr> | resource.<attr> | .<attr>   (also span:name, span:status, ...)
//! op        := = | != | > | >= | < | <= | =~ | !~
//! value     := "string" | `raw string` | number | true | false | 100ms | ok | error | unset
//!            | server | client | producer | consumer | internal | unspecified
//! ```
//!
//! Invariants: parsing and lowering never panic on any input (a property test feeds
//! random bytes and random token sequences); every refusal carries the byte offset of
//! what it refuses. Two kinds of refusal: `Invalid` (not TraceQL: `invalid_traceql`)
//! and `Unsupported` (TraceQL that this store cannot answer: `traceql_unsupported`,
//! naming the construct) — pipelines, `||`, structural operators, regexes, negations
//! other than `status != error`, order comparisons on anything but `duration`, span
//! kind, resource attributes other than `service.name`, and two spansets that are not
//! the same. The store keeps one error bit per span, so `status = ok` and
//! `status = unset` both mean "did not fail", as the tag search has it.

use std::fmt;

use super::store::SpanQuery;
use super::tempo::parse_go_duration;
use crate::error::ApiError;

/// How deep parentheses may nest inside a spanset.
const MAX_NESTING: usize = 32;

/// Why a TraceQL query is refused; `at` is a byte offset into the query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceqlError {
    #[error("invalid TraceQL at offset {at}: {message}")]
    Invalid { at: usize, message: String },
    #[error("TraceQL at offset {at}: {construct} is not supported")]
    Unsupported { at: usize, construct: String },
}

impl From<TraceqlError> for ApiError {
    fn from(e: TraceqlError) -> ApiError {
        let code = match e {
            TraceqlError::Invalid { .. } => "invalid_traceql",
            TraceqlError::Unsupported { .. } => "traceql_unsupported",
        };
        ApiError::bad_request(code, e.to_string())
    }
}

fn invalid(at: usize, message: impl Into<String>) -> TraceqlError {
    TraceqlError::Invalid {
        at,
        message: message.into(),
    }
}

fn unsupported(at: usize, construct: impl Into<String>) -> TraceqlError {
    TraceqlError::Unsupported {
        at,
        construct: construct.into(),
    }
}

/// A parsed query: spansets joined by `&&` (a trace must have a span matching each).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub spansets: Vec<Spanset>,
}

/// `{ ... }`: conditions that must all hold for one span. Empty matches every span.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanset {
    pub at: usize,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub at: usize,
    pub field: Field,
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    ServiceName,
    Name,
    Status,
    Kind,
    Duration,
    /// `span.<attr>`
    SpanAttribute(String),
    /// `resource.<attr>` (not `service.name`)
    ResourceAttribute(String),
    /// `.<attr>`: a span or resource attribute
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Regex,
    NotRegex,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusValue {
    Ok,
    Error,
    Unset,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds.
    Duration(u64),
    Status(StatusValue),
    /// `server`, `client`, ...
    Kind(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    OpenBrace,
    CloseBrace,
    OpenParen,
    CloseParen,
    And,
    Op(Op),
    Word(String),
    Value(Value),
    /// A TraceQL construct outside the subset: `||`, `|`, `>>`, `~`, `!`, ...
    Other(&'static str),
}

fn describe(token: &Token) -> String {
    match token {
        Token::OpenBrace => "`{`".into(),
        Token::CloseBrace => "`}`".into(),
        Token::OpenParen => "`(`".into(),
        Token::CloseParen => "`)`".into(),
        Token::And => "`&&`".into(),
        Token::Op(op) => format!("`{op}`"),
        Token::Word(w) => format!("`{w}`"),
        Token::Value(v) => format!("{v:?}"),
        Token::Other(o) => format!("`{o}`"),
    }
}

/// What an unsupported symbol is, for the message.
fn construct_name(symbol: &str) -> String {
    let what = match symbol {
        "|" => "a pipeline",
        "||" => "`||` (or)",
        ">>" | "<<" | "!>>" | "!<<" => "a structural operator",
        "~" => "a sibling operator",
        "!" => "negation",
        _ => "this construct",
    };
    format!("{what} `{symbol}`")
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':')
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, TraceqlError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        let rest = &text[at..];
        let (token, len) = if c.is_whitespace() {
            chars.next();
            continue;
        } else if let Some((symbol, token)) = [
            ("!>>", Token::Other("!>>")),
            ("!<<", Token::Other("!<<")),
            ("&&", Token::And),
            ("||", Token::Other("||")),
            (">>", Token::Other(">>")),
            ("<<", Token::Other("<<")),
            ("=~", Token::Op(Op::Regex)),
            ("!~", Token::Op(Op::NotRegex)),
            ("!=", Token::Op(Op::Ne)),
            (">=", Token::Op(Op::Ge)),
            ("<=", Token::Op(Op::Le)),
            ("=", Token::Op(Op::Eq)),
            (">", Token::Op(Op::Gt)),
            ("<", Token::Op(Op::Lt)),
            ("{", Token::OpenBrace),
            ("}", Token::CloseBrace),
            ("(", Token::OpenParen),
            (")", Token::CloseParen),
            ("|", Token::Other("|")),
            ("~", Token::Other("~")),
            ("!", Token::Other("!")),
        ]
        .into_iter()
        .find(|(symbol, _)| rest.starts_with(symbol))
        {
            (token, symbol.len())
        } else if c == '"' || c == '`' {
            let (value, len) = string_literal(text, at)?;
            (Token::Value(Value::String(value)), len)
        } else if c.is_ascii_digit()
            || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            let len = rest[1..]
                .find(|d: char| !(d.is_alphanumeric() || d == '.' || d == 'µ'))
                .map_or(rest.len(), |n| n + 1);
            (number_literal(&rest[..len], at)?, len)
        } else if is_word_char(c) {
            let len = rest.find(|d: char| !is_word_char(d)).unwrap_or(rest.len());
            (Token::Word(rest[..len].to_owned()), len)
        } else if c == '&' {
            return Err(invalid(at, "`&` alone: did you mean `&&`?"));
        } else {
            return Err(invalid(at, format!("unexpected character {c:?}")));
        };
        tokens.push((at, token));
        while chars.peek().is_some_and(|&(next, _)| next < at + len) {
            chars.next();
        }
    }
    Ok(tokens)
}

/// A `"..."` string (escapes `\" \\ \n \t \r`) or a `` `...` `` raw string starting at
/// `at`: its value and its length in bytes, quotes included.
fn string_literal(text: &str, at: usize) -> Result<(String, usize), TraceqlError> {
    let quote = if text[at..].starts_with('`') {
        '`'
    } else {
        '"'
    };
    let mut value = String::new();
    let mut chars = text[at + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((value, i + 2));
        }
        if c == '\\' && quote == '"' {
            let escaped = match chars.next() {
                Some((_, '"')) => '"',
                Some((_, '\\')) => '\\',
                Some((_, 'n')) => '\n',
                Some((_, 't')) => '\t',
                Some((_, 'r')) => '\r',
                Some((_, other)) => {
                    return Err(invalid(at + 1 + i, format!("unknown escape \\{other}")))
                }
                None => break,
            };
            value.push(escaped);
        } else {
            value.push(c);
        }
    }
    Err(invalid(at, "unterminated string"))
}

fn number_literal(word: &str, at: usize) -> Result<Token, TraceqlError> {
    if word.ends_with(|c: char| c.is_alphabetic()) {
        let magnitude = word.strip_prefix('-').unwrap_or(word);
        return match parse_go_duration(magnitude) {
            Some(_) if magnitude.len() != word.len() => {
                Err(invalid(at, format!("a negative duration {word:?}")))
            }
            Some(ns) => Ok(Token::Value(Value::Duration(ns))),
            None => Err(invalid(
                at,
                format!("{word:?} is not a number or a duration"),
            )),
        };
    }
    if let Ok(n) = word.parse::<i64>() {
        return Ok(Token::Value(Value::Integer(n)));
    }
    match word.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Token::Value(Value::Float(f))),
        _ => Err(invalid(at, format!("{word:?} is not a number"))),
    }
}

/// Parses `text` into spansets.
pub fn parse(text: &str) -> Result<Query, TraceqlError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens: &tokens,
        next: 0,
        end: text.len(),
    };
    let mut spansets = vec![parser.spanset()?];
    while let Some((at, token)) = parser.take() {
        match token {
            Token::And => spansets.push(parser.spanset()?),
            Token::Other(symbol) => return Err(unsupported(*at, construct_name(symbol))),
            Token::Op(op) => {
                return Err(unsupported(
                    *at,
                    format!("the structural operator `{op}` between spansets"),
                ))
            }
            other => {
                return Err(invalid(
                    *at,
                    format!("expected `&&` or the end, found {}", describe(other)),
                ))
            }
        }
    }
    Ok(Query { spansets })
}

struct Parser<'a> {
    tokens: &'a [(usize, Token)],
    next: usize,
    /// The offset reported for "unexpected end".
    end: usize,
}

impl<'a> Parser<'a> {
    fn take(&mut self) -> Option<&'a (usize, Token)> {
        let token = self.tokens.get(self.next);
        self.next += 1;
        token
    }

    fn expect(&mut self, what: &str) -> Result<&'a (usize, Token), TraceqlError> {
        let end = self.end;
        self.take()
            .ok_or_else(|| invalid(end, format!("expected {what}, found the end")))
    }

    fn spanset(&mut self) -> Result<Spanset, TraceqlError> {
        let (at, token) = self.expect("`{`")?;
        match token {
            Token::OpenBrace => {}
            Token::OpenParen => return Err(unsupported(*at, "parentheses around spansets")),
            Token::Other(symbol) => return Err(unsupported(*at, construct_name(symbol))),
            other => {
                return Err(invalid(
                    *at,
                    format!("expected `{{`, found {}", describe(other)),
                ))
            }
        }
        let mut conditions = Vec::new();
        if matches!(self.tokens.get(self.next), Some((_, Token::CloseBrace))) {
            self.next += 1;
        } else {
            self.conjunction(&mut conditions, Token::CloseBrace, 0)?;
        }
        Ok(Spanset {
            at: *at,
            conditions,
        })
    }

    /// Conditions joined by `&&` up to and including `close`.
    fn conjunction(
        &mut self,
        into: &mut Vec<Condition>,
        close: Token,
        depth: usize,
    ) -> Result<(), TraceqlError> {
        loop {
            let (at, token) = self.expect("a condition")?;
            match token {
                Token::OpenParen if depth < MAX_NESTING => {
                    self.conjunction(into, Token::CloseParen, depth + 1)?;
                }
                Token::OpenParen => return Err(invalid(*at, "parentheses nested too deep")),
                Token::Word(word) => into.push(self.condition(*at, word)?),
                Token::Other(symbol) => return Err(unsupported(*at, construct_name(symbol))),
                other => {
                    return Err(invalid(
                        *at,
                        format!("expected a field, found {}", describe(other)),
                    ))
                }
            }
            let (at, token) = self.expect(&describe(&close))?;
            match token {
                Token::And => {}
                t if *t == close => return Ok(()),
                Token::Other(symbol) => return Err(unsupported(*at, construct_name(symbol))),
                other => {
                    return Err(invalid(
                        *at,
                        format!(
                            "expected `&&` or {}, found {}",
                            describe(&close),
                            describe(other)
                        ),
                    ))
                }
            }
        }
    }

    fn condition(&mut self, at: usize, word: &str) -> Result<Condition, TraceqlError> {
        let field = field(at, word)?;
        let op = match self.expect("an operator")? {
            (_, Token::Op(op)) => *op,
            (op_at, Token::Other(symbol)) => {
                return Err(unsupported(*op_at, construct_name(symbol)))
            }
            (op_at, other) => {
                return Err(invalid(
                    *op_at,
                    format!("expected an operator, found {}", describe(other)),
                ))
            }
        };
        let value = match self.expect("a value")? {
            (_, Token::Value(value)) => value.clone(),
            (value_at, Token::Word(word)) => keyword(*value_at, word)?,
            (value_at, other) => {
                return Err(invalid(
                    *value_at,
                    format!("expected a value, found {}", describe(other)),
                ))
            }
        };
        Ok(Condition {
            at,
            field,
            op,
            value,
        })
    }
}

fn field(at: usize, word: &str) -> Result<Field, TraceqlError> {
    let named = |name: &str| !name.is_empty();
    Ok(match word {
        "resource.service.name" | ".service.name" => Field::ServiceName,
        "name" | "span:name" => Field::Name,
        "status" | "span:status" => Field::Status,
        "kind" | "span:kind" => Field::Kind,
        "duration" | "span:duration" => Field::Duration,
        _ => {
            if let Some(name) = word.strip_prefix("span.").filter(|n| named(n)) {
                Field::SpanAttribute(name.to_owned())
            } else if let Some(name) = word.strip_prefix("resource.").filter(|n| named(n)) {
                Field::ResourceAttribute(name.to_owned())
            } else if let Some(name) = word.strip_prefix('.').filter(|n| named(n)) {
                Field::Attribute(name.to_owned())
            } else if word.contains(':')
                || [
                    "traceDuration",
                    "rootName",
                    "rootServiceName",
                    "statusMessage",
                ]
                .contains(&word)
            {
                return Err(unsupported(at, format!("the intrinsic `{word}`")));
            } else {
                return Err(invalid(
                    at,
                    format!(
                        "unknown field `{word}`: attributes are `span.x`, `resource.x` or `.x`"
                    ),
                ));
            }
        }
    })
}

fn keyword(at: usize, word: &str) -> Result<Value, TraceqlError> {
    Ok(match word {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "ok" => Value::Status(StatusValue::Ok),
        "error" => Value::Status(StatusValue::Error),
        "unset" => Value::Status(StatusValue::Unset),
        "unspecified" | "internal" | "server" | "client" | "producer" | "consumer" => {
            Value::Kind(word.to_owned())
        }
        "nil" => return Err(unsupported(at, "`nil`")),
        other => {
            return Err(invalid(
                at,
                format!("expected a value, found `{other}` (strings are quoted)"),
            ))
        }
    })
}

/// Whether a lowered query can match anything at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Satisfiable {
    Yes,
    /// Two conditions contradict (`name = "a" && name = "b"`): no span matches.
    No,
}

/// Adds the conditions of `query` to `into`. Spansets that match every span (`{}`) and
/// repeats of the same spanset add nothing; two different spansets are refused, since one
/// `SpanQuery` asks for one span matching every condition.
pub fn lower(query: &Query, into: &mut SpanQuery) -> Result<Satisfiable, TraceqlError> {
    let mut kept: Vec<&Spanset> = Vec::new();
    for spanset in query.spansets.iter().filter(|s| !s.conditions.is_empty()) {
        match kept.first() {
            Some(first) if !same_conditions(first, spanset) => {
                return Err(unsupported(
                    spanset.at,
                    "`&&` between two different spansets",
                ))
            }
            Some(_) => {}
            None => kept.push(spanset),
        }
    }
    let mut satisfiable = Satisfiable::Yes;
    for condition in kept.iter().flat_map(|s| &s.conditions) {
        if add_condition(condition, into)? == Satisfiable::No {
            satisfiable = Satisfiable::No;
        }
    }
    Ok(satisfiable)
}

/// The same conditions in the same order, wherever they are written.
fn same_conditions(a: &Spanset, b: &Spanset) -> bool {
    let meaning = |c: &Condition| (c.field.clone(), c.op, c.value.clone());
    a.conditions.len() == b.conditions.len()
        && a.conditions
            .iter()
            .zip(&b.conditions)
            .all(|(x, y)| meaning(x) == meaning(y))
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Duration(_) | Value::Status(_) | Value::Kind(_) => None,
    }
}

/// Sets `slot` to `value`, or reports a contradiction with what it holds.
fn set_once<T: PartialEq>(slot: &mut Option<T>, value: T) -> Satisfiable {
    match slot {
        Some(held) if *held != value => Satisfiable::No,
        _ => {
            *slot = Some(value);
            Satisfiable::Yes
        }
    }
}

fn add_condition(c: &Condition, q: &mut SpanQuery) -> Result<Satisfiable, TraceqlError> {
    let at = c.at;
    if matches!(c.op, Op::Regex | Op::NotRegex) {
        return Err(unsupported(at, format!("the regex operator `{}`", c.op)));
    }
    let only_equals = |what: &str| -> Result<(), TraceqlError> {
        if c.op == Op::Eq {
            Ok(())
        } else {
            Err(unsupported(
                at,
                format!("the operator `{}` on {what}", c.op),
            ))
        }
    };
    let string = |what: &str| -> Result<String, TraceqlError> {
        match &c.value {
            Value::String(s) => Ok(s.clone()),
            other => Err(invalid(
                at,
                format!("{what} is compared with a string, not {other:?}"),
            )),
        }
    };
    Ok(match &c.field {
        Field::ServiceName => {
            only_equals("service.name")?;
            set_once(&mut q.service, string("service.name")?)
        }
        Field::Name => {
            only_equals("name")?;
            set_once(&mut q.operation, string("name")?)
        }
        Field::Status => {
            let Value::Status(status) = c.value else {
                return Err(invalid(at, "status is compared with ok, error or unset"));
            };
            let failed = match (c.op, status) {
                (Op::Eq, StatusValue::Error) => true,
                (Op::Eq, StatusValue::Ok | StatusValue::Unset) | (Op::Ne, StatusValue::Error) => {
                    false
                }
                (Op::Ne, _) => {
                    return Err(unsupported(
                        at,
                        "`status != ok` and `status != unset` (the store keeps only whether a span failed)",
                    ))
                }
                (op, _) => return Err(unsupported(at, format!("the operator `{op}` on status"))),
            };
            set_once(&mut q.error, failed)
        }
        Field::Kind => return Err(unsupported(at, "searching by `kind`")),
        Field::Duration => {
            let ns = match c.value {
                Value::Duration(ns) => ns,
                Value::Integer(0) => 0,
                _ => {
                    return Err(invalid(
                        at,
                        "duration is compared with a duration like 100ms",
                    ))
                }
            };
            let (min, max) = match c.op {
                Op::Eq => (Some(ns), Some(ns)),
                Op::Gt => (Some(ns.saturating_add(1)), None),
                Op::Ge => (Some(ns), None),
                Op::Lt if ns == 0 => return Ok(Satisfiable::No),
                Op::Lt => (None, Some(ns - 1)),
                Op::Le => (None, Some(ns)),
                op => return Err(unsupported(at, format!("the operator `{op}` on duration"))),
            };
            if let Some(min) = min {
                q.min_duration_ns = Some(q.min_duration_ns.map_or(min, |m| m.max(min)));
            }
            if let Some(max) = max {
                q.max_duration_ns = Some(q.max_duration_ns.map_or(max, |m| m.min(max)));
            }
            if q.min_duration_ns
                .zip(q.max_duration_ns)
                .is_some_and(|(lo, hi)| lo > hi)
            {
                Satisfiable::No
            } else {
                Satisfiable::Yes
            }
        }
        Field::ResourceAttribute(name) => {
            return Err(unsupported(
                at,
                format!("`resource.{name}` (of resource attributes only service.name is stored)"),
            ))
        }
        Field::SpanAttribute(name) | Field::Attribute(name) => {
            only_equals("attributes")?;
            let text = text_of(&c.value).ok_or_else(|| {
                invalid(at, format!("an attribute is compared with {:?}", c.value))
            })?;
            q.attributes.push((name.clone(), text));
            Satisfiable::Yes
        }
    })
}

#[cfg(test)]
mod tests;
