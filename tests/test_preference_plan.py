"""The memory plan of preference runs: two sequences per pair, the no-grad reference pass, and
a measured peak within 15 % of the plan."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest

from ducktune.config import load_config
from ducktune.train.plan import KEPT_REFERENCE_SHARE, ModelShape, Setup, estimate, no_grad_forward_bytes, plan_run

SHAPE = ModelShape(vocab=32000, hidden=256, layers=4, heads=4, kv_heads=2, head_dim=64, intermediate=768,
                   tied=True, max_positions=4096)
MODEL_JSON = {"model_type": "qwen2", "vocab_size": 32000, "hidden_size": 256, "num_hidden_layers": 4,
              "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 768,
              "tie_word_embeddings": True, "max_position_embeddings": 4096}


def _pair_rows(n: int, prompt: int, chosen: int, rejected: int) -> list[dict]:
    def seq(answer):
        return {"ids": list(range(prompt + answer)), "labels": [-100] * prompt + list(range(answer))}

    rows = []
    for _ in range(n):
        c, r = seq(chosen), seq(rejected)
        rows.append({"chosen_input_ids": c["ids"], "chosen_labels": c["labels"], "rejected_input_ids": r["ids"],
                     "rejected_labels": r["labels"], "prompt_len": prompt})
    return rows


def test_a_pair_costs_two_sequences_and_the_reference_pass_is_counted():
    rows = _pair_rows(8, 40, 200, 120)
    sft = load_config(None, ["train.batch_size=4", "data.cutoff_len=512", "lora.dropout=0"])
    dpo = load_config(None, ["train.batch_size=4", "data.cutoff_len=512", "train.objective=dpo"])
    sft_rows = [{"input_ids": r["chosen_input_ids"], "labels": r["chosen_labels"]} for r in rows]
    sft_plan = plan_run(sft, MODEL_JSON, "cpu", "float32", sft_rows, None, batching="padded")
    dpo_plan = plan_run(dpo, MODEL_JSON, "cpu", "float32", rows, None)
    # Same padded row length (the longest sequence, 240 -> 240), twice the rows: twice the activations.
    assert dpo_plan.setup.row_tokens == sft_plan.setup.row_tokens == 240
    assert dpo_plan.setup.tokens == 2 * sft_plan.setup.tokens
    assert dpo_plan.parts["activations"] == 2 * sft_plan.parts["activations"]
    assert dpo_plan.to_json()["no_grad_forward_passes"] == 1 and dpo_plan.setup.no_grad_rows_per_example == 2
    assert "reference pass" in dpo_plan.parts and "reference pass" not in sft_plan.parts
    assert "1 no-grad forward pass(es)" in dpo_plan.preference_line() and "~33% more compute" in dpo_plan.preference_line()
    # ORPO/SimPO have no reference: no extra pass, same trained rows as DPO.
    orpo = plan_run(load_config(None, ["train.batch_size=4", "data.cutoff_len=512", "train.objective=orpo"]),
                    MODEL_JSON, "cpu", "float32", rows, None)
    assert orpo.setup.no_grad_passes == 0 and "no reference model" in orpo.preference_line()
    assert orpo.parts["activations"] == dpo_plan.parts["activations"]


def test_reference_pass_adds_to_the_peak_only_beyond_the_trained_step():
    """The reference runs before the trained forward: with gradient checkpointing (few activations
    kept) its working set can exceed the step's; without, it is hidden under the activations."""
    setup = Setup(batch_size=4, row_tokens=512, objective="dpo", rows_per_example=2, no_grad_passes=1,
                  no_grad_rows_per_example=2, trained_fraction=0.5, loss_chunk_size=1024)
    parts = estimate(SHAPE, setup)
    assert parts["reference pass"] == 0 and no_grad_forward_bytes(SHAPE, setup) > 0
    checkpointed = estimate(SHAPE, Setup(**{**setup.__dict__, "checkpointing": True}))
    excess = no_grad_forward_bytes(SHAPE, setup) - checkpointed["activations"] - checkpointed["working set"]
    assert checkpointed["reference pass"] == max(0, excess)
    # A CPU heap that keeps freed buffers (no memory budget) holds part of the reference pass as well.
    keeping = Setup(**{**setup.__dict__, "heap_returned": False})
    kept = estimate(SHAPE, keeping)
    assert kept["reference pass"] == int(KEPT_REFERENCE_SHARE * no_grad_forward_bytes(SHAPE, keeping)) > 0
    assert estimate(SHAPE, Setup(**{**setup.__dict__, "heap_returned": False}), "cuda")["reference pass"] == 0


def test_kto_never_plans_a_micro_batch_below_two():
    from ducktune.train.plan import choose

    wanted = Setup(batch_size=4, row_tokens=512, objective="kto", rows_per_example=1, no_grad_passes=3,
                   no_grad_rows_per_example=1, min_batch_size=2)
    tight = choose(SHAPE, wanted, "cpu", budget=1, checkpointing="auto")
    assert not tight.fits and tight.setup.batch_size == 2 and "micro-batch 2" in tight.problem


@pytest.fixture(scope="module")
def planning_model(tmp_path_factory):
    from ducktune.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("plan") / "model", arch="qwen2", hidden_size=256, num_layers=4,
                            num_heads=4, num_kv_heads=2, intermediate_size=768, vocab_size=32000)


@pytest.mark.slow
def test_dpo_plan_is_within_15_percent_of_the_measured_peak_rss(planning_model, tmp_path):
    rng = random.Random(0)
    words = "the duck swims in a pond and eats bread while the geese watch".split()

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))

    pairs = [{"prompt": text(30), "chosen": text(400), "rejected": text(300)} for _ in range(8)]
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(pairs), encoding="utf-8")
    script = textwrap.dedent(f"""
        import json, torch
        from ducktune.config import load_config
        from ducktune.train.recipe import train
        torch.set_num_threads(1)
        config = load_config(None, ["model.name_or_path={planning_model}", "data.cutoff_len=512", "train.batch_size=4",
                                    "train.objective=dpo", "data.datasets=[{data}]", "train.max_steps=2",
                                    "train.save_steps=1000", "output.dir={tmp_path / 'run'}"])
        info = train(config, log=lambda *_: None, progress=False, compare=False).info
        print(json.dumps({{"planned": info["memory_plan"]["peak_bytes"], "measured": info["result"]["peak_rss_bytes"],
                          "plan": info["memory_plan"]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["plan"]["sequences_per_example"] == 2 and result["plan"]["row_tokens"] >= 400
    assert result["planned"] == pytest.approx(result["measured"], rel=0.15), (result["measured"], result["plan"]["parts"])


@pytest.mark.slow
def test_plan_command_prints_the_preference_plan(tiny_qwen, tmp_path):
    pairs = [{"prompt": f"Question {i}?", "chosen": "A good answer.", "rejected": "A bad one."} for i in range(6)]
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(pairs), encoding="utf-8")
    base = [sys.executable, "-m", "ducktune", "plan", "--set", f"model.name_or_path={tiny_qwen}",
            "--set", f"data.datasets=[{data}]", "--set", "train.batch_size=2", "--memory", "4GB"]
    dpo = subprocess.run(base + ["--set", "train.objective=dpo"], capture_output=True, text=True)
    assert dpo.returncode == 0, dpo.stderr
    assert "6 examples" in dpo.stdout and "pairs batches" in dpo.stdout
    assert "dpo: 2 sequence(s) per example (4 rows per micro-batch); 1 no-grad forward pass(es)" in dpo.stdout
    kto = json.loads(subprocess.run(base + ["--set", "train.objective=kto", "--json"], capture_output=True,
                                    text=True).stdout)
    assert kto["objective"] == "kto" and kto["no_grad_forward_passes"] == 3 and kto["batching"] == "unpaired"
