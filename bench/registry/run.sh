#!/usr/bin/env bash
# Push and pull of a multi-layer image (~200 MB by default) with skopeo: runway's
# registry against Debian's docker-registry (distribution 2.8) on the same machine in the
# same run. Prints each round's times, the medians, the ratios (docker-registry time /
# runway time, so >= 1.0 means runway is faster) and each server's peak RSS (VmHWM).
# Not a test: see README.md beside this file.
#
#   bench/registry/run.sh                 # 4 layers x 50 MiB, 3 rounds
#   LAYERS=8 LAYER_MIB=25 ROUNDS=5 bench/registry/run.sh
set -euo pipefail

LAYERS=${LAYERS:-4}
LAYER_MIB=${LAYER_MIB:-50}
ROUNDS=${ROUNDS:-3}
repo_root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo_root/target}

need=()
command -v skopeo >/dev/null || need+=(skopeo)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v curl >/dev/null || need+=(curl)
command -v bc >/dev/null || need+=(bc)
command -v python3 >/dev/null || need+=(python3)
if (( ${#need[@]} )); then
  echo "installing: ${need[*]}" >&2
  # docker-registry's package would start a system service; this benchmark runs its
  # own instance instead (policy-rc.d may refuse the start, which is what we want).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "building runway-registry-serve (release)..." >&2
(cd "$repo_root" && cargo build -q --release -p runway-registry \
  --bin runway-registry-serve --features test-util --example make_layout)
serve_bin=$CARGO_TARGET_DIR/release/runway-registry-serve
layout_bin=$CARGO_TARGET_DIR/release/examples/make_layout

work=$(mktemp -d /tmp/runway-registry-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "building the image: $LAYERS layers of $LAYER_MIB MiB of random data (gzip)..." >&2
"$layout_bin" "$work/image" v1 "$LAYERS" $((LAYER_MIB * 1024 * 1024)) >/dev/null
image_bytes=$(du -sb "$work/image/blobs" | cut -f1)

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

start_runway() {  # sets runway_pid, runway_addr, runway_creds
  local dir=$1
  mkdir -p "$dir"
  "$serve_bin" "$dir/data" 127.0.0.1:0 >"$dir/out" 2>"$dir/err" &
  runway_pid=$!
  pids+=("$runway_pid")
  for _ in $(seq 100); do grep -q '^listening ' "$dir/out" 2>/dev/null && break; sleep 0.1; done
  runway_addr=$(awk '/^listening / {print $2}' "$dir/out")
  runway_creds=$(cat "$dir/data/credentials")
}

start_distribution() {  # sets dist_pid, dist_addr
  local dir=$1 port
  mkdir -p "$dir/storage"
  port=$(free_port)
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  docker-registry serve "$dir/config.yml" >"$dir/out" 2>&1 &
  dist_pid=$!
  pids+=("$dist_pid")
  dist_addr=127.0.0.1:$port
  for _ in $(seq 100); do curl -fs "http://$dist_addr/v2/" >/dev/null && break; sleep 0.1; done
}

# push NAME ADDR CREDS-FLAG... ; pull likewise. Each prints its seconds.
push() {
  local addr=$1; shift
  local t0 t1
  t0=$(now)
  skopeo copy -q --dest-tls-verify=false "$@" "oci:$work/image:v1" "docker://$addr/bench/image:v1" >/dev/null
  t1=$(now)
  elapsed "$t0" "$t1"
}
pull() {
  local addr=$1 dest=$2; shift 2
  local t0 t1
  t0=$(now)
  skopeo copy -q --src-tls-verify=false "$@" "docker://$addr/bench/image:v1" "oci:$dest:v1" >/dev/null
  t1=$(now)
  rm -rf "$dest"
  elapsed "$t0" "$t1"
}

declare -a rp rl dp dl rh dh
printf '%-6s %12s %12s %12s %12s\n' round runway-push dist-push runway-pull dist-pull
for round in $(seq "$ROUNDS"); do
  # Fresh servers and storage each round, on new ports, so nothing is "already there".
  start_runway "$work/r$round"
  start_distribution "$work/d$round"
  if (( round % 2 )); then
    r_push=$(push "$runway_addr" --dest-creds "$runway_creds")
    d_push=$(push "$dist_addr")
    r_pull=$(pull "$runway_addr" "$work/pull-r$round" --src-creds "$runway_creds")
    d_pull=$(pull "$dist_addr" "$work/pull-d$round")
  else
    d_push=$(push "$dist_addr")
    r_push=$(push "$runway_addr" --dest-creds "$runway_creds")
    d_pull=$(pull "$dist_addr" "$work/pull-d$round")
    r_pull=$(pull "$runway_addr" "$work/pull-r$round" --src-creds "$runway_creds")
  fi
  rp+=("$r_push"); dp+=("$d_push"); rl+=("$r_pull"); dl+=("$d_pull")
  rh+=("$(hwm_kib "$runway_pid")"); dh+=("$(hwm_kib "$dist_pid")")
  kill "$runway_pid" "$dist_pid"
  wait "$runway_pid" "$dist_pid" 2>/dev/null || true
  printf '%-6s %11.2fs %11.2fs %11.2fs %11.2fs\n' "$round" "$r_push" "$d_push" "$r_pull" "$d_pull"
done

m() { printf '%s\n' "$@" | median; }
r_push=$(m "${rp[@]}"); d_push=$(m "${dp[@]}"); r_pull=$(m "${rl[@]}"); d_pull=$(m "${dl[@]}")
r_hwm=$(printf '%s\n' "${rh[@]}" | sort -n | tail -1)
d_hwm=$(printf '%s\n' "${dh[@]}" | sort -n | tail -1)
mib() { echo "scale=1; $1 / 1024" | bc -l; }
echo
echo "image: $LAYERS layers, $(echo "scale=1; $image_bytes / 1048576" | bc -l) MiB; $ROUNDS rounds; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
printf 'push: runway %.2fs, docker-registry %.2fs, ratio %.2f (>= 1.0: runway faster)\n' \
  "$r_push" "$d_push" "$(echo "$d_push / $r_push" | bc -l)"
printf 'pull: runway %.2fs, docker-registry %.2fs, ratio %.2f (>= 1.0: runway faster)\n' \
  "$r_pull" "$d_pull" "$(echo "$d_pull / $r_pull" | bc -l)"
printf 'peak RSS (VmHWM, max over rounds): runway %s MiB, docker-registry %s MiB\n' "$(mib "$r_hwm")" "$(mib "$d_hwm")"
