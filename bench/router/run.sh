#!/usr/bin/env bash
# Benchmarks runway's request router against nginx and against no proxy at all, in one
# run on this machine: the same small backend behind each, HTTP/1.1 load from wrk and
# HTTP/2 (h2c) load from h2load. Prints requests per second and p50/p99 latency for each,
# the ratios runway/nginx, and the latency runway adds over a direct connection.
# Not a test: it passes or fails nothing. Method: bench/router/README.md.
#
#   bench/router/run.sh                 3 rounds of 10 s per tool and target
#   DURATION=5 ROUNDS=1 bench/router/run.sh
#   CONNS=128 bench/router/run.sh       more connections
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
pids+=($!)
"$TARGET/release/examples/bench_router" "127.0.0.1:$RUNWAY" "127.0.0.1:$BACKEND" "$PROXY_THREADS" &
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

results="$work/results.tsv"
: > "$results"

# wrk: requests/s, p50 and p99 in ms.
run_wrk() { # name port
  local out
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/")
  python3 - "$1" "$out" >> "$results" <<'PY'
import re, sys
name, out = sys.argv[1], sys.argv[2]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
print(f"h1\t{name}\t{rps:.0f}\t{p50:.3f}\t{p99:.3f}\t{errors.group(1) if errors else 0}{' ' + sock.group(1) if sock else ''}")
PY
}

# h2load (h2c prior knowledge): requests/s, p50 and p99 from its per-request log.
run_h2load() { # name port
  local log="$work/h2load.log" out
  rm -f "$log"
  out=$(h2load -D "$DURATION" -c "$H2_CONNS" -m "$H2_STREAMS" --log-file="$log" "http://127.0.0.1:$2/")
  python3 - "$1" "$out" "$log" >> "$results" <<'PY'
import re, sys
name, out, log = sys.argv[1], sys.argv[2], sys.argv[3]
rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
durations = sorted(int(line.split("\t")[2]) for line in open(log) if line.strip())
def pct(p):
    return durations[min(len(durations) - 1, int(len(durations) * p))] / 1000
failed = re.search(r"requests: .* (\d+) failed", out)
print(f"h2\t{name}\t{rps:.0f}\t{pct(0.50):.3f}\t{pct(0.99):.3f}\t{failed.group(1) if failed else '?'}")
PY
}

echo "$(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2
echo "wrk -t1 -c$CONNS, h2load -c$H2_CONNS -m$H2_STREAMS, ${DURATION}s each, $ROUNDS rounds; proxies $PROXY_THREADS threads/workers, backend $BACKEND_THREADS" >&2
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  # Alternate the order so that no target always runs on a warmer or cooler machine.
  if (( round % 2 )); then order="direct nginx runway"; else order="runway nginx direct"; fi
  for target in $order; do
    case $target in
      direct) run_wrk direct "$BACKEND"; run_h2load direct "$BACKEND" ;;
      nginx) run_wrk nginx "$NGINX"; run_h2load nginx "$NGINX_H2" ;;
      runway) run_wrk runway "$RUNWAY"; run_h2load runway "$RUNWAY" ;;
    esac
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
print("every run (protocol, target, req/s, p50 ms, p99 ms, errors):")
for r in rows:
    print("  " + "  ".join(r))
print()
med = {}
for proto in ("h1", "h2"):
    for name in ("direct", "nginx", "runway"):
        sel = [r for r in rows if r[0] == proto and r[1] == name]
        med[proto, name] = tuple(statistics.median(float(r[i]) for r in sel) for i in (2, 3, 4))
        errs = sorted({r[5] for r in sel})
        med[proto, name, "errors"] = ",".join(errs)
print("median of rounds        req/s     p50 ms    p99 ms   errors")
for proto, tool in (("h1", "wrk"), ("h2", "h2load")):
    for name in ("direct", "nginx", "runway"):
        rps, p50, p99 = med[proto, name]
        print(f"{proto} ({tool:6}) {name:7} {rps:10.0f} {p50:9.3f} {p99:9.3f}   {med[proto, name, 'errors']}")
print()
for proto in ("h1", "h2"):
    d, n, r = med[proto, "direct"], med[proto, "nginx"], med[proto, "runway"]
    print(f"{proto}: runway/nginx req/s {r[0] / n[0]:.2f}x (goal >= 1.20); "
          f"p99 runway {r[2]:.3f} ms vs nginx {n[2]:.3f} ms ({'no worse' if r[2] <= n[2] else 'worse'}); "
          f"runway adds p50 {r[1] - d[1]:+.3f} ms, p99 {r[2] - d[2]:+.3f} ms over direct "
          f"(nginx adds p50 {n[1] - d[1]:+.3f} ms, p99 {n[2] - d[2]:+.3f} ms)")
PY
