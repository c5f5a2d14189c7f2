#!/usr/bin/env bash
# App Runner source compatibility (issue 13): deploys public App Runner repositories,
# unchanged, from local checkouts with `runway deploy --source`, and records whether each
# answers and how long its build and deployment took.
#
#   bench/compat/run.sh CHECKOUTS [NAME...]
#
# CHECKOUTS holds one checkout per repository of bench/compat/repos.tsv, named like its
# first column with `/` as `+` (aws-containers+hello-app-runner), at the commit listed
# (the script checks it out if the checkout is a git clone). The repositories' code is
# never part of runway: clone them yourself. Base images for the runtimes they name are
# made with scripts/base-image (cached under /var/cache/runway/rootfs, by recipe) and imported into
# the server this script starts (its own data directory, bridge and ports).
# BRIDGE and SUBNET (rwcompat, 10.251.0.0/24) let two runs go side by side.
# Results: bench/compat/results.tsv (name, commit, runtime, result, HTTP status, seconds,
# note); a summary line at the end. Run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."
checkouts=${1:?usage: bench/compat/run.sh CHECKOUTS [NAME...]}
shift
only=("$@")
for tool in jq curl git; do command -v "$tool" >/dev/null || apt-get install -y -qq "$tool" >/dev/null; done
# RUNWAY_BIN: a runway binary to use instead of building the release one.
if [[ -n "${RUNWAY_BIN:-}" ]]; then
  runway=$RUNWAY_BIN
else
  cargo build --release --locked --bin runway -q
  runway=${CARGO_TARGET_DIR:-$PWD/target}/release/runway
fi
work=$(mktemp -d /tmp/runway-compat.XXXX)
# Instances run in user namespaces: their root reaches the data directory through it.
chmod 755 "$work"
data=$work/data
flags=(--data-dir "$data" --api-listen 127.0.0.1:0 --registry-listen 127.0.0.1:0 --http-listen 127.0.0.1:0
  --https-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --bridge "${BRIDGE:-rwcompat}"
  --subnet "${SUBNET:-10.251.0.0/24}")
cleanup() {
  [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  "$runway" purge "${flags[@]}" >/dev/null 2>&1 || true
  [[ -n "${LOGS:-}" ]] && mkdir -p "$LOGS" && cp "$work/server.log" "$LOGS/server.log"
  rm -rf "$work"
}
trap cleanup EXIT
"$runway" server "${flags[@]}" --deploy-timeout 180 >"$work/server.log" 2>&1 &
server=$!
until [[ -f $data/endpoints.json ]]; do sleep 0.1; done
export RUNWAY_DATA_DIR=$data
https=$(jq -r .https "$data/endpoints.json" | sed 's|https://||')
port=${https##*:}

# The base image of RUNTIME[@VERSION], made once and imported into this server.
imported=" "
import_base() {
  local spec=$1 runtime version dir
  runtime=${spec%@*}
  version=$([[ "$spec" == *@* ]] && echo "${spec#*@}" || true)
  [[ "$imported" == *" $spec "* ]] && return 0
  # Keyed by the script's recipe: an image made by an older recipe is not reused.
  local key
  key=$(scripts/base-image --recipe "$spec" | sha256sum | cut -c1-12) || return 1
  dir=/var/cache/runway/rootfs/$runtime${version:+-$version}-$key
  if [[ ! -f "$dir.complete" ]]; then
    rm -rf "$dir"
    scripts/base-image --rootfs-only "$spec" "$dir" || return 1
  fi
  local actual
  actual=$(scripts/base-image --version-of "$dir" "$runtime")
  "$runway" image import-rootfs "$dir" --name "runtimes/$runtime:$actual" --tag latest >/dev/null || return 1
  imported+="$spec "
}

# This run's rows; merged into results.tsv at the end with the rows of the repositories
# it did not run (a run of a few names keeps the others' last results).
results=bench/compat/results.tsv
rows=$work/rows.tsv
: >"$rows"
ok=0 total=0
while IFS=$'\t' read -r name commit runtimes subdir path note; do
  [[ -z "$name" || "$name" == \#* || "$name" == name ]] && continue
  if (( ${#only[@]} )) && [[ " ${only[*]} " != *" $name "* ]]; then continue; fi
  total=$((total + 1))
  dir=$checkouts/${name//\//+}
  if [[ ! -d "$dir" ]]; then
    printf '%s\t%s\t%s\tnot checked out\t-\t-\t%s\n' "$name" "$commit" "$runtimes" "$dir is missing" >>"$rows"
    continue
  fi
  if [[ -d "$dir/.git" && "$commit" != "-" ]]; then
    git -C "$dir" checkout -q --force "$commit" 2>/dev/null || true
  fi
  src=$dir/${subdir#.}
  for spec in ${runtimes//,/ }; do
    import_base "$spec" || echo "compat: no base image for $spec" >&2
  done
  service=$(echo "${name##*/}" | tr -c 'A-Za-z0-9\n' '-' | cut -c1-36 | sed 's/^-*//')
  while (( ${#service} < 4 )); do service="$service-app"; done
  log=$work/$service.log
  echo "compat: $name ($runtimes)" >&2
  start=$(date +%s.%N)
  if "$runway" deploy --source "$src" --name "$service" >"$log" 2>&1; then
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    host=$("$runway" services describe "$service" -o json | jq -r .ServiceUrl || true)
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$data/certs/ca.pem" \
      --resolve "$host:$port:127.0.0.1" "https://$host:$port${path:-/}" || true)
    if [[ "$status" =~ ^[23] ]]; then
      result=answers
      ok=$((ok + 1))
    else
      result="deployed, answers $status"
    fi
    why=$note
  else
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    status=-
    result=failed
    # The line that says why: a failed build (its command, a refused file, a missing
    # image), else the instance's last log line (why it exited), else the last error.
    why=""
    for pattern in '==> Build failed' 'no base image|apprunner.yaml line' '^ *log \[' 'Deployment failed' '[Ee]rror'; do
      why=$(grep -E "$pattern" "$log" | tail -n 1 | sed 's/^[ |]*//; s/^log \[[0-9a-f]*\] //; s/\t/ /g' \
        | cut -c1-240 || true)
      [[ -n "$why" ]] && break
    done
    [[ -n "$note" ]] && why="$why ($note)"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%.0f\t%s\n' "$name" "$commit" "$runtimes" "$result" "$status" "$seconds" "$why" >>"$rows"
  # LOGS: a directory that keeps every deployment's output (build log included).
  [[ -n "${LOGS:-}" ]] && mkdir -p "$LOGS" && cp "$log" "$LOGS/$service.log"
  "$runway" services delete "$service" >/dev/null 2>&1 || true
done <bench/compat/repos.tsv
# In the order of repos.tsv: this run's row, else the last one recorded.
{
  printf 'name\tcommit\truntime\tresult\tstatus\tseconds\tnote\n'
  [[ -f $results ]] || : >"$results"
  awk -F'\t' -v rows="$rows" -v old="$results" '
    FILENAME == rows { row[$1] = $0; next }
    FILENAME == old { if (FNR > 1) last[$1] = $0; next }
    $1 != "name" && $1 !~ /^#/ && $1 != "" { if ($1 in row) print row[$1]; else if ($1 in last) print last[$1] }' \
    "$rows" "$results" bench/compat/repos.tsv
} >"$work/results.tsv"
mv "$work/results.tsv" "$results"
echo "compat: $ok of $total repositories answer; see $results" >&2
