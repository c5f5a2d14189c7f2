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
BACKEND_PID=$!
pids+=($!)
"$TARGET/release/examples/bench_router" "127.0.0.1:$RUNWAY" "127.0.0.1:$BACKEND" "$PROXY_THREADS" &
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

echo "$(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2
echo "wrk -t1 -c$CONNS, h2load -c$H2_CONNS -m$H2_STREAMS, ${DURATION}s each, $ROUNDS rounds; proxies $PROXY_THREADS threads/workers, backend $BACKEND_THREADS" >&2
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  # Alternate the order so that no target always runs on a warmer or cooler machine.
  if (( round % 2 )); then order="direct nginx runway"; else order="runway nginx direct"; fi
  for target in $order; do
    case $target in
      direct) run_wrk direct "$BACKEND" ""; run_h2load direct "$BACKEND" "" ;;
      nginx)
        workers="$NGINX_PID $(pgrep -P "$NGINX_PID" | xargs)"
        run_wrk nginx "$NGINX" "$workers"; run_h2load nginx "$NGINX_H2" "$workers" ;;
      runway) run_wrk runway "$RUNWAY" "$RUNWAY_PID"; run_h2load runway "$RUNWAY" "$RUNWAY_PID" ;;
    esac
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
print("every run (protocol, target, req/s, p50 ms, p99 ms, errors; CPU µs per request:")
print("  proxy user, proxy system, backend, load tool):")
for r in rows:
    print("  " + "  ".join(r))
print()
med = {}
for proto in ("h1", "h2"):
    for name in ("direct", "nginx", "runway"):
        sel = [r for r in rows if r[0] == proto and r[1] == name]
        med[proto, name] = tuple(statistics.median(float(r[i]) for r in sel) for i in range(2, 10) if i != 5)
        med[proto, name, "errors"] = ",".join(sorted({r[5] for r in sel}))
print("median of rounds        req/s     p50 ms    p99 ms   CPU µs/request: proxy user+sys  backend  client   errors")
for proto, tool in (("h1", "wrk"), ("h2", "h2load")):
    for name in ("direct", "nginx", "runway"):
        rps, p50, p99, pu, ps, b, c = med[proto, name]
        print(f"{proto} ({tool:6}) {name:7} {rps:10.0f} {p50:9.3f} {p99:9.3f}   "
              f"{pu:6.2f} + {ps:6.2f} {b:8.2f} {c:7.2f}   {med[proto, name, 'errors']}")
print()
for proto in ("h1", "h2"):
    d, n, r = med[proto, "direct"], med[proto, "nginx"], med[proto, "runway"]
    print(f"{proto}: runway/nginx req/s {r[0] / n[0]:.2f}x (goal >= 1.20); "
          f"p99 runway {r[2]:.3f} ms vs nginx {n[2]:.3f} ms ({'no worse' if r[2] <= n[2] else 'worse'}); "
          f"runway adds p50 {r[1] - d[1]:+.3f} ms, p99 {r[2] - d[2]:+.3f} ms over direct "
          f"(nginx adds p50 {n[1] - d[1]:+.3f} ms, p99 {n[2] - d[2]:+.3f} ms)")
    # The machine is CPU-bound: requests/s ~ cores / (all CPU per request). The best
    # runway could do if its own code cost nothing is nginx's total over runway's total
    # without runway's user time (the kernel's socket work stays).
    total_n, total_r = sum(n[3:]), sum(r[3:])
    print(f"    CPU per request: proxy runway {r[3] + r[4]:.2f} µs (user {r[3]:.2f}) vs nginx "
          f"{n[3] + n[4]:.2f} µs (user {n[3]:.2f}): nginx/runway {(n[3] + n[4]) / (r[3] + r[4]):.2f}x, "
          f"user-space only {n[3] / r[3]:.2f}x; whole system runway {total_r:.2f} vs nginx {total_n:.2f} µs; "
          f"ceiling with a zero-cost runway user space: {total_n / (total_r - r[3]):.2f}x nginx's req/s")
PY
