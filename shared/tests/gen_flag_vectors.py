"""Generates shared/tests/flag_vectors.json with the Python mmh3 package (MurmurHash3 x86 32)."""
import json, sys
import mmh3

def h(data: bytes, seed=0):
    return mmh3.hash(data, seed, signed=False)

def bucket(group, key):
    return h(f"{group}:{key}".encode("utf-8")) % 100 + 1

murmur = []
for text, seed in [("", 0), ("", 1), ("", 0xFFFFFFFF), ("a", 0), ("ab", 0), ("abc", 0), ("abcd", 0),
                   ("abcde", 0), ("Hello, world!", 1234), ("The quick brown fox jumps over the lazy dog", 0),
                   ("The quick brown fox jumps over the lazy dog", 0x9747B28C), ("ü", 0), ("日本語", 0),
                   ("🚀🚀", 42), ("\u0000\u0000\u0000\u0000", 0), ("x" * 1000, 7)]:
    murmur.append({"input": text, "seed": seed, "hash": h(text.encode("utf-8"), seed)})

groups = ["", "gr1", "groupX", "new-checkout", "Ünïcödé-grüppe", "flag.with.dots", "🚀", "g:with:colons"]
keys = ["", "123", "999", "a", "ab", "abc", "abcd", "abcde", "user-1", "user-42", "user-100000",
        "josé", "Łukasz", "用户-7", "ユーザー", "😀", "a😀b", "e\u0301", "x" * 130,
        "alice@meridian.dev", "00000000-0000-7000-8000-000000000000", " ", ":", "4242"]
buckets = []
# The published Unleash vectors first.
for group, key in [("gr1", "123"), ("groupX", "999")]:
    buckets.append({"group": group, "key": key})
for group in groups:
    for key in keys:
        buckets.append({"group": group, "key": key})
for i in range(60):
    buckets.append({"group": "new-checkout", "key": f"user-{i * 7919}"})
for b in buckets:
    joined = f"{b['group']}:{b['key']}".encode("utf-8")
    b["hash"] = h(joined)
    b["normalized"] = b["hash"] % 100 + 1
assert buckets[0]["normalized"] == 73 and buckets[1]["normalized"] == 25
assert h(b"abc") == 0xB3DD93FA and h(b"") == 0

TWO = [{"name": "on", "value": True}, {"name": "off", "value": False}]

def rollout_expect(group, key, shares):
    """The variation whose cumulative range holds the bucket, computed here independently."""
    value = bucket(group, key)
    total = 0
    for name, weight in shares:
        total += weight
        if value <= total:
            return name, value
    raise AssertionError

evaluations = []
def case(name, flag, context, variant, reason, value, rule_index=None, bucket_value=None, error_code=None, segments=()):
    evaluations.append({"name": name, "flag": flag, "segments": list(segments), "context": context,
                        "expected": {"variant": variant, "reason": reason, "value": value, "rule_index": rule_index,
                                     "bucket": bucket_value, "error_code": error_code}})

static = {"key": "static-flag", "kind": "boolean", "variations": TWO, "enabled": True,
          "off_variation": "off", "default_serve": {"variation": "on"}}
case("static", static, {"targetingKey": "u1"}, "on", "STATIC", True)
case("static without a context", static, {}, "on", "STATIC", True)
case("disabled", dict(static, enabled=False), {"targetingKey": "u1"}, "off", "DISABLED", False)

targeted = {
    "key": "checkout-v2", "kind": "string",
    "variations": [{"name": "legacy", "value": "v1"}, {"name": "new", "value": "v2"}, {"name": "beta", "value": "v2-beta"}],
    "enabled": True, "off_variation": "legacy",
    "rules": [
        {"clauses": [{"attribute": "email", "operator": "ends_with", "values": ["@meridian.dev"], "case_insensitive": True}],
         "serve": {"variation": "beta"}},
        {"clauses": [{"attribute": "app_version", "operator": "semver_lt", "values": ["2.0.0"]}],
         "serve": {"variation": "legacy"}},
        {"clauses": [{"attribute": "country", "operator": "in", "values": ["DE", "FR", "NL"]},
                     {"attribute": "age", "operator": "gte", "values": [18]}],
         "serve": {"variation": "new"}},
        {"clauses": [{"operator": "in_segment", "values": ["early-access"]}], "serve": {"variation": "beta"}},
        {"clauses": [{"attribute": "plan", "operator": "not_equals", "values": ["free"]}], "serve": {"variation": "new"}},
    ],
    "default_serve": {"variation": "legacy"},
}
segment = {"key": "early-access", "name": "Early access", "included": ["vip-1"], "excluded": ["banned"],
           "rules": [{"clauses": [{"attribute": "beta", "operator": "equals", "values": [True]}]}]}
S = [segment]
case("first rule, case-insensitive ends_with", targeted, {"targetingKey": "u1", "email": "Ana@MERIDIAN.dev", "app_version": "1.0.0"},
     "beta", "TARGETING_MATCH", "v2-beta", 0, segments=S)
case("semver pre-release is below its release", targeted, {"targetingKey": "u1", "app_version": "2.0.0-rc.1"},
     "legacy", "TARGETING_MATCH", "v1", 1, segments=S)
case("semver release is not below 2.0.0", targeted, {"targetingKey": "u1", "app_version": "2.0.0", "plan": "free"},
     "legacy", "DEFAULT", "v1", segments=S)
case("all clauses of a rule", targeted, {"targetingKey": "u1", "country": "FR", "age": 30}, "new", "TARGETING_MATCH", "v2", 2, segments=S)
case("one clause of a rule fails", targeted, {"targetingKey": "u1", "country": "FR", "age": 17, "plan": "free"},
     "legacy", "DEFAULT", "v1", segments=S)
case("segment: included key", targeted, {"targetingKey": "vip-1"}, "beta", "TARGETING_MATCH", "v2-beta", 3, segments=S)
case("segment: rule", targeted, {"targetingKey": "u9", "beta": True}, "beta", "TARGETING_MATCH", "v2-beta", 3, segments=S)
case("segment: excluded beats its rule", targeted, {"targetingKey": "banned", "beta": True, "plan": "free"},
     "legacy", "DEFAULT", "v1", segments=S)
case("not_equals on a missing attribute is false", targeted, {"targetingKey": "u1"}, "legacy", "DEFAULT", "v1", segments=S)
case("not_equals on a present attribute", targeted, {"targetingKey": "u1", "plan": "pro"}, "new", "TARGETING_MATCH", "v2", 4, segments=S)
case("killed overrides every rule", dict(targeted, killed=True), {"targetingKey": "vip-1", "email": "a@meridian.dev"},
     "legacy", "DISABLED", "v1", segments=S)

shares = [("on", 30), ("off", 70)]
rollout = {"key": "new-checkout", "kind": "boolean", "variations": TWO, "enabled": True, "off_variation": "off",
           "default_serve": {"rollout": {"variations": [{"variation": n, "weight": w} for n, w in shares]}}}
for key in ["user-1", "user-2", "user-3", "user-4", "user-5", "josé", "用户-7", "😀", "123"]:
    variant, b = rollout_expect("new-checkout", key, shares)
    case(f"default rollout 30/70, {key}", rollout, {"targetingKey": key}, variant, "SPLIT", variant == "on", bucket_value=b)
case("rollout without a targeting key", rollout, {"plan": "pro"}, "", "ERROR", None, error_code="TARGETING_KEY_MISSING")
case("rollout with an empty targeting key", rollout, {"targetingKey": ""}, "", "ERROR", None, error_code="TARGETING_KEY_MISSING")

shares3 = [("red", 10), ("green", 20), ("blue", 70)]
colour = {"key": "button-colour", "kind": "json",
          "variations": [{"name": "red", "value": {"rgb": [255, 0, 0]}}, {"name": "green", "value": {"rgb": [0, 255, 0]}},
                         {"name": "blue", "value": {"rgb": [0, 0, 255]}}],
          "enabled": True, "off_variation": "blue",
          "rules": [{"clauses": [{"attribute": "country", "operator": "equals", "values": ["SE"]}],
                     "serve": {"rollout": {"variations": [{"variation": n, "weight": w} for n, w in shares3],
                                           "bucket_by": "company", "group": "experiment-7"}}}],
          "default_serve": {"variation": "blue"}}
values = {"red": {"rgb": [255, 0, 0]}, "green": {"rgb": [0, 255, 0]}, "blue": {"rgb": [0, 0, 255]}}
for company in ["acme", "globex", "initech", "umbrella", "hooli", "Ünïcödé GmbH"]:
    variant, b = rollout_expect("experiment-7", company, shares3)
    case(f"rule rollout by company, {company}", colour, {"targetingKey": "u1", "country": "SE", "company": company},
         variant, "TARGETING_MATCH", values[variant], 0, bucket_value=b)
for company in [4242, -17, 0]:
    variant, b = rollout_expect("experiment-7", str(company), shares3)
    case(f"integer bucket key {company}", colour, {"targetingKey": "u1", "country": "SE", "company": company},
         variant, "TARGETING_MATCH", values[variant], 0, bucket_value=b)
case("rule rollout without its attribute", colour, {"targetingKey": "u1", "country": "SE"}, "", "ERROR", None,
     error_code="INVALID_CONTEXT")
case("rule does not match", colour, {"targetingKey": "u1", "country": "NO"}, "blue", "DEFAULT", values["blue"])

limit = {"key": "upload-limit-mb", "kind": "number",
         "variations": [{"name": "small", "value": 10}, {"name": "large", "value": 250.5}],
         "enabled": True, "off_variation": "small",
         "rules": [{"clauses": [{"attribute": "plan", "operator": "in", "values": ["pro", "team"]}], "serve": {"variation": "large"}}],
         "default_serve": {"variation": "small"}}
case("number flag", limit, {"targetingKey": "u1", "plan": "team"}, "large", "TARGETING_MATCH", 250.5, 0)
case("array attribute matches any element", limit, {"targetingKey": "u1", "plan": ["free", "pro"]}, "large", "TARGETING_MATCH", 250.5, 0)

from importlib.metadata import version
out = {
    "description": "Bucketing and evaluation vectors for meridian_shared::flags, generated with the Python "
                   f"mmh3 package {version('mmh3')}. murmur3: MurmurHash3 x86 32-bit (unsigned) of the UTF-8 bytes of "
                   "input. buckets: hash = murmur3 of \"{group}:{key}\", seed 0; normalized = hash % 100 + 1, "
                   "Unleash's normalizedValue (the first two are Unleash's published vectors). evaluations: a flag "
                   "config, segments, an OFREP context and the expected answer; rollout expectations come from the "
                   "generator's own bucketing, not from the Rust code under test.",
    "murmur3": murmur,
    "buckets": buckets,
    "evaluations": evaluations,
}
def dump(value):
    # One entry per line: readable diffs, a small file.
    lines = ["{"]
    lines.append(f' "description": {json.dumps(value["description"], ensure_ascii=False)},')
    for name in ["murmur3", "buckets", "evaluations"]:
        items = value[name]
        lines.append(f' "{name}": [')
        for i, item in enumerate(items):
            comma = "," if i + 1 < len(items) else ""
            lines.append("  " + json.dumps(item, ensure_ascii=False) + comma)
        lines.append(" ]," if name != "evaluations" else " ]")
    lines.append("}")
    return "\n".join(lines) + "\n"
open(sys.argv[1], "w", encoding="utf-8").write(dump(out))
json.load(open(sys.argv[1], encoding="utf-8"))
print(len(murmur), len(buckets), len(evaluations))
