"""What a model folder can go through, decided by the code that does it.

`ducktune models`, the warning at the start of `ducktune train` and the export's early refusal
all ask these functions; none of them keeps a table of family names. Each answer is None (it
works) or a one-line reason a user can act on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

STAGES = ("train", "qlora", "gguf", "k_quants", "ollama_template")
STAGE_TITLES = {"train": "train", "qlora": "QLoRA", "gguf": "GGUF (f16, q8_0)", "k_quants": "k-quants (q4_k_m)",
                "ollama_template": "Ollama TEMPLATE"}


@dataclass
class Support:
    """None = supported; otherwise why not."""
    train: str | None = None
    qlora: str | None = None
    gguf: str | None = None
    k_quants: str | None = None
    ollama_template: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def export_problems(self) -> list[str]:
        return [reason for reason in (self.gguf, self.ollama_template) if reason]


def gguf_support(model_dir: Path, config: dict) -> str | None:
    """Why `model_dir` cannot be written as GGUF (architecture first, then tokenizer), or None."""
    from ducktune.export.gguf_arch import architecture_support
    from ducktune.export.gguf_vocab import tokenizer_support

    return architecture_support(config) or tokenizer_support(model_dir)


def k_quant_support(gguf_reason: str | None) -> str | None:
    from ducktune.export.quantize import INSTALL_HINT, llama_cpp_available

    if gguf_reason:
        return "no GGUF to quantize (see GGUF)"
    return None if llama_cpp_available() else f"needs llama.cpp's quantizer: {INSTALL_HINT}"


def _training_device() -> str:
    from ducktune.models.device import choose_placement

    return choose_placement("auto", "auto").device


def model_support(model_dir: str | Path, tokenizer=None, trust_remote_code: bool = False, name: str = "") -> Support:
    """Every stage's answer for a local model folder. `tokenizer` (with the chat template training
    will use) is loaded from the folder when not given; `name` (the hub id or folder the user gave)
    names the full-precision repository of a pre-quantized checkpoint."""
    from ducktune.export.gotemplate import template_support
    from ducktune.models.loading import load_tokenizer, model_config, qlora_support, training_support

    model_dir = Path(model_dir)
    config = model_config(model_dir)
    from ducktune.models.prequant import prequant_problem

    train = training_support(config, trust_remote_code, name or model_dir.name)
    unquantizable = prequant_problem(config, name or model_dir.name)
    gguf = f"config.json: {unquantizable}" if unquantizable else gguf_support(model_dir, config)
    if tokenizer is None:
        tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    return Support(train=train, qlora=train or qlora_support(config, _training_device()), gguf=gguf,
                   k_quants=k_quant_support(gguf),
                   ollama_template=template_support(tokenizer))


def family_table(cache: Path | None = None, log=print) -> list[dict]:
    """One row per known family: its stand-in (built once) asked every stage's question."""
    from ducktune.models.families import FAMILIES, standin_dir

    rows = []
    for spec in FAMILIES:
        folder = standin_dir(spec.id, cache, log=log)
        rows.append({"family": spec.id, "title": spec.title, "class": spec.model_class,
                     "support": model_support(folder).to_dict(), "note": spec.note})
    return rows


def export_warnings(model, log=print) -> list[str]:
    """Before training `model` (a ModelConfig): raise when it cannot be trained, and return one
    warning line per later stage it will not get through (GGUF, Ollama TEMPLATE), so a user learns
    it now, not after hours of training."""
    from ducktune.errors import ModelError
    from ducktune.models.sources import resolve_model
    from ducktune.models.tokenizer import model_tokenizer

    folder = resolve_model(model.name_or_path, model.revision, log=log)
    tokenizer = model_tokenizer(model, log)
    support = model_support(folder, tokenizer, model.trust_remote_code, model.name_or_path)
    if support.train:
        raise ModelError(f"{model.name_or_path}: cannot be trained: {support.train}")
    warnings = []
    if support.gguf:
        warnings.append(f"this model can be trained but not exported to GGUF because {support.gguf}")
    else:
        from ducktune.export.gguf_arch import gguf_caveats
        from ducktune.models.loading import model_config

        warnings += [f"once exported to GGUF: {note}" for note in gguf_caveats(model_config(folder))]
    if model.system_prompt:
        from ducktune.export.modelfile import unquotable

        if problem := unquotable(model.system_prompt, "model.system_prompt"):
            warnings.append(f"{problem}: the export can write the merged model and GGUF, not the Ollama Modelfile")
    from ducktune.data.template import ChatFormat, plain_text_markers

    try:
        dropped = ChatFormat(tokenizer).dropped_prompt_text
    except Exception:  # no template, or one that refuses the probe: training says so itself
        dropped = ""
    if dropped:
        warnings.append(f"the chat template's generation prompt adds {dropped!r}, which its rendering of answers "
                        "never has: ducktune trains and prompts without it (chat, serving and the export's "
                        "templates alike), so the model answers as trained")

    if markers := plain_text_markers(tokenizer):
        eos = getattr(tokenizer, "eos_token", None)
        warnings.append(f"the chat template writes {', '.join(markers)} but this tokenizer has no such token"
                        f"{'s' if len(markers) > 1 else ''}: the model learns {'them' if len(markers) > 1 else 'it'} "
                        f"as plain text{f' and stops only at {eos}' if eos else ''}; set model.chat_template to the "
                        "template made for this tokenizer")
    # Without any chat template training itself stops, with its own message (set model.chat_template).
    if support.ollama_template and getattr(tokenizer, "chat_template", None):
        warnings.append("this model can be trained but its chat template cannot become an Ollama TEMPLATE "
                        f"because {support.ollama_template} (export with --allow-default-template, or "
                        "set model.chat_template)")
    return warnings
