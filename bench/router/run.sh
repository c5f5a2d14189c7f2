#!/usr/bin/env bash
# Benchmarks runway's request router against nginx and against no proxy at all, in one
# run on this machine: the same small backend behind each, HTTP/1.1 load from wrk and
# HTTP/2 (h2c) load from h2load; gRPC unary calls (h2load) through the router (h2c to the
# backend) and straight to the backend; HTTP/1.1 again for nginx and runway with a
# CPU-bound neighbour on every core; a 1 GiB download and upload (curl) through the router
# and straight to the backend, with the router's RSS. Prints requests per second and
# p50/p99 latency for each, the ratios against the peers and the issue's goals.
# Not a test: it passes or fails nothing. Method: bench/router/README.md.
#
#   bench/router/run.sh                 3 rounds of 10 s per tool and target
#   DURATION=5 ROUNDS=1 bench/router/run.sh
#   CONNS=128 bench/router/run.sh       more connections
#   PARTS="grpc transfer" bench/router/run.sh   only some parts (small grpc neighbour transfer)
#   ROUTER_BIN=/tmp/old/bench_router bench/router/run.sh   a saved router build (before/after)
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-8}
PROXY_THREADS=${PROXY_THREADS:-2}
BACKEND_THREADS=${BACKEND_THREADS:-1}
PARTS=${PARTS:-small grpc neighbour transfer}
TRANSFER_BYTES=${TRANSFER_BYTES:-1073741824}
NEIGHBOURS=${NEIGHBOURS:-$(nproc)}
part() { [[ " $PARTS " == *" $1 "* ]]; }
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# The load tools and the peer, from Debian, only if missing.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v nginx >/dev/null || missing+=(nginx)
if (( ${#missing[@]} )); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "building the router and the backend (release)..." >&2
CARGO_TARGET_DIR=$TARGET cargo build --quiet --release -p runway-router \
  --example bench_backend --example bench_router

work=$(mktemp -d /tmp/runway-bench-router.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
BACKEND=$(free_port)
RUNWAY=$(free_port)
NGINX=$(free_port)
NGINX_H2=$(free_port)

"$TARGET/release/examples/bench_backend" "127.0.0.1:$BACKEND" "$BACKEND_THREADS" &
BACKEND_PID=$!
pids+=($!)
"${ROUTER_BIN:-$TARGET/release/examples/bench_router}" "127.0.0.1:$RUNWAY" "127.0.0.1:$BACKEND" "$PROXY_THREADS" &
RUNWAY_PID=$!
pids+=($!)

# nginx as a reverse proxy doing the same work as runway's router: keep-alive
# connections to the backend, X-Forwarded-* and X-Request-Id set, no access log, as many
# workers as runway has threads.
mkdir -p "$work/nginx/logs"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes $PROXY_THREADS;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  upstream backend {
    server 127.0.0.1:$BACKEND;
    keepalive 512;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGINX;
    listen 127.0.0.1:$NGINX_H2 http2;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Request-Id \$request_id;
      proxy_buffering off;
    }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
pids+=($!)

for port in "$BACKEND" "$RUNWAY" "$NGINX" "$NGINX_H2"; do
  for _ in $(seq 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
done
# Sanity: every target answers the backend's body.
for port in "$BACKEND" "$RUNWAY" "$NGINX"; do
  body=$(curl -s "http://127.0.0.1:$port/")
  [[ "$body" == "hello world" ]] || { echo "127.0.0.1:$port answered '$body'" >&2; exit 1; }
done

# The gRPC request h2load sends: one length-prefixed message (a protobuf with field 1 =
# "hello world"), POSTed with gRPC's headers. runway routes it by host to the service
# whose instance protocol is h2c.
GRPC_HOST=grpc.runway.localhost
printf '\x00\x00\x00\x00\x0d\x0a\x0bhello world' > "$work/grpc.bin"
GRPC_HEADERS=(-H "content-type: application/grpc" -H "te: trailers")
if part grpc; then
  # Sanity with a real gRPC client (grpcio), when installed: the backend echoes the
  # message with grpc-status 0, straight and through the router.
  if python3 -c 'import grpc' 2>/dev/null; then
    python3 - "$BACKEND" "$RUNWAY" "$GRPC_HOST" <<'PY' || { echo "gRPC sanity check failed" >&2; exit 1; }
import sys, grpc
backend, runway, host = sys.argv[1:]
message = b"\x0a\x0bhello world"
for port, options in ((backend, []), (runway, [("grpc.default_authority", host)])):
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        echo = channel.unary_unary("/bench.Bench/Echo")
        reply, call = echo.with_call(message, timeout=10)
        assert reply == message and call.code() == grpc.StatusCode.OK, (port, reply, call.code())
PY
    echo "gRPC sanity (grpcio client): direct and through the router OK" >&2
  fi
fi

results="$work/results.tsv"
: > "$results"

# CPU seconds (user, system) the processes PIDS and their threads have used so far.
cpu_of() { # pid...
  python3 - "$@" <<'PY'
import glob, os, sys
tick = os.sysconf("SC_CLK_TCK")
user = system = 0
for pid in sys.argv[1:]:
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
print(user / tick, system / tick)
PY
}

# Runs the load tool COMMAND and prints its output, then its CPU seconds (from its rusage)
# as "CLIENT <s>", then the proxy's and the backend's CPU readings before and after as
# "PROXY <user> <sys> <user> <sys> BACKEND <user> <sys> <user> <sys>". Per request, these
# explain the throughput: the machine is CPU-bound, so requests/s ≈ cores / their sum.
measured() { # "proxy pids" (space separated, may be empty) command...
  local proxy=$1; shift
  local p0 b0 p1 b1
  p0=$(cpu_of $proxy); b0=$(cpu_of "$BACKEND_PID")
  python3 - "$@" <<'PY'
import resource, subprocess, sys
out = subprocess.run(sys.argv[1:], capture_output=True, text=True).stdout
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(out)
print("CLIENT", usage.ru_utime + usage.ru_stime)
PY
  p1=$(cpu_of $proxy); b1=$(cpu_of "$BACKEND_PID")
  echo "PROXY $p0 $p1 BACKEND $b0 $b1"
}

# Appends a result row: protocol, target, req/s, p50 ms, p99 ms, errors, then CPU µs per
# request: proxy user, proxy system, backend, client.
record() { # proto name out requests rps p50 p99 errors
  python3 - "$@" >> "$results" <<'PY'
import re, sys
proto, name, out, requests, rps, p50, p99, errors = sys.argv[1:]
client = float(re.search(r"^CLIENT (\S+)", out, re.M).group(1))
m = re.search(r"^PROXY (\S+) (\S+) (\S+) (\S+) BACKEND (\S+) (\S+) (\S+) (\S+)", out, re.M)
pu0, ps0, pu1, ps1, bu0, bs0, bu1, bs1 = map(float, m.groups())
n = float(requests) / 1e6
print(f"{proto}\t{name}\t{float(rps):.0f}\t{float(p50):.3f}\t{float(p99):.3f}\t{errors}"
      f"\t{(pu1 - pu0) / n:.2f}\t{(ps1 - ps0) / n:.2f}\t{(bu1 + bs1 - bu0 - bs0) / n:.2f}\t{client / n:.2f}")
PY
}

# wrk: requests/s, p50 and p99 in ms.
run_wrk() { # name port proxy-pids
  local out
  out=$(measured "$3" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/")
  record h1 "$1" "$out" $(python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n
requests = re.search(r"(\d+) requests in", out).group(1)
rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
errors = (errors.group(1) if errors else "0") + ("/" + sock.group(1).replace(" ", "") if sock else "")
print(requests, rps, p50, p99, errors)
PY
)
}

# h2load (h2c prior knowledge): requests/s, p50 and p99 from its per-request log.
run_h2load() { # name port proxy-pids
  local log="$work/h2load.log" out
  rm -f "$log"
  out=$(measured "$3" h2load -D "$DURATION" -c "$H2_CONNS" -m "$H2_STREAMS" --log-file="$log" "http://127.0.0.1:$2/")
  record h2 "$1" "$out" $(python3 - "$out" "$log" <<'PY'
import re, sys
out, log = sys.argv[1], sys.argv[2]
rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1)
requests = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1)
durations = sorted(int(line.split("\t")[2]) for line in open(log) if line.strip())
def pct(p):
    return durations[min(len(durations) - 1, int(len(durations) * p))] / 1000
failed = re.search(r"requests: .* (\d+) failed", out)
print(requests, rps, pct(0.50), pct(0.99), failed.group(1) if failed else "?")
PY
)
}

# gRPC unary calls with h2load: the prepared body POSTed with gRPC's headers; a call
# counts as done when its response (status 200, then grpc-status in the trailers) ends.
run_grpc() { # name port proxy-pids [authority]
  local log="$work/h2load.log" out extra=()
  [[ -n ${4:-} ]] && extra=(-H ":authority: $4")
  rm -f "$log"
  out=$(measured "$3" h2load -D "$DURATION" -c "$H2_CONNS" -m "$H2_STREAMS" -d "$work/grpc.bin" \
    "${GRPC_HEADERS[@]}" "${extra[@]}" --log-file="$log" "http://127.0.0.1:$2/bench.Bench/Echo")
  record grpc "$1" "$out" $(python3 - "$out" "$log" <<'PY'
import re, sys
out, log = sys.argv[1], sys.argv[2]
rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1)
requests = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1)
status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
durations = sorted(int(line.split("\t")[2]) for line in open(log) if line.strip())
def pct(p):
    return durations[min(len(durations) - 1, int(len(durations) * p))] / 1000
failed = re.search(r"requests: .* (\d+) failed", out)
bad = int(status.group(2)) + int(status.group(3)) + int(status.group(4))
print(requests, rps, pct(0.50), pct(0.99), f"{failed.group(1) if failed else '?'}/{bad}")
PY
)
}

# A CPU-bound neighbour on every core: NEIGHBOURS processes that never sleep, at the
# same priority as everything else, as busy app instances on a runway host are.
neighbours=()
start_neighbours() {
  for _ in $(seq "$NEIGHBOURS"); do
    yes > /dev/null &
    neighbours+=($!)
    pids+=($!)
  done
}
stop_neighbours() {
  for pid in "${neighbours[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  neighbours=()
}

# One transfer of TRANSFER_BYTES with curl: download (GET /bytes/N) or upload (PUT of a
# sparse file to /upload). Appends kind, target, MB/s, seconds, and the router's RSS
# before and at its peak during the transfer (MiB; sampled every 50 ms).
transfers="$work/transfers.tsv"
: > "$transfers"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
run_transfer() { # kind name port
  local kind=$1 name=$2 port=$3 out sampler rss0 peak c0 c1
  rss0=$(rss_kib "$RUNWAY_PID")
  c0=$(cpu_of "$RUNWAY_PID"; cpu_of "$BACKEND_PID")
  echo "$rss0" > "$work/rss"
  ( while :; do rss_kib "$RUNWAY_PID" >> "$work/rss"; sleep 0.05; done ) &
  sampler=$!
  if [[ $kind == download ]]; then
    out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{speed_download} %{time_total}' \
      "http://127.0.0.1:$port/bytes/$TRANSFER_BYTES") || true
  else
    out=$(curl -sS -o /dev/null -H 'Expect:' -T "$work/upload.bin" \
      -w '%{http_code} %{size_upload} %{speed_upload} %{time_total}' "http://127.0.0.1:$port/upload") || true
  fi
  c1=$(cpu_of "$RUNWAY_PID"; cpu_of "$BACKEND_PID")
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  peak=$(grep -E '^[0-9]+$' "$work/rss" | sort -n | tail -1)
  read -r code size speed secs <<< "$out"
  [[ $code == 200 && $size == "$TRANSFER_BYTES" ]] || echo "$kind $name: HTTP $code, $size bytes" >&2
  python3 -c "
import sys
k, n, sp, s, r0, r1, c0, c1 = sys.argv[1:]
c = [b - a for a, b in zip(map(float, c0.split()), map(float, c1.split()))]
print(f'{k}\t{n}\t{float(sp) / 1e6:.0f}\t{float(s):.2f}\t{int(r0) / 1024:.1f}\t{int(r1) / 1024:.1f}'
      f'\t{c[0] + c[1]:.2f}\t{c[2] + c[3]:.2f}')" \
    "$kind" "$name" "$speed" "$secs" "$rss0" "$peak" "$c0" "$c1" >> "$transfers"
}
# A sparse file: reading it costs no disk, once its (zero) pages are in the page cache,
# which the first read does (before any timed run: otherwise the first upload is slower).
if part transfer; then
  truncate -s "$TRANSFER_BYTES" "$work/upload.bin"
  cat "$work/upload.bin" > /dev/null
fi

echo "$(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2
echo "wrk -t1 -c$CONNS, h2load -c$H2_CONNS -m$H2_STREAMS, ${DURATION}s each, $ROUNDS rounds; proxies $PROXY_THREADS threads/workers, backend $BACKEND_THREADS; parts: $PARTS" >&2
echo "load before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  # Alternate the order so that no target always runs on a warmer or cooler machine.
  if (( round % 2 )); then order="direct nginx runway"; else order="runway nginx direct"; fi
  workers="$NGINX_PID $(pgrep -P "$NGINX_PID" | xargs)"
  if part small; then
    for target in $order; do
      case $target in
        direct) run_wrk direct "$BACKEND" ""; run_h2load direct "$BACKEND" "" ;;
        nginx) run_wrk nginx "$NGINX" "$workers"; run_h2load nginx "$NGINX_H2" "$workers" ;;
        runway) run_wrk runway "$RUNWAY" "$RUNWAY_PID"; run_h2load runway "$RUNWAY" "$RUNWAY_PID" ;;
      esac
    done
  fi
  for target in $order; do
    case $target in
      direct) part grpc && run_grpc direct "$BACKEND" "" ;;
      runway) part grpc && run_grpc runway "$RUNWAY" "$RUNWAY_PID" "$GRPC_HOST" ;;
    esac
  done
  if part neighbour; then
    start_neighbours
    for target in $order; do
      case $target in
        nginx) run_wrk nginx "$NGINX" "$workers" ;;
        runway) run_wrk runway "$RUNWAY" "$RUNWAY_PID" ;;
      esac
    done
    stop_neighbours
    # The rows just recorded are the neighbour's: relabel them.
    python3 - "$results" <<'PY'
import sys
rows = open(sys.argv[1]).read().splitlines()
n = 2
for i in range(len(rows) - n, len(rows)):
    rows[i] = "h1busy" + rows[i][len("h1"):]
open(sys.argv[1], "w").write("\n".join(rows) + "\n")
PY
  fi
  if part transfer; then
    for target in $order; do
      case $target in
        direct) run_transfer download direct "$BACKEND"; run_transfer upload direct "$BACKEND" ;;
        runway) run_transfer download runway "$RUNWAY"; run_transfer upload runway "$RUNWAY" ;;
      esac
    done
  fi
done

BACKEND_THREADS=$BACKEND_THREADS python3 - "$results" "$transfers" <<'PY'
import os, statistics, sys
BACKEND_THREADS = int(os.environ["BACKEND_THREADS"])
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
transfers = [line.rstrip("\n").split("\t") for line in open(sys.argv[2]) if line.strip()]
print("every run (protocol, target, req/s, p50 ms, p99 ms, errors; CPU µs per request:")
print("  proxy user, proxy system, backend, load tool):")
for r in rows:
    print("  " + "  ".join(r))
print()
med = {}
tools = (("h1", "wrk"), ("h2", "h2load"), ("grpc", "h2load"), ("h1busy", "wrk"))
for proto, _ in tools:
    for name in ("direct", "nginx", "runway"):
        sel = [r for r in rows if r[0] == proto and r[1] == name]
        if not sel:
            continue
        med[proto, name] = tuple(statistics.median(float(r[i]) for r in sel) for i in range(2, 10) if i != 5)
        med[proto, name, "errors"] = ",".join(sorted({r[5] for r in sel}))
print("median of rounds           req/s     p50 ms    p99 ms   CPU µs/request: proxy user+sys  backend  client   errors")
for proto, tool in tools:
    for name in ("direct", "nginx", "runway"):
        if (proto, name) not in med:
            continue
        rps, p50, p99, pu, ps, b, c = med[proto, name]
        print(f"{proto:6} ({tool:6}) {name:7} {rps:10.0f} {p50:9.3f} {p99:9.3f}   "
              f"{pu:6.2f} + {ps:6.2f} {b:8.2f} {c:7.2f}   {med[proto, name, 'errors']}")
print("(h1busy: HTTP/1.1 with a CPU-bound neighbour on every core)")
print()
goals = []
def goal(text, ok):
    goals.append(f"  [{'met' if ok else 'NOT met'}] {text}")
for proto in ("h1", "h2"):
    if (proto, "runway") not in med:
        continue
    d, n, r = med[proto, "direct"], med[proto, "nginx"], med[proto, "runway"]
    print(f"{proto}: runway/nginx req/s {r[0] / n[0]:.2f}x; "
          f"p99 runway {r[2]:.3f} ms vs nginx {n[2]:.3f} ms ({'no worse' if r[2] <= n[2] else 'worse'}); "
          f"runway adds p50 {r[1] - d[1]:+.3f} ms, p99 {r[2] - d[2]:+.3f} ms over direct "
          f"(nginx adds p50 {n[1] - d[1]:+.3f} ms, p99 {n[2] - d[2]:+.3f} ms)")
    # The machine is CPU-bound: requests/s ~ cores / (all CPU per request). The best
    # runway could do if its own code cost nothing is nginx's total over runway's total
    # without runway's user time (the kernel's socket work stays).
    total_n, total_r = sum(n[3:]), sum(r[3:])
    cpu_ratio = (r[3] + r[4]) / (n[3] + n[4])
    print(f"    CPU per request: proxy runway {r[3] + r[4]:.2f} µs (user {r[3]:.2f}) vs nginx "
          f"{n[3] + n[4]:.2f} µs (user {n[3]:.2f}): runway/nginx {cpu_ratio:.2f}x, "
          f"user-space only {r[3] / n[3]:.2f}x; whole system runway {total_r:.2f} vs nginx {total_n:.2f} µs; "
          f"ceiling with a zero-cost runway user space: {total_n / (total_r - r[3]):.2f}x nginx's req/s")
    if proto == "h1":
        goal(f"HTTP/1.1 req/s >= 1.0x nginx: {r[0] / n[0]:.3f}x", r[0] >= n[0])
        goal(f"HTTP/1.1 proxy CPU per request <= 0.8x nginx: {cpu_ratio:.2f}x", cpu_ratio <= 0.8)
    else:
        goal(f"HTTP/2 req/s >= 1.5x nginx: {r[0] / n[0]:.2f}x", r[0] >= 1.5 * n[0])
if ("grpc", "runway") in med:
    d, r = med["grpc", "direct"], med["grpc", "runway"]
    print(f"grpc: runway/direct calls/s {r[0] / d[0]:.2f}x; p50 {r[1]:.3f} vs {d[1]:.3f} ms, "
          f"p99 {r[2]:.3f} vs {d[2]:.3f} ms; router CPU {r[3] + r[4]:.2f} µs per call "
          f"(user {r[3]:.2f}); backend {d[5]:.2f} µs per call direct, {r[5]:.2f} through runway; "
          f"backend busy {d[0] * d[5] / 1e6:.2f} cores direct, {r[0] * r[5] / 1e6:.2f} through runway "
          f"(of {BACKEND_THREADS} thread(s): below that, the backend is not the limit)")
    total_d, total_r = d[5] + d[6], sum(r[3:])
    print(f"    whole system per call: direct {total_d:.2f} µs, through runway {total_r:.2f} µs "
          f"(ratio {total_d / total_r:.2f}); ceiling with a zero-cost runway user space: "
          f"{total_d / (total_r - r[3]):.2f}x direct")
    goal(f"gRPC unary through the router >= 0.8x direct: {r[0] / d[0]:.2f}x", r[0] >= 0.8 * d[0])
if ("h1busy", "runway") in med:
    n, r = med["h1busy", "nginx"], med["h1busy", "runway"]
    print(f"h1 with a CPU-bound neighbour: runway/nginx req/s {r[0] / n[0]:.2f}x; "
          f"p99 runway {r[2]:.3f} ms vs nginx {n[2]:.3f} ms")
    goal(f"with the neighbour, runway's p99 <= nginx's: {r[2]:.2f} vs {n[2]:.2f} ms", r[2] <= n[2])
if transfers:
    print()
    print("transfers (kind, target, MB/s, s, router RSS MiB before, peak during, CPU s router, backend):")
    for t in transfers:
        print("  " + "  ".join(t))
    for kind in ("download", "upload"):
        d = statistics.median(float(t[2]) for t in transfers if t[0] == kind and t[1] == "direct")
        r = statistics.median(float(t[2]) for t in transfers if t[0] == kind and t[1] == "runway")
        peak = max(float(t[5]) for t in transfers if t[0] == kind and t[1] == "runway")
        print(f"{kind}: runway {r:.0f} MB/s vs direct {d:.0f} MB/s = {r / d:.2f}x; router peak RSS {peak:.1f} MiB")
        goal(f"1 GiB {kind} through the router >= 0.8x direct: {r / d:.2f}x", r >= 0.8 * d)
print()
print("goals (issue 11):")
print("\n".join(goals))
PY
