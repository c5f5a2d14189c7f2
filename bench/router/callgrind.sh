#!/bin/sh
# Instructions per request of runway's router (HTTP/1.1, one thread) under callgrind:
# steadier than requests per second on a shared machine, for before/after comparisons
# of a change to the request path. Not a benchmark result (no peer): see run.sh for those.
#
#   bench/router/callgrind.sh            # 15 s of wrk -t1 -c8 (about a minute in all)
#   DURATION=30 bench/router/callgrind.sh
#   KEEP=/tmp/after.out bench/router/callgrind.sh   # and keep the profile
#
# Needs valgrind and wrk; builds the examples in release mode.
set -eu
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-15}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p runway-router --example bench_router --example bench_backend
BIN=$TARGET/release/examples
WORK=$(mktemp -d)
BACKEND_PID=""
ROUTER_PID=""
cleanup() {
    [ -n "$ROUTER_PID" ] && kill "$ROUTER_PID" 2>/dev/null || true
    [ -n "$BACKEND_PID" ] && kill "$BACKEND_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN/bench_backend" 127.0.0.1:18190 1 &
BACKEND_PID=$!
valgrind --tool=callgrind --callgrind-out-file="$WORK/out" \
    "$BIN/bench_router" 127.0.0.1:18191 127.0.0.1:18190 1 2>"$WORK/valgrind.log" &
ROUTER_PID=$!
for _ in $(seq 100); do
    curl -fso /dev/null http://127.0.0.1:18191/ && break
    sleep 0.2
done
# Warm up, then count only what the measured run costs.
wrk -t1 -c8 -d2s http://127.0.0.1:18191/ >/dev/null
callgrind_control --zero "$ROUTER_PID" >/dev/null 2>&1
wrk -t1 -c8 -d"${DURATION}s" http://127.0.0.1:18191/ >"$WORK/wrk"
callgrind_control --dump "$ROUTER_PID" >/dev/null 2>&1
sleep 1
REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/wrk")
# The dump after --zero holds the measured run only.
DUMP=$(ls -t "$WORK"/out* | head -1)
INSTRUCTIONS=$(awk '/^(summary|totals):/ {print $2; exit}' "$DUMP")
echo "requests: $REQUESTS"
echo "instructions: $INSTRUCTIONS"
echo "instructions per request: $((INSTRUCTIONS / REQUESTS))"
# KEEP=file keeps the profile (read it with bench/router/callgrind-top.py).
if [ -n "${KEEP:-}" ]; then cp "$DUMP" "$KEEP"; fi
