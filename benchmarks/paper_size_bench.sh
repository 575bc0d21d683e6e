#!/usr/bin/env bash
# Network speed of AdaMML against weighted fusion and the unimodal models at the paper's size (ResNet-50 at 224,
# 8 frames, 10 test segments, MobileNetV2 policy at 160; random weights, which do not change the speed) for
# RGB+Audio and RGB+Flow+Audio: `adamml bench --synthetic`, one JSON per configuration and batch size.
#
#   bash benchmarks/paper_size_bench.sh                        # GPU: DEVICE=cuda, 32 videos, batches of 1 and 8
#   DEVICE=cpu VIDEOS=4 BATCHES=2 bash benchmarks/paper_size_bench.sh
#
# Needs only torch, numpy, opencv, rich and pyyaml (runs from src/ without installing; no PyAV).
# The paper (supplementary Sec. F, one V100, PyTorch 1.2): 1.96x over weighted fusion on Kinetics-Sounds (11.6 vs
# 5.9 videos/s), 1.42x on ActivityNet. RATES (default 0.5 per modality, about the paper's 35-55 % saving) sets
# the share of segments each recognizer runs on.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
VIDEOS=${VIDEOS:-32}
BATCHES=${BATCHES:-"1 8"}
CONFIGS=${CONFIGS:-"paper-rgb-audio paper-rgb-flow-audio"}
REPEATS=${REPEATS:-3}
RATES=${RATES:-0.5}
OUT=${OUT:-runs/paper-size-bench}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; fi
for config in $CONFIGS; do
  for batch in $BATCHES; do
    PYTHONPATH=src "$PYTHON" -m adamml.bench --synthetic "$config" --device "$DEVICE" --num-videos "$VIDEOS" \
      --batch-size "$batch" --repeats "$REPEATS" --rates "$RATES" --json "$OUT/$config-batch$batch.json"
  done
done
echo "wrote $OUT/*.json"
