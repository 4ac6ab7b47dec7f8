#!/usr/bin/env bash
# Makes a headless Chromium and its WebDriver (chromedriver) available for the web console's
# browser tests (tests/e2e/console.rs):
#
#   - installs Debian's `chromium` and `chromium-driver` when /usr/bin/chromium or
#     /usr/bin/chromedriver is missing (root with apt-get only), fetching the package lists
#     first when the install fails without them;
#   - checks that both binaries run.
#
# Idempotent; a second run takes well under a second. Called by scripts/test.sh; run it alone
# before `cargo test -p attune-tests --test e2e console`. Exits non-zero, saying why, when the
# browser is missing in the end: the console tests then fail (they never skip). The tests use
# ATTUNE_CHROMIUM / ATTUNE_CHROMEDRIVER instead of the /usr/bin paths when those are set.
set -euo pipefail

CHROMIUM="${ATTUNE_CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${ATTUNE_CHROMEDRIVER:-/usr/bin/chromedriver}"
say() { echo "browser.sh: $*" >&2; }

started=$SECONDS
if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing chromium and chromium-driver"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
    else
        say "$CHROMIUM or $CHROMEDRIVER is missing and cannot be installed here (needs root and apt-get)"
        exit 1
    fi
fi

for bin in "$CHROMIUM" "$CHROMEDRIVER"; do
    if ! "$bin" --version >/dev/null 2>&1; then
        say "$bin does not run"
        exit 1
    fi
done
say "ready in $((SECONDS - started)) s ($("$CHROMIUM" --version 2>/dev/null | head -n1))"
