#!/usr/bin/env bash
# Record the GPU rows of every study on an NVIDIA machine in one short run (docs/gpu.md).
#
# Usage: tools/gpu/record.sh OUTDIR [--dry-run] [--only STUDY,...]
#
#   GPU mode (default): on a machine with an NVIDIA GPU and CUDA builds of jax and torch already
#   installed, and asv's wheels carried in .whl/ (tools/gpu/fetch_wheels.sh): installs what is
#   missing from .whl without fetching, builds the extensions in place (one that fails only makes
#   its benchmarks skip), makes perflab importable from this checkout, and records the GPU classes
#   of each study with `asv run --python=same --set-commit-hash HEAD --record-samples`, one asv run
#   per study within a time budget (PERFLAB_GPU_BUDGET_S, default 480 s, study 5 last).
#   --dry-run: the same steps and asv command on this machine's CPU, with one small class per
#   study, PERFLAB_QUICK=1 and the current environment's asv; installs nothing.
#
# Results go to a scratch results_dir (a copy of asv.conf.json with absolute paths), never to the
# committed results/; OUTDIR receives the results JSON, machine.json, record.log (per-benchmark
# durations, nvidia-smi, versions) and summary.txt. Exits non-zero if any benchmark failed.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR [--dry-run] [--only linear_solve,sde,delta_rule,tree_transforms,meanflow]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out="$1"; shift
dry=0; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --only) [ $# -ge 2 ] || usage; only="$2"; shift ;;
    *) usage ;;
  esac
  shift
done

repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log="$out/record.log"
: >"$log"
say() { echo "$*" | tee -a "$log"; }
start=$SECONDS

# Study -> benchmark regex (asv -b, matched against "module.Class.method"). GPU: the classes whose
# rows differ on a GPU (every method: times and companions); dry run: one small class per study, one
# method each (every asv method is a process of its own), the same knobs at CPU sizes.
declare -A GPU_CLASSES=(
  [linear_solve]='^bench_linear_solve\.(LinearSolveJVP|BatchedLinearSolveJVP)\.'
  [sde]='^bench_sde\.(EnsembleSimulation|RNGBound)\.'
  [delta_rule]='^bench_delta_rule\.DeltaRule\.'
  [tree_transforms]='^bench_tree_transforms\.ApplyShardingRules\.'
  [meanflow]='^bench_meanflow\.(JVPCost|Forward|FMStep|MeanFlowStep)\.'
)
declare -A DRY_CLASSES=(
  [linear_solve]='^bench_linear_solve\.LinearSolveJVPDefault\.track_jvp\b'
  [sde]='^bench_sde\.RNGBound\.track_normals\b'
  [delta_rule]='^bench_delta_rule\.MatmulPeak\.track_matmul\b'
  [tree_transforms]='^bench_tree_transforms\.ApplyShardingRules\.track_apply\b'
  [meanflow]='^bench_meanflow\.FMStep\.track_fm_step\b'
)
# Priority order: the cheap, certain studies first; MeanFlow (XLA and CUDA-graph builds of CIFAR-size
# models) takes what is left of the budget.
STUDIES=(linear_solve delta_rule sde tree_transforms meanflow)
if [ -n "$only" ]; then
  IFS=, read -r -a STUDIES <<<"$only"
  for s in "${STUDIES[@]}"; do [ -n "${GPU_CLASSES[$s]+x}" ] || { echo "unknown study: $s" >&2; usage; }; done
fi

scratch="$(mktemp -d "${TMPDIR:-/tmp}/perflab-gpu.XXXXXX")"

if [ "$dry" = 1 ]; then
  # The active virtualenv's Python (CI's), else the checkout's .venv, else python3 on PATH.
  python="${PYTHON:-${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}}"
  [ -n "$python" ] && [ -x "$python" ] || python="$repo/.venv/bin/python"
  [ -x "$python" ] || python="$(command -v python3)"
  machine="dry-run-cpu"
  budget="${PERFLAB_GPU_BUDGET_S:-600}"
  # JAX and torch on the CPU; a private home for asv's machine file, the real compile caches.
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
  export PERFLAB_CACHE_DIR="${PERFLAB_CACHE_DIR:-$HOME/.cache/perflab}"
  export HOME="$scratch/home"
  mkdir -p "$HOME"
  export PERFLAB_QUICK=1
  export PERFLAB_SDE_SIZE=100x1000
  export PERFLAB_MEANFLOW_SIZE=cpu
  # The dry run proves the script, not a commit's figures: it runs on whatever tree is checked out.
  export PERFLAB_PROVENANCE_REASON="${PERFLAB_PROVENANCE_REASON:-dry run of tools/gpu/record.sh (results are discarded)}"
  say "== dry run on the CPU (python: $python)"
else
  python="${PYTHON:-python3}"
  command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: not an NVIDIA machine (use --dry-run)" >&2; exit 1; }
  gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)"
  count="$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)"
  machine="gpu-$(echo "$gpu" | sed -e 's/^NVIDIA //' | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed -e 's/-*$//')"
  if [ "$count" -gt 1 ]; then machine="$machine-x$count"; fi
  machine="${PERFLAB_GPU_MACHINE:-$machine}"
  budget="${PERFLAB_GPU_BUDGET_S:-480}"
  # torch and JAX share the GPU in one process (MeanFlow): JAX must not take 75% of it up front.
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  export PERFLAB_MEANFLOW_SIZE=gpu
  export PERFLAB_SDE_SIZE="${PERFLAB_SDE_SIZE:-gpu}"
  # Trims that keep study 5 within the window (docs/gpu.md); set them empty to run everything.
  export PERFLAB_MEANFLOW_RATIOS="${PERFLAB_MEANFLOW_RATIOS-0.25}"
  export PERFLAB_MEANFLOW_SKIP="${PERFLAB_MEANFLOW_SKIP-compiled}"
  export PERFLAB_MEANFLOW_PROCESSES="${PERFLAB_MEANFLOW_PROCESSES-2}"
  say "== GPU recording on $machine"
  nvidia-smi 2>&1 | tee -a "$log"
fi

# The checkout may be owned by another user than the one running (a copied tree as root).
if ! git rev-parse HEAD >/dev/null 2>&1; then
  [ "$dry" = 1 ] || git config --global --add safe.directory "$repo"
fi
commit="$(git rev-parse HEAD)"
if [ "$dry" = 0 ] && [ -z "${PERFLAB_PROVENANCE_REASON:-}" ] \
   && [ -n "$(git status --porcelain --untracked-files=no -- . ':(exclude)results')" ]; then
  echo "the checkout has uncommitted changes: a recorded run must time commit $commit as it is" >&2
  echo "(commit first, or set PERFLAB_PROVENANCE_REASON to say why)" >&2
  exit 1
fi
say "commit: $commit"

if [ "$dry" = 0 ]; then
  say "== installing asv from .whl (only what $python lacks)"
  [ -d .whl ] || { echo "no .whl folder: run tools/gpu/fetch_wheels.sh where PyPI is reachable, carry .whl" >&2; exit 1; }
  missing=()
  for whl in .whl/*.whl; do
    name="$(basename "$whl" | cut -d- -f1)"
    if ! "$python" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$name" 2>/dev/null; then
      missing+=("$whl")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    "$python" -m pip install --quiet --no-index --no-deps --no-compile "${missing[@]}" 2>&1 | tee -a "$log"
  fi
  say "== building the extensions in place"
  "$python" tools/gpu/build_ext.py 2>&1 | tee -a "$log"
  # perflab importable from this checkout (what an editable install does), without pip
  # rebuilding the extensions: one that failed above would fail the whole install.
  site="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$repo/src" >"$site/perflab-checkout.pth"
fi

say "== versions"
"$python" - <<'EOF' 2>&1 | tee -a "$log"
import importlib.metadata as m
import platform
print("python", platform.python_version())
for name in ("asv", "asv_runner", "numpy", "scipy", "jax", "jaxlib", "equinox", "lineax", "diffrax", "torch"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "not installed")
import jax
print("jax devices", jax.devices())
import torch
print("torch cuda", torch.cuda.is_available(), torch.version.cuda)
import perflab
print("perflab from", perflab.__file__)
EOF

# A copy of asv.conf.json with absolute paths and a scratch results_dir: the committed results/
# stay untouched; asv reads "repo" relative to the config file, so it is absolute too.
conf="$scratch/asv.conf.json"
"$python" - "$repo" "$scratch" "$conf" <<'EOF'
import json, os, sys
repo, scratch, conf = sys.argv[1:]
with open(os.path.join(repo, "asv.conf.json")) as fh:
    config = json.load(fh)
config.update(repo=repo, benchmark_dir=os.path.join(repo, "benchmarks"), results_dir=os.path.join(scratch, "results"),
              env_dir=os.path.join(scratch, "env"), html_dir=os.path.join(scratch, "html"))
with open(conf, "w") as fh:
    json.dump(config, fh, indent=4)
EOF

asv=("$python" -m asv)
say "== asv machine ($machine)"
"${asv[@]}" machine --yes --machine "$machine" --config "$conf" 2>&1 | tee -a "$log"

declare -A status
for study in "${STUDIES[@]}"; do
  if [ "$dry" = 1 ]; then regex="${DRY_CLASSES[$study]}"; else regex="${GPU_CLASSES[$study]}"; fi
  left=$((budget - (SECONDS - start)))
  if [ "$left" -lt 30 ]; then
    status[$study]="not run: the time budget (${budget} s) was spent"
    say "== $study: ${status[$study]}"
    continue
  fi
  say "== $study: -b '$regex' (${left} s of the budget left)"
  t0=$SECONDS
  rc=0
  # asv exits 0 on failed benchmarks (read from the log below); timeout ends a study that
  # overruns the budget, and asv keeps only the studies it finished.
  if [ "$dry" = 1 ] && [ "$study" = tree_transforms ]; then
    # One host device, as one GPU: every mesh skips before a model is built (the GPU run's path).
    export XLA_FLAGS="--xla_force_host_platform_device_count=1"
  fi
  timeout --kill-after=10 "$left" "${asv[@]}" run --config "$conf" --python=same --set-commit-hash "$commit" \
    --record-samples --machine "$machine" --show-stderr --durations all -b "$regex" 2>&1 | tee -a "$log" \
    || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    status[$study]="cut at the time budget after $((SECONDS - t0)) s: not recorded"
  elif [ "$rc" != 0 ]; then
    status[$study]="asv exited $rc after $((SECONDS - t0)) s"
  else
    status[$study]="recorded in $((SECONDS - t0)) s"
  fi
  say "== $study: ${status[$study]}"
  if [ "$dry" = 1 ]; then unset XLA_FLAGS; fi
done

results="$scratch/results/$machine"
cp "$results"/*.json "$out"/ 2>/dev/null || true
{
  echo "machine: $machine"
  echo "commit: $commit"
  echo "mode: $([ "$dry" = 1 ] && echo dry-run || echo gpu)"
  echo "total: $((SECONDS - start)) s"
  for study in "${STUDIES[@]}"; do echo "$study: ${status[$study]}"; done
} >"$out/summary.txt"
tee -a "$log" <"$out/summary.txt"

# Exit 1: a benchmark failed or asv did; 3: a study did not fit the budget (the rest is recorded).
code=0
for study in "${STUDIES[@]}"; do
  case "${status[$study]}" in recorded*) ;; asv*) code=1 ;; *) [ "$code" = 1 ] || code=3 ;; esac
done
if grep -E "^\[[ 0-9.]+%\] ·+ .* failed$" "$log"; then
  echo "benchmarks failed (above)" | tee -a "$log"; code=1
fi
rm -rf "$scratch"
exit "$code"
