#!/usr/bin/env bash
# The CUDA checks of a lent GPU machine, as one prepared command (device run, carry [".whl"]):
#   bash bench/gpu_check.sh
# 1. The family matrix on CUDA (bench/families.py, 4 shards at once): every family's stand-in trained in the
#    machine's default dtype (bf16), the batching it chose (packed, or padded and why), its loss masks, the merge
#    and the GGUF files. llama.cpp and Go are not on that machine: their columns are not read from this run.
# 2. fp16 training (GPUs without bf16, e.g. T4, RTX 20xx) on a subset of families: train and masks.
# 3. QLoRA (bitsandbytes 4-bit) on a subset of families: train, masks, merge and GGUF.
# 4. bench/window_speed.py: packed vs padded training at Gemma 3 1B's shape (the sliding-window packed attention).
# 5. bench/window_probe.py: for the 4x gap step 4 measured on an H100 (2026-12-05), packed steps and attention
#    calls on new shapes with ducktune's SDPA backend choice (no cuDNN) and PyTorch's own, and a profiled step.
# .whl holds cp312 wheels of what the image lacks, installed into /tmp/site ahead of the image's packages. The run of
# 2026-12-05 carried pydantic (+ pydantic_core, annotated_types, typing_inspection), gguf and bitsandbytes and ran on
# the image's transformers 5.17, which is below ducktune's floor since (5.24; the floor is not checked here, where
# ducktune runs from src/ without its metadata). Next time carry transformers>=5.24 with huggingface_hub 2.x and
# what they need that the image lacks (hf_xet, httpx2, httpcore2, truststore, kernels, tomlkit, click, regex,
# tokenizers: ~25 MB, wheels as `python3 -m pip download --no-deps --python-version 3.12 ...` gives them);
# bitsandbytes (43 MB) then no longer fits the 64 MiB a call carries: QLORA= skips it, or run it in a second call.
# Locally (a smoke run on the CPU): PY=.venv/bin/python FAMILIES=gemma3,qwen2.5 FP16= QLORA= WINDOW_ARGS="--shape
# standin --samples 8 --cutoff 64 --repeats 1" PROBE="--cpu-smoke --folder DIR" bash bench/gpu_check.sh
# Back here: copy $OUT's files to bench/results/gpu/ and render with bench/gpu_families.py --write and
# bench/window_speed.py --render.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
PY=${PY:-python3}
mkdir -p "$OUT"
LOG="$OUT/gpu_check_log.txt"
started=$(date +%s)
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        2>&1 | tail -3
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 DUCKTUNE_CACHE=/tmp/ducktune-cache TRANSFORMERS_VERBOSITY=error
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  "$PY" -c "import torch, transformers, peft, accelerate; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__, 'cuda',
torch.cuda.is_available()); import ducktune.train.recipe, bitsandbytes; print('bitsandbytes', bitsandbytes.__version__)"
} 2>&1 | tee -a "$LOG"

# 1-3: four bf16 shards, the fp16 and the QLoRA subsets at once (a few GB of GPU memory each; 2 CPU threads each)
FAMILIES=${FAMILIES-}
FP16=${FP16-qwen2.5,qwen3,llama3,mistral-v0.1,phi3,gemma3,granite,smollm2}
QLORA=${QLORA-qwen2.5,llama3,mistral-v0.1,phi3,gemma3,gemma2,smollm2,glm4}
pids=()
for k in 1 2 3 4; do
    OMP_NUM_THREADS=2 timeout "${FAMILIES_TIMEOUT:-240}" "$PY" bench/families.py ${FAMILIES:+--families "$FAMILIES"} \
        --shard "$k/4" --json "$OUT/families_bf16_$k.json" --out "/tmp/families_$k.md" >"/tmp/families_$k.log" 2>&1 &
    pids+=($!)
done
if [ -n "$FP16" ]; then
    OMP_NUM_THREADS=2 timeout "${FAMILIES_TIMEOUT:-240}" "$PY" bench/families.py --families "$FP16" --train-only \
        --set model.dtype=float16 --json "$OUT/families_fp16.json" --out /tmp/families_fp16.md \
        >/tmp/families_fp16.log 2>&1 &
    pids+=($!)
fi
if [ -n "$QLORA" ]; then
    OMP_NUM_THREADS=2 timeout "${FAMILIES_TIMEOUT:-240}" "$PY" bench/families.py --families "$QLORA" \
        --set train.method=qlora --json "$OUT/families_qlora.json" --out /tmp/families_qlora.md \
        >/tmp/families_qlora.log 2>&1 &
    pids+=($!)
fi
for pid in "${pids[@]}"; do wait "$pid"; done
for f in /tmp/families_*.log; do echo "== $f"; grep -v "^|" "$f"; done >>"$LOG" 2>&1
echo "families done after $(( $(date +%s) - started )) s" | tee -a "$LOG"

# 4: alone on the machine, so its timings are its own
timeout "${WINDOW_TIMEOUT:-240}" "$PY" bench/window_speed.py --json "$OUT/window_speed.json" ${WINDOW_ARGS:-} 2>&1 \
    | tee -a "$LOG"
# 5: tables only (into the log)
[ -n "${PROBE-x}" ] && timeout "${PROBE_TIMEOUT:-120}" "$PY" bench/window_probe.py ${PROBE:-} 2>&1 \
    | grep -v "Writing model shards" | tee -a "$LOG"
echo "all done after $(( $(date +%s) - started )) s" | tee -a "$LOG"
"$PY" - "$OUT" <<'EOF'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("families_*.json")):
    rows = json.loads(path.read_text())
    bad = [r["family"] + ": " + "; ".join(f"{c}={v}" for c, v in r["cells"].items()
                                        if c in ("train (loss falls)", "masks", "merge", "GGUF f16 + q8_0")
                                        and not v.startswith(("PASS", "n/a")))
           for r in rows]
    print(path.name, len(rows), "families;", sorted({r.get("batching", "?")[:40] for r in rows}))
    print("  not passing:", [b for b in bad if not b.endswith(": ")])
EOF
