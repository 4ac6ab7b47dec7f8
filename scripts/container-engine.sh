#!/usr/bin/env bash
# Makes a Docker Engine answer on this machine, with the image the container runner's tests
# use, built here from Debian's busybox-static (no registry is needed):
#
#   - installs `docker.io` (dockerd, containerd, runc) and `busybox-static` when missing
#     (root with apt-get only);
#   - starts `dockerd` in the background when no engine answers (root only; its log is
#     $TMPDIR/attune-dockerd.log), and waits for `docker info`, at most 60 s;
#   - imports `attune-test/busybox:1`, a rootfs of /bin/busybox and its applet links, when
#     the engine does not have it yet.
#
# Idempotent; a second run takes well under a second. Called by scripts/test.sh; run it alone
# before `cargo nextest run -p attune-tests container`. An engine elsewhere (DOCKER_HOST) is
# used as it is: only the image is imported there. Exits non-zero, saying why, when no engine
# answers in the end: the container tests then fail (they never skip).
set -euo pipefail

IMAGE=attune-test/busybox:1
LOG="${TMPDIR:-/tmp}/attune-dockerd.log"
say() { echo "container-engine.sh: $*" >&2; }
answers() { docker info >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }

started=$SECONDS
if is_root && command -v apt-get >/dev/null 2>&1; then
    missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    [ -x /bin/busybox ] || missing+=(busybox-static)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        # The package's init script may start dockerd itself; a policy that forbids it here
        # would be the host's, and is kept.
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
    fi
fi

if ! answers; then
    if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != unix:///var/run/docker.sock ]; then
        say "no container engine answers at DOCKER_HOST=$DOCKER_HOST"
        exit 1
    fi
    if ! is_root || ! command -v dockerd >/dev/null 2>&1; then
        say "no container engine answers at unix:///var/run/docker.sock, and dockerd cannot be started here (needs root and dockerd)"
        exit 1
    fi
    say "starting dockerd (log: $LOG)"
    setsid nohup dockerd >"$LOG" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        answers && break
        sleep 0.5
    done
    if ! answers; then
        say "dockerd did not answer within 60 s; the end of its log:"
        tail -n 20 "$LOG" >&2 || true
        exit 1
    fi
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    if [ ! -x /bin/busybox ]; then
        say "cannot build $IMAGE: /bin/busybox (Debian's busybox-static) is missing"
        exit 1
    fi
    say "importing $IMAGE"
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs/bin" "$rootfs/sbin" "$rootfs/usr/bin" "$rootfs/usr/sbin" "$rootfs/tmp" "$rootfs/etc"
    cp /bin/busybox "$rootfs/bin/busybox"
    # What `busybox --install -s` would do, without running busybox inside the rootfs.
    for applet in $(/bin/busybox --list-full); do
        [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
    done
    chmod 1777 "$rootfs/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
fi
say "ready in $((SECONDS - started)) s"
