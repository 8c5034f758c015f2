#!/usr/bin/env bash
# Builds the web UI into static/pkg (installing the wasm toolchain if it is missing).
source "$(dirname "$0")/lib.sh"
build_web
