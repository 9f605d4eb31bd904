#!/usr/bin/env bash
# COOPER's recipe end to end on the tiny offline backbone: synthetic data, stage 1, SFT, GRPO,
# then evaluation on the synthetic benchmark. A few minutes on a CPU; run from the repository root
# (after `bash scripts/setup_env.sh`) or anywhere `cooper-lib` is installed:
#     bash examples/two_stage_pipeline.sh [WORKDIR]
# COOPER's own data in place of the synthetic SFT and GRPO records (absolute paths):
#     SFT_DATA=/d/interleaved_reason.jsonl RL_DATA=/d/RL_data.jsonl RL_IMAGE_ROOT=/d/images \
#         bash examples/two_stage_pipeline.sh [WORKDIR]
set -euo pipefail
examples=$(cd "$(dirname "$0")" && pwd)
work=${1:-cooper_pipeline}
mkdir -p "$work" && cd "$work"
cli=${COOPER_LIB:-cooper-lib}

$cli data synth --out data/tiny/stage1 --n 64 --stage stage1 --size 64
$cli data synth --out data/tiny/sft --n 32 --stage sft --size 64
$cli data synth --out data/tiny/grpo --n 8 --stage grpo --size 64
$cli train stage1 --config "$examples/configs/stage1_tiny.yaml"
$cli train sft --config "$examples/configs/sft_tiny.yaml" ${SFT_DATA:+--data "$SFT_DATA"}
$cli train grpo --config "$examples/configs/grpo_tiny.yaml" ${RL_DATA:+--data "$RL_DATA"} \
    ${RL_IMAGE_ROOT:+--image_root "$RL_IMAGE_ROOT"}
$cli eval run --benchmark synthetic --model runs/tiny/grpo/final --n 8 --max-new-tokens 16 --output eval/grpo.jsonl
