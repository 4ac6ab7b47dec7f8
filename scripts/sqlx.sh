#!/usr/bin/env bash
# The compile-time checked SQL's offline data (`.sqlx/`), against a throwaway database.
#
#   scripts/sqlx.sh check     fails when .sqlx/ is stale (CI runs this)
#   scripts/sqlx.sh prepare   rewrites .sqlx/ after a query or migration changed
#
# Every `sqlx::query*!` macro is checked against a migrated database when DATABASE_URL is
# set and SQLX_OFFLINE is not true; otherwise (a clean clone, CI's build) against the
# committed `.sqlx/` (SQLX_OFFLINE=true comes from .cargo/config.toml). This script starts
# a private PostgreSQL cluster in a temp dir (nothing else needs to run), applies
# migrations/ and runs `cargo sqlx prepare [--check] --workspace` against it. sqlx-cli is
# installed into ~/.cache/attune/tools the first time (pinned to the sqlx version we use).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-check}"
case "$mode" in
    check) prepare_args=(--check) ;;
    prepare) prepare_args=() ;;
    *) echo "usage: scripts/sqlx.sh check|prepare" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/attune/target}"
tools="$HOME/.cache/attune/tools"
sqlx_version="0.8.6"
if ! "$tools/bin/sqlx" --version 2>/dev/null | grep -qF "sqlx-cli $sqlx_version"; then
    echo "sqlx.sh: installing sqlx-cli $sqlx_version into $tools" >&2
    CARGO_TARGET_DIR="$HOME/.cache/attune/sqlx-cli-target" cargo install sqlx-cli --version "$sqlx_version" \
        --locked --no-default-features --features postgres,rustls --root "$tools" >&2
fi
export PATH="$tools/bin:$PATH"

# A private cluster: Unix socket only, trust for its own user, gone at exit.
bin_dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$bin_dir" ]; then
    bin_dir="$(dirname "$(command -v initdb)")"
fi
work="$(mktemp -d -t attune-sqlx.XXXXXX)"
as_pg=()
if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root.
    chown postgres "$work"
    as_pg=(runuser -u postgres --)
fi
stop() {
    "${as_pg[@]}" "$bin_dir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap stop EXIT
"${as_pg[@]}" "$bin_dir/initdb" -D "$work/data" -U postgres -A trust --no-sync >/dev/null
"${as_pg[@]}" "$bin_dir/pg_ctl" -D "$work/data" -l "$work/log" -w \
    -o "-k $work -c listen_addresses='' -c fsync=off" start >/dev/null
export DATABASE_URL="postgres://postgres@localhost/attune_sqlx?host=$work"
export SQLX_OFFLINE=false
cargo sqlx database create
cargo sqlx migrate run --source migrations >/dev/null
cargo sqlx prepare "${prepare_args[@]}" --workspace -- --all-targets
