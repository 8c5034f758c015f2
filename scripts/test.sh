#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit and property tests, integration
# tests on SQLite and PostgreSQL, fault tests and browser tests in headless Chromium.
# Installs and starts what it needs (PostgreSQL, Chromium, ChromeDriver, the wasm
# toolchain, Node.js and the npm packages of tests/js, schemathesis, moto) when it is missing.
source "$(dirname "$0")/lib.sh"

say "cargo fmt --check"
cargo fmt --all -- --check

ensure_apt chromium chromium-driver
ensure_node_deps
ensure_schemathesis
ensure_moto
ensure_helsinki
start_test_postgres
build_web

say "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

say "cargo test (SQLite and PostgreSQL at $MERIDIAN_TEST_PG_URL)"
cargo test --workspace --no-fail-fast "$@"
