#!/usr/bin/env bash
# Installs what is missing, builds the web UI and the server (release), and runs
# Meridian on the embedded SQLite under ./data at http://127.0.0.1:8080 (MERIDIAN_LISTEN,
# MERIDIAN_DATA_DIR and DATABASE_URL override the defaults).
source "$(dirname "$0")/lib.sh"
build_web
# ETA routes on the Helsinki extract (without it, on a synthetic network).
ensure_helsinki || say "no Helsinki extract: ETA uses a synthetic network"
say "building the server (release)"
cargo build --release -p meridian-server --quiet
export MERIDIAN_LISTEN="${MERIDIAN_LISTEN:-127.0.0.1:8080}"
export MERIDIAN_DATA_DIR="${MERIDIAN_DATA_DIR:-$ROOT/data}"
export MERIDIAN_STATIC_DIR="${MERIDIAN_STATIC_DIR:-$ROOT/static}"
exec target/release/meridian serve "$@"
