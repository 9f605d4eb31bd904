#!/usr/bin/env bash
# One prepared GPU check of the fused linear cross-entropy, for a lent H100/H200 (under 5 minutes).
#
#   bash benchmarks/gpu_check.sh            # from the repository root; PYTHON=... to choose the interpreter
#
# 1. Environment: torch with CUDA must already be installed (this script installs nothing); it says
#    which of triton, pytest, liger-kernel and cut-cross-entropy are missing and skips what needs them.
# 2. The op tests on CUDA (COOPER_TEST_DEVICE=cuda, TRITON_INTERPRET=0: the real kernels; for the
#    linear CE also autotuning, the addmm(out_dtype=) path, the no-host-sync check); the HF patch
#    test stays on CPU (tiny models), it is not run here.
# 3. One table: ours vs Liger and CCE at bf16, N in {8k, 32k}, H in {896, 3584}, V = 151,936,
#    forward+backward time and peak memory as ratios to the fastest peer.
# 4. A chunk-size sweep of ours at N = 32k (the CUDA default chunk is picked from it).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TRITON_INTERPRET=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
status=0

echo "== environment"
if ! "$PY" - <<'PY'
import importlib.util, sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device: nothing to check")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, "
      f"addmm(out_dtype=) {'yes' if torch.torch_version.TorchVersion(torch.__version__) >= (2, 8) else 'no (fallback path)'}")
for name in ("triton", "pytest", "liger_kernel", "cut_cross_entropy", "transformers"):
    found = importlib.util.find_spec(name) is not None
    print(f"  {name}: {'found' if found else 'MISSING'}")
PY
then
    exit 1
fi
have() { "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }

echo "== op tests on CUDA"
if have pytest; then
    COOPER_TEST_DEVICE=cuda timeout 120 "$PY" -m pytest -q -n 0 -p no:cacheprovider \
        tests/ops/test_linear_ce.py tests/ops/test_linear_ce_module.py || status=1
    echo "-- the other fused ops on CUDA"
    COOPER_TEST_DEVICE=cuda timeout 60 "$PY" -m pytest -q -n 0 -p no:cacheprovider tests/ops \
        --ignore tests/ops/test_linear_ce.py --ignore tests/ops/test_linear_ce_module.py \
        --ignore tests/ops/test_hf_patch.py --ignore tests/ops/test_dispatch.py || status=1
else
    echo "pytest is missing: tests skipped"
    status=1
fi

methods=(ours)
have liger_kernel && methods+=(liger) || echo "liger-kernel is missing: not timed"
have cut_cross_entropy && methods+=(cce) || echo "cut-cross-entropy is missing: not timed"

echo "== ours vs peers (bf16, fwd+bwd, ratios to the fastest peer)"
timeout 150 "$PY" benchmarks/ops.py --table lce --device cuda --dtype bfloat16 --n 8192 32768 --h 896 3584 \
    --methods "${methods[@]}" --baseline peers --warmup 2 --repeats 5 || status=1

echo "== chunk-size sweep of ours (bf16, N = 32768; the fastest chunk whose memory is acceptable is the default)"
timeout 60 "$PY" benchmarks/ops.py --table lce --device cuda --dtype bfloat16 --n 32768 --h 896 3584 \
    --methods ours --chunk-sizes 512 1024 2048 4096 8192 --warmup 1 --repeats 3 || status=1
exit $status
