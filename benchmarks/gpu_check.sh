#!/usr/bin/env bash
# One prepared GPU check of the fused losses, for a lent H100/H200 (about 7 minutes in all on an H200).
#
#   bash benchmarks/gpu_check.sh            # from the repository root; PYTHON=... to choose the interpreter
#   SECTIONS="env tests" bash benchmarks/gpu_check.sh    # a subset of: env tests peers sweep dense
#
# Each step has its own timeout; do not wrap the script in another one: timeout(1) runs each command
# in a process group of its own, so an outer one stops this script but not the benchmark it started,
# which then times on beside the next section (seen on the first H200 run).
#
# env:    torch with CUDA must already be installed (this script installs nothing); it says which of
#         triton, pytest, liger-kernel and cut-cross-entropy are missing and skips what needs them.
# tests:  the op tests on CUDA (COOPER_TEST_DEVICE=cuda, TRITON_INTERPRET=0: the real kernels; for
#         the linear CE also autotuning, the addmm(out_dtype=) path, the no-host-sync check); the HF
#         patch and dispatch tests stay on CPU (tiny models), they are not run here.
# peers:  ours (its default in bf16: the vocabulary sweep) and ours-rows (the rows sweep, an fp32
#         weight-gradient accumulator) vs Liger and CCE at bf16, N in {8k, 32k}, H in {896, 3584},
#         V = 151,936, forward + backward time and peak memory as ratios to the fastest peer.
# sweep:  a chunk-size sweep of the rows sweep at N = 32k (its CUDA default chunk is picked from it).
# dense:  flow-matching, SILog, SSI and segmentation CE + Dice, ours against the PyTorch composition,
#         fp32 and bf16: achieved bandwidth against the bytes that must move.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
SECTIONS="${SECTIONS:-env tests peers sweep dense}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TRITON_INTERPRET=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
status=0
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
have() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }

"$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || {
    echo "torch sees no CUDA device: nothing to check"
    exit 1
}

if want env; then
    echo "== environment"
    "$PY" - <<'PY'
import importlib.util
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, "
      f"addmm(out_dtype=) {'yes' if torch.torch_version.TorchVersion(torch.__version__) >= (2, 8) else 'no (fallback path)'}")
for name in ("triton", "pytest", "liger_kernel", "cut_cross_entropy", "transformers"):
    spec = importlib.util.find_spec(name)
    version = getattr(__import__(name), "__version__", "") if spec else ""
    print(f"  {name}: {('found ' + version).strip() if spec else 'MISSING'}")
PY
fi

if want tests; then
    echo "== op tests on CUDA"
    if have pytest; then
        COOPER_TEST_DEVICE=cuda timeout 240 "$PY" -m pytest -q -n "${JOBS:-8}" -p no:cacheprovider -rfE tests/ops \
            --ignore tests/ops/test_hf_patch.py --ignore tests/ops/test_dispatch.py || status=1
    else
        echo "pytest is missing: tests skipped"
        status=1
    fi
fi

methods=(ours ours-rows)
have liger_kernel && methods+=(liger) || echo "liger-kernel is missing: not timed"
have cut_cross_entropy && methods+=(cce) || echo "cut-cross-entropy is missing: not timed"

if want peers; then
    echo "== ours vs peers (bf16, fwd+bwd, ratios to the fastest peer)"
    timeout 300 "$PY" benchmarks/ops.py --table lce --device cuda --dtype bfloat16 --n 8192 32768 --h 896 3584 \
        --methods "${methods[@]}" --baseline peers --warmup 2 --repeats 5 || status=1
fi

if want sweep; then
    echo "== chunk-size sweep of the rows sweep (bf16, N = 32768; the fastest chunk whose memory is acceptable is the default)"
    timeout 90 "$PY" benchmarks/ops.py --table lce --device cuda --dtype bfloat16 --n 32768 --h 896 3584 \
        --methods ours-rows --chunk-sizes 1024 2048 4096 8192 --warmup 1 --repeats 3 || status=1
fi

if want dense; then
    for dtype in float32 bfloat16; do
        echo "== dense and flow losses ($dtype)"
        timeout 90 "$PY" benchmarks/ops.py --table dense --device cuda --dtype "$dtype" --warmup 2 || status=1
    done
fi
exit $status
