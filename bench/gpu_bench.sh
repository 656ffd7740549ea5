#!/usr/bin/env bash
# The SFT bench on a lent CUDA machine (bench/RESULTS.md's GPU block), as one prepared command:
#   device run, carry [".whl"], command: bash bench/gpu_bench.sh
# .whl holds cp312 wheels of what that machine's image lacks (trl, datasets, pydantic, peft, gguf
# and, where its own are too old, pyarrow / fsspec); pip takes only what is missing or too old.
# One model per bench/run.py call, each with its own JSON, so a run cut off by the lease keeps the
# model measured before it. 40 chats at cutoff 2048 pack into 22 / 21 ducktune steps (>= 20).
# Measured 2026-12-04 on the H200: each side run takes 22-47 s (process start, model load and the
# held-out evaluation included), so one model's 9 runs need ~250 s (qwen2-scaled) to ~330 s
# (smollm2-shape): with 15 min of device time and a ~1 min start, one model per lease call
# (MODELS=...), or REPEATS=2 for both in one (3 alternations by default here: the CPU bench's 5
# would not fit). When the JSON is missing, bench/gpu_log.py renders the logs.
# Locally: copy the JSONs and logs to bench/results/gpu/, then merge them into bench/results/bench_gpu.json
# and render the GPU block with
#   bench/run.py --from-json bench/results/gpu/bench_gpu_qwen2-scaled.json bench/results/gpu/bench_gpu_smollm2-shape.json --write
set -uo pipefail
OUT=${OUT:-/tmp/gpu-bench}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .whl trl datasets peft pydantic gguf 2>&1 | tail -5
python3 -m pip list 2>/dev/null | grep -E "^(torch|transformers|trl|datasets|peft|accelerate|pydantic|pyarrow) "
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 DUCKTUNE_CACHE=/tmp/ducktune-cache TOKENIZERS_PARALLELISM=false
for model in ${MODELS:-qwen2-scaled smollm2-shape}; do  # MODELS=smollm2-shape: one model per lease call
    timeout "${BENCH_TIMEOUT:-400}" python3 bench/run.py --models "$model" --sections sft --samples 40 --heldout 4 \
        --repeats "${REPEATS:-3}" --json "$OUT/bench_gpu_$model.json" "$@" 2>&1 | tee "$OUT/log_$model.txt"
done
