#!/usr/bin/env bash
# AdaMML at the paper's size on one machine (a GPU by default), in one go, in under 8 minutes on one GPU:
#
#   1. training steps/s of the AdaMML stage (benchmarks/train_speed.py): its recognition, policy and cached-policy
#      steps at the paper's training sizes (5 segments x 8 frames, ResNet-50 at 224, MobileNetV2 policy at 160,
#      RGB + flow + audio), per-GPU batch 6 (the paper's 72 on 12 GPUs), in fp32 and bf16;
#   2. network videos/s of AdaMML against weighted fusion and the unimodal models (`adamml bench --synthetic`:
#      10 test segments, random weights, which do not change the speed), RGB+Audio and RGB+Flow+Audio, batches
#      of 1, 8 and 32 videos, fp32 and bf16;
#   3. the data loader's training samples/s per worker at the paper's settings (benchmarks/loader_speed.py, on a
#      made-up store of JPEG frames, flow and audio written first), and what keeping its workers from pass to pass
#      (data.persistent_workers) saves at each pass's start;
#   4. on a GPU, the same loader with the JPEGs decoded, cropped and finished on the GPU (`data.decode: device`:
#      the workers only read the files' bytes), on the same store;
#   5. end to end on video files (`adamml bench --synthetic CONFIG --videos`): `adamml predict`'s whole path at
#      the paper's sizes (decoding, the policy's inputs, the policy, optical flow only where chosen, ResNet-50s),
#      AdaMML at RATES against weighted fusion, with DIS and with TV-L1 flow, on 10-second videos written by
#      `adamml synth` at 320 x 320 as ordinary H.264 (--crf 23; E2E_VIDEOS of them). TV-L1 (E2E_TVL1=1, on the first video only) runs on the
#      CPU and costs about 1 s a field, some 8 minutes for the two models: outside the 8-minute budget, off by
#      default. Needs PyAV: skipped without it, or installed from a folder of wheels given as WHEELS (the GPU box
#      has no internet).
#
# All five take more than 8 minutes on one GPU (1 and 2: about 6 on an H200); PARTS picks some of them:
#
#   bash benchmarks/paper_size_bench.sh                         # GPU; JSON and a log under runs/paper-size-bench
#   PARTS="loader decode e2e" bash benchmarks/paper_size_bench.sh   # parts 3-5 only (train bench loader decode e2e)
#   DEVICE=cpu VIDEOS=4 BATCHES="2" PRECISIONS=fp32 TRAIN_STEPS=2 LOADER_ARGS="--workers 0 1 --videos 24 \
#     --seconds 4" bash benchmarks/paper_size_bench.sh                         # a quick check on a CPU
#
# Parts 1-3 need only torch, numpy, opencv, rich and pyyaml (runs from src/ without installing; no PyAV). The paper
# (supplementary Sec. F, one V100, PyTorch 1.2): 1.96x over weighted fusion on Kinetics-Sounds (11.6 vs 5.9
# videos/s), 1.42x on ActivityNet. RATES (default 0.5 per modality, about the paper's 35-55 % saving) sets the
# share of segments each recognizer runs on. Each part has its own time limit, so one slow part cannot take the
# others' time; a part that fails is reported and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
VIDEOS=${VIDEOS:-32}
BATCHES=${BATCHES:-"1 8 32"}
PRECISIONS=${PRECISIONS:-"fp32 bf16"}
CONFIGS=${CONFIGS:-"paper-rgb-audio paper-rgb-flow-audio"}
REPEATS=${REPEATS:-2}
RATES=${RATES:-0.5}
TRAIN_BATCH=${TRAIN_BATCH:-6}
TRAIN_STEPS=${TRAIN_STEPS:-10}
LOADER_ARGS=${LOADER_ARGS:-"--workers 1 4 8 12 --max-batches 6 --samples 2 --pass-starts 3"}
E2E_VIDEOS=${E2E_VIDEOS:-4}
E2E_CONFIG=${E2E_CONFIG:-paper-rgb-flow-audio}
E2E_TVL1=${E2E_TVL1:-0}
DECODE_ARGS=${DECODE_ARGS:-"--workers 1 4 8 --max-batches 6 --samples 2"}
PARTS=${PARTS:-"train bench loader decode e2e"}
OUT=${OUT:-runs/paper-size-bench}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$OUT"
failed=0
part() {  # part NAME SECONDS COMMAND...: run with a time limit, report its time and status
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "=== $name (limit ${limit} s)"
  timeout "$limit" "$@"
  local rc=$?
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}
wanted() { [[ " $PARTS " == *" $1 "* ]]; }
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; fi
"$PYTHON" -c 'import torch, os; print("torch", torch.__version__, "cpus", os.cpu_count())'
if wanted train; then
  # shellcheck disable=SC2086
  part "training steps" 150 "$PYTHON" benchmarks/train_speed.py --device "$DEVICE" --batch "$TRAIN_BATCH" \
    --steps "$TRAIN_STEPS" --precision $PRECISIONS --json "$OUT/train-speed.json"
fi
for precision in $PRECISIONS; do
  wanted bench || break
  for config in $CONFIGS; do
    for batch in $BATCHES; do
      part "bench $config batch $batch $precision" 60 "$PYTHON" -m adamml.cli.bench --synthetic "$config" \
        --device "$DEVICE" --num-videos "$VIDEOS" --batch-size "$batch" --repeats "$REPEATS" --rates "$RATES" \
        --precision "$precision" --json "$OUT/$config-batch$batch-$precision.json"
    done
  done
done
if wanted loader; then
  # shellcheck disable=SC2086
  part "data loader" 260 "$PYTHON" benchmarks/loader_speed.py --store "$OUT/loader-store" $LOADER_ARGS \
    --json "$OUT/loader-speed.json"
fi
if wanted decode && [ "$DEVICE" = cuda ]; then
  # shellcheck disable=SC2086
  part "data loader, JPEGs decoded on the GPU" 120 "$PYTHON" benchmarks/loader_speed.py --store "$OUT/loader-store" \
    --decode device $DECODE_ARGS --json "$OUT/loader-speed-device.json"
fi
if ! wanted e2e; then
  :
elif "$PYTHON" -c "import av" 2>/dev/null || { [ -n "${WHEELS:-}" ] && "$PYTHON" -m pip install -q --no-index \
     --no-deps --no-compile --target "$OUT/site" "$WHEELS"/av-*.whl && export PYTHONPATH="src:$OUT/site"; }; then
  per_class=$(( (E2E_VIDEOS + 1) / 2 ))
  part "videos for end to end" 120 "$PYTHON" -m adamml.cli synth --out "$OUT/e2e-videos" --classes 2 \
    --train-per-class 1 --val-per-class 1 --test-per-class "$per_class" --segments 10 --frames-per-segment 32 \
    --size 320 --crf 23 --quiet
  part "end to end, DIS flow" 180 "$PYTHON" -m adamml.cli.bench --synthetic "$E2E_CONFIG" --device "$DEVICE" \
    --videos "$OUT/e2e-videos/videos/test" --limit "$E2E_VIDEOS" --flow dis --rates "$RATES" --no-unimodal \
    --json "$OUT/e2e-dis.json"
  if [ "$E2E_TVL1" = 1 ]; then
    part "end to end, TV-L1 flow" 900 "$PYTHON" -m adamml.cli.bench --synthetic "$E2E_CONFIG" --device "$DEVICE" \
      --videos "$OUT/e2e-videos/videos/test" --limit 1 --flow tvl1 --rates "$RATES" --no-unimodal \
      --json "$OUT/e2e-tvl1.json"
  fi
else
  echo "=== end to end: skipped (no PyAV; give WHEELS=a folder with PyAV's wheel for this Python, e.g. from pip download)"
fi
"$PYTHON" benchmarks/summarize_paper_bench.py "$OUT" || failed=$((failed + 1))
echo "wrote $OUT/*.json; parts failed: $failed"
exit $((failed > 0))
