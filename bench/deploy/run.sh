#!/usr/bin/env bash
# Deployment benchmarks (issue 6), each beside a peer measured in the same run:
#   (a) image push -> new revision serving           peer: podman, pull + run -> first response
#   (b) cold start: request to a scaled-to-zero app   peer: podman, start of a stopped container -> first response
#   (c) burst from 1 to 20x one instance's capacity: seconds until capacity catches up, failed requests
#   (d) 10 consecutive deployments under wrk load: non-2xx responses
# Run as root on an otherwise idle machine: bench/deploy/run.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
for pkg in skopeo podman wrk curl jq bc; do
  command -v "$pkg" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
done
cargo build --release --locked --bin runway -q
cargo build --release --locked -q -p runway-runtime --features test-util --example testapp_image
target=${CARGO_TARGET_DIR:-$PWD/target}
runway=$target/release/runway
work=$(mktemp -d /tmp/runway-bench-deploy.XXXX)
# Instances' roots (user namespaces) reach their bundles through the data directory's
# parents: they must be searchable.
chmod 711 "$work"
data=$work/data
podman_() { podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver vfs "$@"; }
# This host withholds CAP_SYS_RESOURCE; podman runs only with limits it may set.
limits=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
flags=(--data-dir "$data" --api-listen 127.0.0.1:0 --registry-listen 127.0.0.1:0 --http-listen 127.0.0.1:0
  --https-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --bridge rwbench --subnet 10.250.0.0/24)
cleanup() {
  [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  podman_ rm -af >/dev/null 2>&1 || true
  # Instances outlive the server by design; the benchmark's must not outlive it.
  "$runway" purge "${flags[@]}" >/dev/null 2>&1 || true
  sed -i '/# runway-bench$/d' /etc/hosts
  [[ -n "${KEEP:-}" ]] && cp -r "$work/server.log" "$work/burst.txt" "$work/wrk.txt" /tmp/ 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT

"$runway" server "${flags[@]}" --autoscale-stable-window 10 --autoscale-panic-window 2 --scale-to-zero-grace 5 --drain-timeout 2 \
  >"$work/server.log" 2>&1 &
server=$!
until [[ -f $data/endpoints.json ]]; do sleep 0.1; done
export RUNWAY_DATA_DIR=$data
registry=$(jq -r .registry "$data/endpoints.json" | sed 's|http://||')
https=$(jq -r .https "$data/endpoints.json" | sed 's|https://||'); port=${https##*:}
creds="$(awk '/aws_access_key_id/{print $3}' "$data/credentials"):$(awk '/aws_secret_access_key/{print $3}' "$data/credentials")"
"$target/release/examples/testapp_image" "$work/image" 2>/dev/null
push() { skopeo copy --quiet --dest-tls-verify=false --dest-creds "$creds" "oci:$work/image:testapp" "docker://$registry/$1"; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
url() { echo "https://$1:$port$2"; }
get() { curl -s -o /dev/null -w '%{http_code}' --cacert "$data/certs/ca.pem" --resolve "$1:$port:127.0.0.1" "$(url "$1" "$2")"; }
# wrk and hey resolve names with the system resolver: give the apps' hosts loopback.
host_of() {
  local h; h=$("$runway" services describe "$1" -o json | jq -r .ServiceUrl)
  grep -q " $h " /etc/hosts || echo "127.0.0.1 $h # runway-bench" >>/etc/hosts
  echo "$h"
}
newest() { "$runway" revisions ls "$1" -o json | jq -r '.[0] | "\(.RevisionId) \(.Status)"'; }

# Service NAME from the test app (pushed as NAME:v1) with an auto scaling configuration
# of its own, running when this returns. boto3 validates nothing client-side: MinSize 0
# is below App Runner's minimum (scale to zero is runway's).
scaled_service() { # name min-size max-size max-concurrency
  local body asc
  body=$(jq -n --arg n "$1" --argjson min "$2" --argjson max "$3" --argjson c "$4" \
    '{AutoScalingConfigurationName:$n,MinSize:$min,MaxSize:$max,MaxConcurrency:$c}')
  asc=$(AWS_SHARED_CREDENTIALS_FILE=$data/credentials AWS_PROFILE=runway python3 - "$body" "$(jq -r .api "$data/endpoints.json")" <<'PY'
import json, sys, boto3
from botocore.config import Config
c = boto3.client("apprunner", endpoint_url=sys.argv[2], region_name="us-east-1", config=Config(parameter_validation=False))
print(c.create_auto_scaling_configuration(**json.loads(sys.argv[1]))["AutoScalingConfiguration"]["AutoScalingConfigurationArn"])
PY
)
  push "$1:v1"
  AWS_SHARED_CREDENTIALS_FILE=$data/credentials AWS_PROFILE=runway aws apprunner create-service --endpoint-url "$(jq -r .api "$data/endpoints.json")" \
    --region us-east-1 --service-name "$1" --auto-scaling-configuration-arn "$asc" \
    --source-configuration "{\"ImageRepository\":{\"ImageIdentifier\":\"$registry/$1:v1\",\"ImageRepositoryType\":\"ECR\"}}" >/dev/null
  until [[ $("$runway" services describe "$1" -o json | jq -r .Status) == RUNNING ]]; do sleep 0.2; done
}

podman_ >/dev/null 2>&1 info || true

echo "== (a) image push -> new revision serving"
push app:v1
"$runway" deploy --image "$registry/app:v1" --name bench-app >/dev/null
host=$(host_of bench-app)
a=(); pa=()
for i in $(seq 1 "$rounds"); do
  before=$(newest bench-app | cut -d' ' -f1)
  t0=$(now); push app:v1
  until r=$(newest bench-app) && [[ ${r% *} != "$before" && ${r#* } == SERVING && $(get "$host" /healthz) == 200 ]]; do sleep 0.05; done
  a+=("$(echo "$(now) - $t0" | bc)")
  # Peer: podman pulls the same image from the same registry, runs it, first response.
  podman_ rm -af >/dev/null 2>&1; podman_ rmi -af >/dev/null 2>&1 || true
  t0=$(now)
  podman_ pull -q --tls-verify=false --creds "$creds" "$registry/app:v1" >/dev/null
  podman_ run "${limits[@]}" -d --rm -p 127.0.0.1:18080:8080 "$registry/app:v1" >/dev/null
  until [[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/healthz) == 200 ]]; do sleep 0.02; done
  pa+=("$(echo "$(now) - $t0" | bc)")
  podman_ rm -af >/dev/null 2>&1
done
ma=$(printf '%s\n' "${a[@]}" | median); mpa=$(printf '%s\n' "${pa[@]}" | median)
echo "runway ${ma}s  podman ${mpa}s  ratio (podman/runway) $(echo "scale=2; $mpa / $ma" | bc)  goal <= 3 s"

echo "== (b) cold start from zero -> first byte"
scaled_service cold 0 2 10
cold=$(host_of cold)
b=(); pb=()
podman_ pull -q --tls-verify=false --creds "$creds" "$registry/cold:v1" >/dev/null
podman_ create "${limits[@]}" --name peer -p 127.0.0.1:18081:8080 "$registry/cold:v1" >/dev/null
for i in $(seq 1 "$rounds"); do
  until [[ $("$runway" instances ls cold -o json | jq length) == 0 ]]; do sleep 0.5; done
  b+=("$(curl -s -o /dev/null -w '%{time_starttransfer}' --cacert "$data/certs/ca.pem" --resolve "$cold:$port:127.0.0.1" "$(url "$cold" /)")")
  t0=$(now); podman_ start peer >/dev/null
  until [[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18081/) == 200 ]]; do sleep 0.005; done
  pb+=("$(echo "$(now) - $t0" | bc)")
  podman_ stop -t 0 peer >/dev/null
done
mb=$(printf '%s\n' "${b[@]}" | median); mpb=$(printf '%s\n' "${pb[@]}" | median)
echo "runway ${mb}s  podman ${mpb}s  ratio (podman/runway) $(echo "scale=2; $mpb / $mb" | bc)  goal <= 0.25 s"

echo "== (c) burst from 1 to 20x one instance's capacity (MaxConcurrency 2: 40 concurrent)"
scaled_service burst 1 20 2
burst=$(host_of burst)
t0=$(now)
# (hey is not used: its Go TLS client puts the port in SNI, which TLS forbids.)
wrk -t2 -c40 -d30s --timeout 60s "https://$burst:$port/sleep?ms=100" >"$work/burst.txt" 2>&1 &
hp=$!
caught=""
while kill -0 $hp 2>/dev/null; do
  n=$("$runway" instances ls burst -o json | jq '[.[] | select(.State=="healthy")] | length')
  if [[ -z $caught && $n -ge 20 ]]; then caught=$(echo "$(now) - $t0" | bc); fi
  sleep 0.5
done
total=$(awk '/requests in/{print $1}' "$work/burst.txt"); failed=$(awk '/Non-2xx/{print $5}' "$work/burst.txt")
errors=$(grep "Socket errors" "$work/burst.txt" || true)
echo "capacity caught up after ${caught:-more than 30}s (20 healthy instances); $total requests, ${failed:-0} failed $errors  goal <= 10 s, 0 failed"

echo "== (d) 10 consecutive deployments under wrk load"
wrk -t2 -c16 -d600s "https://$host:$port/healthz" >"$work/wrk.txt" 2>&1 &
wp=$!
for i in $(seq 1 10); do
  before=$(newest bench-app | cut -d' ' -f1)
  "$runway" deploy --image "$registry/app:v1" --name bench-app >/dev/null || "$runway" events bench-app | tail -8
done
kill -INT $wp; wait $wp || true
non2xx=$(awk '/Non-2xx/{print $5}' "$work/wrk.txt"); reqs=$(awk '/requests in/{print $1}' "$work/wrk.txt")
errors=$(awk '/Socket errors/{print}' "$work/wrk.txt")
echo "${reqs:-?} requests, ${non2xx:-0} non-2xx ${errors}  goal 0"
