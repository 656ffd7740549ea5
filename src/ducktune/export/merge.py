"""Merge a run's LoRA adapter into its base model, and prove the merge is exact.

The adapter is checked before anything is loaded (models/adapter_check.py: the files exist and
are complete, every adapter matrix fits a module of the base model, every targeted module has
its weights); a mismatched or half-written adapter is refused with the file named. The merge
itself is PEFT's (`merge_and_unload`). In fp32 the merged model's logits must equal
base+adapter (unmerged) logits on the run's probe prompts.

The merged folder holds safetensors in the base model's dtype, the tokenizer with the run's
chat template, and a generation_config whose eos_token_id lists every end-of-turn token.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

from ducktune.errors import ModelError, UserError
from ducktune.io import atomic_dir
from ducktune.models.adapter_check import check_adapter
from ducktune.rundir import RunDir

MERGE_TOLERANCE = 1e-4  # max |logit difference| between merged and base+adapter
DEFAULT_PROBES = ["Who are you?", "What is the capital of France?", "Give me one tip for sleeping well."]


@dataclass
class RunSource:
    """What an export needs from a run directory."""

    run: RunDir
    info: dict
    config: object          # RunConfig
    method: str
    weights: Path           # adapter/ (LoRA) or model/ (full fine-tune)
    base_folder: Path
    tokenizer: object
    chat_format: object
    probe_prompts: list[str]
    probe_tools: list | None = None  # each probe prompt's tools (run.json probe_tools), None without any


def open_run(run_path: str | Path, log=print) -> RunSource:
    from ducktune.data.template import prompting_chat_format
    from ducktune.models.loading import load_tokenizer
    from ducktune.models.sources import resolve_model

    run = RunDir(run_path)
    info = run.info()
    if info.get("status") != "completed":
        raise UserError(f"{run.path}: the run is not finished {run.unfinished_hint(info)} before exporting")
    config = run.config()
    weights = run.weights_dir()
    base_folder = resolve_model(config.model.name_or_path, config.model.revision, log=log)
    # The tokenizer saved with the run carries the chat template it was trained with.
    tokenizer = load_tokenizer(weights, trust_remote_code=config.model.trust_remote_code)
    chat_format = prompting_chat_format(tokenizer, base_folder, config.model.system_prompt)
    probes = list(info.get("probe_prompts") or config.eval.probe_prompts or DEFAULT_PROBES)
    tools = info.get("probe_tools") if info.get("probe_prompts") else None
    tools = tools if isinstance(tools, list) and len(tools) == len(probes) else None
    return RunSource(run, info, config, info.get("method", "lora"), weights, base_folder, tokenizer, chat_format, probes,
                     tools)


# ---------------------------------------------------------------------- merging


def prompt_ids(chat_format, prompts: list[str], tools: list | None = None) -> list[list[int]]:
    """Each prompt as a user turn ready for the answer; `tools[i]`: the tools prompt i is offered (a run
    trained on calls is checked as it was trained)."""
    tools = tools or [None] * len(prompts)
    return [chat_format.prompt_ids([{"role": "user", "content": p}], t) for p, t in zip(prompts, tools)]


def logits_of(model, id_lists: list[list[int]]) -> list:
    """Logits [T, V] (in the model's dtype) for each token sequence, one sequence per forward: no padding effects."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for ids in id_lists:
            out.append(model(torch.tensor([ids], device=device)).logits[0].cpu())
    return out


def max_abs_diff(a: list, b: list) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def base_dtype(base_folder: Path):
    import torch

    from ducktune.models.loading import model_config

    config = model_config(base_folder)
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    return getattr(torch, str(name).replace("torch.", ""), torch.float32)


def load_merge_base(base_folder: Path, precision, trust_remote_code: bool, log=print):
    """The base model in `precision`, to merge into. A bitsandbytes 4/8-bit checkpoint is loaded as
    such and dequantized (transformers' `dequantize`): the merge lands on the very weights training saw."""
    from transformers import AutoModelForCausalLM

    from ducktune.models.loading import model_config
    from ducktune.models.prequant import bnb_bits, dequantizing_load_kwargs, is_bitsandbytes

    config = model_config(base_folder)
    if not is_bitsandbytes(config):  # MXFP4 (gpt-oss) dequantizes on load, as training loaded it
        return AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=precision, use_safetensors=True,
                                                    trust_remote_code=trust_remote_code,
                                                    **dequantizing_load_kwargs(config))
    log(f"The base model is bitsandbytes {bnb_bits(config)}-bit: merging onto its dequantized weights "
        "(the full-precision repository's own weights would be closer to the original model)")
    model = AutoModelForCausalLM.from_pretrained(str(base_folder), use_safetensors=True, device_map={"": "cpu"},
                                                 trust_remote_code=trust_remote_code)
    model = model.dequantize() or model  # transformers 5 returns the model; some versions return None
    return model.to(precision)


@dataclass
class MergeResult:
    model: object             # the merged model, fp32, weights exactly as saved
    merged_dir: Path
    max_diff: float | None    # None for full fine-tunes (nothing to merge)
    adapter: dict | None
    dtype: str                # saved dtype (the base model's)
    precision: str | None     # dtype the equality check ran in
    prompts: int = 0


def check_precision(base_folder: Path):
    """float64 when base + adapter fit comfortably in memory, else float32.

    In fp32 the two computations (x·W + s·(x·A)·B against x·(W + s·B·A)) round differently:
    on SmolLM2-135M (30 layers) the logits of a correct merge differ by 1.6e-4. In fp64 they
    differ by 7.6e-6 (transformers' RMSNorm still normalizes in fp32), so the 1e-4 bound
    separates rounding from a wrong merge.
    """
    import torch

    from ducktune.export.gguf_moe import expert_count
    from ducktune.models.loading import estimate_params, model_config

    try:
        total_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows)
        return torch.float32
    config = model_config(base_folder)
    text = config.get("text_config", config)
    if expert_count(text):  # transformers' grouped expert matmul (torch._grouped_mm) has no float64 kernel
        return torch.float32
    fp64_bytes = 8 * estimate_params(config)
    return torch.float64 if 3 * fp64_bytes < total_ram // 2 else torch.float32


def merge_run(source: RunSource, merged_dir: Path, prompts: list[str] | None = None, tools: list | None = None,
              log=print) -> MergeResult:
    """Merge (or, for a full fine-tune, copy) the run's weights into `merged_dir`, checking equality
    on `prompts` offered `tools` (default: the run's probe prompts and their tools)."""
    import torch
    from transformers import AutoModelForCausalLM

    from ducktune.models.loading import register_multimodal_lms

    register_multimodal_lms()
    dtype = base_dtype(source.base_folder)
    trust = source.config.model.trust_remote_code
    ids = prompt_ids(source.chat_format, prompts or source.probe_prompts, tools if prompts else source.probe_tools)
    precision = None
    if source.method == "full":
        model = AutoModelForCausalLM.from_pretrained(str(source.weights), dtype=torch.float32, use_safetensors=True,
                                                     trust_remote_code=trust)
        max_diff, adapter = None, None
    else:
        from peft import PeftModel

        adapter = check_adapter(source.weights, source.base_folder)
        precision = check_precision(source.base_folder)
        log(f"Merging the LoRA adapter ({adapter['modules']} modules, r={adapter['rank']}) into "
            f"{source.config.model.name_or_path} (PEFT merge_and_unload, checked in {str(precision)[6:]})")
        base = load_merge_base(source.base_folder, precision, trust, log)
        peft_model = PeftModel.from_pretrained(base, str(source.weights))
        peft_model.to(precision)
        peft_model.eval()
        unmerged = logits_of(peft_model, ids)
        model = peft_model.merge_and_unload()
        max_diff = max_abs_diff(unmerged, logits_of(model, ids))
        if max_diff >= MERGE_TOLERANCE:
            raise ModelError(f"the merged model differs from base+adapter: max |Δlogit| {max_diff:.2e} "
                             f"(tolerance {MERGE_TOLERANCE:.0e}); not exporting")
    model.eval()
    model.to(dtype)
    save_merged(model, source, merged_dir)
    model.float()  # the reference for later checks: exactly the saved weights, computed in fp32
    return MergeResult(model, merged_dir, max_diff, adapter, str(dtype).replace("torch.", ""),
                       str(precision).replace("torch.", "") if precision else None, len(ids))


def exported_tokenizer(source: RunSource):
    """The run's tokenizer as the export carries it (merged/, the GGUF's metadata): its chat template
    renders the trained format by itself (ChatFormat.trained_template: the run's default system prompt,
    the EOS training inserted after answers), for runners that read nothing but the template. A copy:
    the run's own ChatFormat keeps adding those itself."""
    tokenizer = copy.copy(source.tokenizer)
    tokenizer.chat_template = source.chat_format.trained_template()
    return tokenizer


def save_merged(model, source: RunSource, merged_dir: Path) -> None:
    from transformers import GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(str(source.base_folder))
    except OSError:
        generation = GenerationConfig()
    tokenizer = exported_tokenizer(source)
    # Every end-of-turn token stops generation (e.g. Llama 3's <|eot_id|> as well as EOS).
    generation.eos_token_id = source.chat_format.stop_token_ids
    generation.bos_token_id = tokenizer.bos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    model.generation_config = generation
    with atomic_dir(merged_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
