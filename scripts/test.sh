#!/usr/bin/env bash
# Runs Attune's whole test suite on a fresh machine: nothing to set up first.
#
# The tests start their own private PostgreSQL cluster (the system's initdb/postgres
# binaries, under the temp dir) unless ATTUNE_TEST_DATABASE_URL names a server; each test
# gets a fresh database cloned from a migrated template. RabbitMQ (for the bridge tests)
# is started here when it is installed but not running.
set -euo pipefail
cd "$(dirname "$0")/.."

# A fixed target dir outside the clone keeps the build cached between runs and clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/attune/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Actions and sensors run in a bubblewrap sandbox (docs/security.md, "Sandbox"); the
# tests run them for real. About 5 s with the package lists to fetch, 2 s without.
if [ ! -x /usr/bin/bwrap ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing bubblewrap (the sandbox of actions and sensors)" >&2
    started=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }
    echo "test.sh: bubblewrap installed in $((SECONDS - started)) s" >&2
fi

if ! port_open 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
    echo "test.sh: starting RabbitMQ" >&2
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do port_open 5672 && break; sleep 1; done
fi

# Container actions (T3.17) run in a real Docker engine: installed (docker.io,
# busybox-static) and started here when missing, with the test image built from busybox, no
# registry. About 12 s cold with the package lists present, well under 1 s once done. When
# no engine can be had, the container tests fail saying so (they never skip).
scripts/container-engine.sh || echo "test.sh: no container engine; the container runner's tests will fail" >&2

# The web console's tests (tests/e2e/console.rs) drive a headless Chromium over WebDriver:
# Debian's chromium and chromium-driver, installed here when missing (about 50 s cold with
# the package lists present, well under 1 s once done). Without them those tests fail.
scripts/browser.sh || echo "test.sh: no chromium/chromedriver; the console's tests will fail" >&2

if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace --no-fail-fast "$@"
else
    exec cargo test --workspace --no-fail-fast "$@"
fi
