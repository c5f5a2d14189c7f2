#!/usr/bin/env bash
# Instance start: create -> healthy for the static test image with runway's local
# runtime, against `runc run` of the same bundle (the floor) and `podman run` of the same
# image, measured in the same run. Run as root. Not a test: see README.md beside this
# file.
#
#   bench/runtime/run.sh              # 20 runs of each
#   RUNS=50 bench/runtime/run.sh
set -euo pipefail

RUNS=${RUNS:-20}
repo_root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo_root/target}

if [[ $(id -u) != 0 ]]; then
  echo "run as root: instances need runc, namespaces, cgroups and nftables" >&2
  exit 1
fi
"$repo_root/scripts/deps" test
cd "$repo_root"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r), $(runc --version | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -p runway-runtime --bench instance_start -- --runs "$RUNS"
