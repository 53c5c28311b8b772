#!/usr/bin/env bash
# The GPU run in one command, on an offline CUDA machine that has PyTorch: the CUDA tests first, then, if
# they pass, the GPU suite. Everything it writes goes under $OUT (default bench/results/gpu-run/).
#
#   bench/gpu_pack.sh                  # beforehand, on a machine with a package index: writes .gpu-pack/
#   bash bench/gpu_run.sh              # on the GPU machine, in the project's root (the tree with .gpu-pack/)
#   bash bench/gpu_run.sh --keep-going --sections ways-sd15,batch   # suite even after failed tests; suite options
#   bash bench/gpu_run.sh --sections flux,sd3   # FLUX.1-dev and SD3.5 Large at full size (not in the default run)
#   bash bench/gpu_run.sh --device cpu # a rehearsal without a GPU: the CUDA tests skip, the suite's CPU mode runs
#
# 1. source .gpu-pack/env.sh: diffusers and rerun-sdk (../shared/gpu/pack.sh);
# 2. install from .gpu-pack/wheels/ what the image lacks of pydantic (needed to read any manifest) and pytest;
# 3. control adherence needs scikit-image and SciPy, which are not packed (too big to carry): without them
#    the suite runs with --no-adherence, and says so in its table;
# 4. record the machine (nvidia-smi, versions, a C compiler for --compile's kernels);
# 5. the CUDA tests (tests/test_cuda.py); on a failure, stop, unless --keep-going;
# 6. bench/gpu_suite.py: $OUT/results/gpu-suite-<card>.json and .md, to commit under bench/results/gpu/.
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda
keep_going=0
suite_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --keep-going) keep_going=1; shift ;;
    *) suite_args+=("$1"); shift ;;
  esac
done
out=${OUT:-bench/results/gpu-run}
mkdir -p "$out"
exec > >(tee -a "$out/gpu-run.log") 2>&1
python=${PYTHON:-python3}
step() { echo; echo "== $(date -u +%H:%M:%S) $*"; }

step "1. the pack: diffusers and rerun-sdk"
if [ -f .gpu-pack/env.sh ]; then
  # shellcheck disable=SC1091
  source .gpu-pack/env.sh || echo "note: env.sh did not finish its version report"
else
  echo "no .gpu-pack/: using the packages installed here"
fi
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"  # this tree's rr_controlnet, installed or not

step "2. pydantic and pytest"
missing=$("$python" - <<'PY'
import importlib.util
need = []
try:
    import pydantic
    if tuple(int(part) for part in pydantic.VERSION.split(".")[:2]) < (2, 6):
        need.append("pydantic")
except ImportError:
    need.append("pydantic")
if importlib.util.find_spec("pytest") is None:
    need.append("pytest")
print(" ".join(need))
PY
)
if [ -n "$missing" ]; then
  if [ ! -d .gpu-pack/wheels ]; then
    echo "missing: $missing, and no .gpu-pack/wheels/ to install them from: run bench/gpu_pack.sh first"
    exit 2
  fi
  extras=${TMPDIR:-/tmp}/rrc-extras
  echo "installing $missing from .gpu-pack/wheels/ into $extras"
  # shellcheck disable=SC2086  # one word per package
  "$python" -m pip install -q --no-index --find-links .gpu-pack/wheels --target "$extras" --upgrade $missing || exit 2
  export PYTHONPATH="$extras:$PYTHONPATH"
else
  echo "installed already"
fi

step "3. control adherence"
adherence=()
if "$python" -c "import skimage.metrics, scipy.sparse.csgraph, scipy.spatial" 2>/dev/null; then
  echo "scikit-image and SciPy present: items are scored as in any batch"
else
  adherence=(--no-adherence)
  echo "scikit-image or SciPy missing: the suite runs with --no-adherence (the CUDA tests skip the scores too)"
fi

step "4. the machine"
if command -v nvidia-smi >/dev/null; then nvidia-smi | tee "$out/nvidia-smi.txt"; else echo "no nvidia-smi"; fi
command -v cc >/dev/null || command -v gcc >/dev/null \
  || echo "warning: no C compiler: torch.compile (--compile) may fail to build its kernels"
"$python" - "$device" <<'PY' || exit 2
import sys, importlib.metadata as m
import torch
versions = {dist: m.version(dist) for dist in ("torch", "diffusers", "rerun-sdk", "transformers", "pydantic", "pytest")}
print(versions, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA device: nothing to measure (bash bench/gpu_run.sh --device cpu rehearses the run)")
PY

step "5. the CUDA tests"
"$python" -m pytest tests/test_cuda.py -m cuda -q -rfEs -p no:cacheprovider --junitxml "$out/cuda-tests.xml"
tests=$?
if [ "$tests" -ne 0 ]; then
  echo "CUDA tests failed (exit $tests): see above and $out/cuda-tests.xml"
  if [ "$keep_going" -eq 0 ]; then
    echo "stopping before the suite; 'bash bench/gpu_run.sh --keep-going' runs it anyway"
    exit 1
  fi
fi

step "6. the GPU suite"
"$python" bench/gpu_suite.py --device "$device" --out "$out/results" "${adherence[@]}" "${suite_args[@]}"
suite=$?
step "done: tests exit $tests, suite exit $suite; results in $out/results/"
ls -l "$out/results" 2>/dev/null
exit $((tests != 0 || suite != 0))
