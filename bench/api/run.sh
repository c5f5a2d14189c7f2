#!/usr/bin/env bash
# API under load (issue 12 item 4): the API's latency while N services (default 200)
# are created at once and then deleted at once, beside the same prober on the idle
# server in the same run, and the server's memory before, at the peak and after the
# deletes. Run as root on an otherwise idle machine: bench/api/run.sh [N]
# (RUNWAY=path/to/runway to measure another build; SERVER_FLAGS adds flags to the server;
# KEEP=1 keeps the server's log; ROUNDS=R repeats the creates and deletes R times, to
# see whether what memory a burst leaves behind adds up.)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-200}
for pkg in skopeo curl jq; do
  command -v "$pkg" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
done
target=${CARGO_TARGET_DIR:-$PWD/target}
if [[ -z "${RUNWAY:-}" ]]; then
  cargo build --release --locked --bin runway -q
  cargo build --release --locked -q -p runway-runtime --features test-util --example testapp_image
  RUNWAY=$target/release/runway
  image_tool=$target/release/examples/testapp_image
else
  image_tool=$(dirname "$RUNWAY")/examples/testapp_image
fi
work=$(mktemp -d /tmp/runway-bench-api.XXXX)
# Instances' roots (user namespaces) reach their bundles through the data directory's
# parents: they must be searchable.
chmod 711 "$work"
data=$work/data
flags=(--data-dir "$data" --api-listen 127.0.0.1:0 --registry-listen 127.0.0.1:0 --http-listen 127.0.0.1:0
  --https-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --bridge rwbenchapi --subnet 10.253.0.0/23)
cleanup() {
  [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  # Instances outlive the server by design; the benchmark's must not outlive it.
  "$RUNWAY" purge "${flags[@]}" >/dev/null 2>&1 || true
  [[ -n "${KEEP:-}" ]] && cp "$work/server.log" /tmp/runway-bench-api.log
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC2086 # SERVER_FLAGS: extra flags, split on spaces
"$RUNWAY" server "${flags[@]}" ${SERVER_FLAGS:-} >"$work/server.log" 2>&1 &
server=$!
until [[ -f $data/endpoints.json ]]; do
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
api=$(jq -r .api "$data/endpoints.json")
registry=$(jq -r .registry "$data/endpoints.json" | sed 's|http://||')
creds="$(awk '/aws_access_key_id/{print $3}' "$data/credentials"):$(awk '/aws_secret_access_key/{print $3}' "$data/credentials")"
"$image_tool" "$work/image" 2>/dev/null
skopeo copy --quiet --dest-tls-verify=false --dest-creds "$creds" "oci:$work/image:testapp" "docker://$registry/load:v1"
# Anonymous memory (heap, stacks): what the server allocated, not the pages of its binary.
rss() { awk '/RssAnon/{print $2 / 1024}' "/proc/$server/status"; }

# The server's memory is sampled every second while the load runs.
(while kill -0 "$server" 2>/dev/null; do rss; sleep 1; done) >"$work/rss.txt" &
sampler=$!
SERVER_PID=$server python3 bench/api/load.py "$api" "$data/credentials" "$registry/load:v1" "$n" >"$work/result.json"
base=$(head -12 "$work/rss.txt" | sort -n | tail -1)
peak=$(sort -n "$work/rss.txt" | tail -1)
# load.py read it 30 s after each round's deletes.
after=$(jq '.after_mib[-1]' "$work/result.json")
kill "$sampler" 2>/dev/null || true
if [[ -n "${KEEP:-}" ]]; then
  # Where the memory is: threads, and the largest resident mappings.
  echo "threads: $(ls "/proc/$server/task" | wc -l)" >/tmp/runway-bench-api.smaps
  awk '/^[0-9a-f]+-/{m=$0} /^Rss:/{print $2, m}' "/proc/$server/smaps" | sort -rn | head -15 >>/tmp/runway-bench-api.smaps
fi

jq -r --arg n "$n" --arg base "$base" --arg peak "$peak" --arg after "$after" '
  def f: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
  "== API latency (DescribeService/ListServices back to back), p50 / p99 / max in ms",
  "idle:                    \(.idle.probe.p50_ms|f) / \(.idle.probe.p99_ms|f) / \(.idle.probe.max_ms|f)  (\(.idle.probe.n) calls)",
  "while \($n) are created: \(.create.probe.p50_ms|f) / \(.create.probe.p99_ms|f) / \(.create.probe.max_ms|f)  (\(.create.probe.n) calls, \(.create.probe_errors) errors; all RUNNING after \(.create.seconds) s)",
  "while \($n) are deleted: \(.delete.probe.p50_ms|f) / \(.delete.probe.p99_ms|f) / \(.delete.probe.max_ms|f)  (\(.delete.probe.n) calls, \(.delete.probe_errors) errors; all DELETED after \(.delete.seconds) s)",
  "p99 under creates / idle: \((.create.probe.p99_ms / .idle.probe.p99_ms) * 100 | round / 100)x   goal: p99 < 200 ms",
  "== the \($n) CreateService calls themselves: p50 / p99 / max \(.create.calls.p50_ms|f) / \(.create.calls.p99_ms|f) / \(.create.calls.max_ms|f) ms, \(.create.call_errors) errors",
  "== the \($n) DeleteService calls: p50 / p99 / max \(.delete.calls.p50_ms|f) / \(.delete.calls.p99_ms|f) / \(.delete.calls.max_ms|f) ms, \(.delete.call_errors) errors",
  "(the prober ran in real time: \(.create.probe_realtime))",
  "== server memory (anonymous RSS, MiB): baseline \($base), peak \($peak), 30 s after the deletes \($after) (after / baseline \((($after|tonumber) / ($base|tonumber)) * 100 | round / 100)x)",
  if (.after_mib | length) > 1 then "   30 s after each round: \(.after_mib | map(f) | join(", ")) MiB" else empty end
' "$work/result.json"
# The same reads as the server timed them (from the handler's start to its answer; the
# log's elapsed_ms), over the whole run: what is left of a slow call once the client's
# own waits are taken out.
server_side() {
  grep -oE "operation=\"$1\".*elapsed_ms=[0-9]+" "$work/server.log" | grep -oE '[0-9]+$' | sort -n |
    awk '{a[NR] = $1} END {p50 = int(NR * .5); p99 = int(NR * .99); if (p50 < 1) p50 = 1; if (p99 < 1) p99 = 1;
      printf "%s / %s / %s ms (%d calls)", a[p50], a[p99], a[NR], NR}'
}
echo "== as the server timed them, whole run, p50 / p99 / max: ListServices $(server_side ListServices), DescribeService $(server_side DescribeService)"
