"""Load a resolved model folder: tokenizer (with the run's chat template) and weights."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ducktune.errors import ModelError
from ducktune.io import optional_json_field
from ducktune.models.device import Placement


def bundled_template_names() -> list[str]:
    """Chat templates shipped with ducktune (resources/templates/*.jinja; sources in SOURCES.md)."""
    from importlib import resources

    folder = resources.files("ducktune.resources").joinpath("templates")
    return sorted(entry.name.removesuffix(".jinja") for entry in folder.iterdir() if entry.name.endswith(".jinja"))


def bundled_template(name: str) -> str | None:
    from importlib import resources

    if name not in bundled_template_names():
        return None
    return resources.files("ducktune.resources").joinpath("templates", f"{name}.jinja").read_text(encoding="utf-8")


def read_template(value: str) -> str:
    """`model.chat_template` may be the template itself, a path to a .jinja file, or the name of a
    template ducktune ships (e.g. `firefly` for BLOOM, `chatml`)."""
    if "{%" in value or "{{" in value:
        return value
    path = Path(value).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    bundled = bundled_template(value)
    if bundled is not None:
        return bundled
    raise ModelError(f"model.chat_template: {value}: not a Jinja template, a .jinja file or a bundled template "
                     f"({', '.join(bundled_template_names())})")


def load_tokenizer(folder: str | Path, chat_template: str | None = None, trust_remote_code: bool = False,
                   enable_thinking: bool | None = None):
    """The folder's tokenizer with the run's chat template; `enable_thinking` (when not None) is
    pinned into templates that have that switch (see ModelConfig.enable_thinking)."""
    from transformers import AutoTokenizer

    folder_path = Path(folder)
    if folder_path.is_dir() and not any(next(folder_path.glob(pattern), None) for pattern in _TOKENIZER_FILES):
        # transformers 5 then builds an empty tokenizer from the config (one token), and every later
        # message is about something else (no chat template, no samples left)
        raise ModelError(f"{folder}: no tokenizer files (tokenizer.json, tokenizer.model, vocab.json or "
                         "tokenizer_config.json); copy them from the model's repository")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        if rebuilt_pipeline(tokenizer, Path(folder) / "tokenizer.json"):
            tokenizer = _published_tokenizer(folder)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{folder}: cannot load the tokenizer: {exc}") from None
    named = tokenizer.chat_template if isinstance(tokenizer.chat_template, dict) else None
    if named is not None:
        tokenizer.chat_template = _named_template(named, chat_template, folder)
        # The others, for advice (a template without tools beside a "tool_use" one): see template_options.
        tokenizer.ducktune_other_templates = tuple(n for n, t in named.items() if t != tokenizer.chat_template)
    elif chat_template:
        tokenizer.chat_template = read_template(chat_template)
    elif not tokenizer.chat_template:
        tokenizer.chat_template = _processor_chat_template(folder_path)
    if enable_thinking is not None and tokenizer.chat_template:
        tokenizer.chat_template = pin_thinking(tokenizer.chat_template, enable_thinking)
    if tokenizer.pad_token is None:
        # Padding positions are always masked out, so reusing EOS as pad is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _named_template(named: dict, chosen: str | None, folder: str | Path) -> str:
    """One template of a tokenizer that has several by name (tokenizer_config.json's list of {name,
    template}: Command R7B's default/tool_use/rag, Hermes 2 Pro's and Hermes 3's default/tool_use):
    `model.chat_template` naming one picks it, otherwise any other value is read as usual and "default"
    is the rest's choice (transformers' too without tools). Training, chat, serve and export use that one
    template, so a run's prompts and masks never depend on whether a conversation has tools."""
    if chosen and chosen in named:
        return named[chosen]
    if chosen:
        return read_template(chosen)
    if isinstance(named.get("default"), str):
        return named["default"]
    raise ModelError(f"{folder}: the tokenizer has named chat templates ({', '.join(named)}) and none is 'default': "
                     "set model.chat_template to the name of the one to train with")


def generation_stop_tokens(folder: str | Path, tokenizer) -> list[str]:
    """Tokens the model's generation_config.json lists as eos_token_id (an id or a list): models
    publish every token that ends their turns there, beyond the tokenizer's EOS (GLM-4's <|user|> and
    <|observation|>, Llama 3.1's <|eom_id|>, Phi-3's <|end|>). [] without that file."""
    ids = optional_json_field(Path(folder) / "generation_config.json", "eos_token_id")
    ids = ids if isinstance(ids, list) else [ids]
    tokens = []
    for token_id in ids:
        if isinstance(token_id, int) and not isinstance(token_id, bool) and 0 <= token_id < len(tokenizer):
            token = tokenizer.convert_ids_to_tokens(token_id)
            if isinstance(token, str) and token not in tokens:
                tokens.append(token)
    return tokens


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "*.tiktoken", "vocab.json", "vocab.txt", "spiece.model",
                    "tokenizer_config.json")


def _processor_chat_template(folder: Path) -> str | None:
    """The template of a chat_template.json (multimodal repositories keep it there, for their
    processor; the tokenizer does not read it), or None."""
    template = optional_json_field(folder / "chat_template.json", "chat_template")
    return template if isinstance(template, str) and template.strip() else None


_THINKING_PIN = "{%- if enable_thinking is not defined %}{%- set enable_thinking = %s %}{%- endif %}"


def pin_thinking(template: str, enable_thinking: bool) -> str:
    """`template` with its `enable_thinking` switch set by default (callers may still pass it).
    Templates without the switch, or already pinned, are returned unchanged."""
    if "enable_thinking" not in template or template.startswith("{%- if enable_thinking is not defined"):
        return template
    return _THINKING_PIN.replace("%s", "true" if enable_thinking else "false") + template


# Parts of tokenizer.json that decide how text becomes tokens (vocabulary and merges aside).
_PIPELINE_KEYS = ("normalizer", "pre_tokenizer", "decoder")


def rebuilt_pipeline(tokenizer, published: Path) -> list[str]:
    """Which pipeline parts the loaded tokenizer has rebuilt differently from the folder's published
    tokenizer.json. transformers 5's model-specific classes (LlamaTokenizer, GPT2Tokenizer,
    Qwen2Tokenizer...) rebuild their normalizer and pre-tokenizer from code: for Llama-2/Mistral/
    Phi-3 this changes the tokens (the space after special tokens), while the published file is
    what the model was trained with, and what llama.cpp reproduces."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not published.is_file():
        return []
    try:
        on_disk = json.loads(published.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    loaded = json.loads(backend.to_str())
    differ = [key for key in _PIPELINE_KEYS if on_disk.get(key) != loaded.get(key)]
    options = lambda model: {k: v for k, v in (model or {}).items() if k not in ("vocab", "merges")}  # noqa: E731
    if options(on_disk.get("model")) != options(loaded.get("model")):
        differ.append("model options")
    return differ


def _published_tokenizer(folder: str | Path):
    """The folder's tokenizer.json exactly as published, with tokenizer_config.json's special tokens
    and chat template."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(folder))


# EXAONE 3.x's published key names -> transformers' (ExaoneConfig.attribute_map)
EXAONE_KEYS = {"num_layers": "num_hidden_layers", "layer_norm_epsilon": "rms_norm_eps", "activation_function": "hidden_act"}


def exaone_keys_renamed(config: dict) -> dict:
    """An EXAONE 3.x config.json under transformers' key names (the published file spells num_layers etc.)."""
    return {EXAONE_KEYS.get(key, key): value for key, value in config.items()}


def model_config(folder: str | Path) -> dict:
    """config.json as a dict, with num_hidden_layers where transformers saves only the layer kinds (NemotronHConfig
    derives the count from layers_block_type and writes none), and transformers' names for EXAONE 3.x's keys."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the model config: {exc}") from None
    if config.get("num_hidden_layers") is None and config.get("layers_block_type"):
        config["num_hidden_layers"] = len(config["layers_block_type"])
    if config.get("model_type") == "exaone":  # EXAONE 3.x publishes num_layers etc. (ExaoneConfig's attribute_map)
        config = exaone_keys_renamed(config)
    return config


# Multimodal checkpoints whose conditional-generation class runs text as a causal LM does, but which
# transformers' AutoModelForCausalLM does not build (it does Gemma 3's and Qwen 3.5's): model_type -> class.
MULTIMODAL_CAUSAL_LMS = {"mistral3": "Mistral3ForConditionalGeneration"}


def register_multimodal_lms() -> None:
    """Let AutoModelForCausalLM build the MULTIMODAL_CAUSAL_LMS (Ministral 3's Mistral3ForConditionalGeneration),
    so training, merging and checks load them as they load Gemma 3 4B+, through transformers' public
    `AutoModelForCausalLM.register`. Idempotent; imports transformers."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    for model_type, class_name in MULTIMODAL_CAUSAL_LMS.items():
        transformers.AutoModelForCausalLM.register(CONFIG_MAPPING[model_type], getattr(transformers, class_name),
                                                   exist_ok=True)


def _native_model_type(config: dict) -> bool:
    """A remote-code model whose model_type transformers has since adopted: it builds it without the
    repository's code (InternLM3's published InternLM3ForCausalLM runs as LlamaForCausalLM)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return config.get("model_type") in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


# vision towers transformers builds with a package of their own: vision_config model_type -> (package, model)
TOWER_PACKAGES = {"gemma3n_vision": ("timm", "Gemma 3n's MobileNetV5 vision tower")}


def _missing_tower_package(config: dict) -> str | None:
    """Why transformers cannot build this multimodal checkpoint here: its vision tower's package is missing."""
    import importlib.util

    kind = (config.get("vision_config") or {}).get("model_type")
    package, tower = TOWER_PACKAGES.get(kind, (None, None))
    if package and importlib.util.find_spec(package) is None:
        return f"{tower} is built with {package}, which is not installed: pip install {package}"
    return None


def transformers_too_old() -> str | None:
    """Why the installed transformers is older than ducktune declares (pyproject.toml's lower bound), or None. A
    transformers installed around pip's resolver (--no-deps, a GPU image's own) lacks families' classes and fixes:
    on 5.17, EXAONE 3.x and InternLM3 look like remote code and MiniCPM3 fails with a KeyError."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.version import Version

    try:
        declared = [Requirement(text) for text in metadata.requires("ducktune") or []]
        installed = Version(metadata.version("transformers"))
    except metadata.PackageNotFoundError:  # a source tree on sys.path: nothing declared to compare with
        return None
    for requirement in declared:
        floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        if requirement.name == "transformers" and requirement.marker is None and floors and installed < max(floors):
            return f"transformers {installed} is older than ducktune needs: pip install -U '{requirement}'"
    return None


def training_support(config: dict, trust_remote_code: bool = False, name: str = "") -> str | None:
    """Why this model cannot be trained (None: it can): a transformers older than ducktune needs, weights
    quantized by a method ducktune does not train on (`name`, the folder or hub id, names the full-precision
    repository), or an architecture transformers cannot build."""
    import transformers

    from ducktune.models.prequant import prequant_problem

    if problem := transformers_too_old():
        return problem
    if problem := prequant_problem(config, name):
        return f"config.json: {problem}"
    if problem := _missing_tower_package(config):
        return f"config.json: {problem}"
    names = config.get("architectures") or []
    if not names:
        return "config.json names no architecture (\"architectures\" is missing)"
    if any(hasattr(transformers, name) for name in names):
        return None
    if config.get("auto_map"):
        if trust_remote_code or _native_model_type(config):
            return None
        return (f"{names[0]} ships its own modelling code: set model.trust_remote_code: true "
                "(it runs code from the model's repository)")
    return f"transformers {transformers.__version__} has no {names[0]}; upgrade transformers or use another model"


def qlora_support(config: dict | None = None, device: str = "cpu") -> str | None:
    """Why 4-bit (QLoRA) training is not possible here for this model (None: it is). bitsandbytes'
    CPU kernel (0.50) fails on linear layers that carry a bias (Qwen2's q/k/v, BLOOM, GLM): such
    models need LoRA on the CPU, or QLoRA on CUDA."""
    import importlib.util

    from ducktune.models.prequant import dequantized_on_load

    if config is not None and dequantized_on_load(config):
        # transformers takes one quantization_config: the MXFP4 one that dequantizes rules out bitsandbytes'
        return ("on an MXFP4 checkpoint: its experts load dequantized to bf16, which bitsandbytes cannot "
                "quantize again in the same load: use train.method=lora")
    if importlib.util.find_spec("bitsandbytes") is None:
        return "needs bitsandbytes: pip install 'ducktune[qlora]'"
    if config is not None and device == "cpu" and linear_biases(config):
        return ("bitsandbytes' 4-bit CPU kernel fails on linear layers with a bias, which this model has: "
                "use train.method=lora on the CPU, or QLoRA on a CUDA GPU")
    return None


def model_skeleton(config: dict):
    """The causal-LM module tree transformers builds for config.json, on the meta device (no memory,
    no weights), or None where transformers has no native class for it (remote code, unknown type).
    Questions about the module structure (which linears carry a bias, which module names exist)
    are answered from it instead of guessing from config keys, whose spellings differ per family."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    register_multimodal_lms()
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING or config.get("auto_map"):
        return None
    try:
        hf_config = CONFIG_MAPPING[model_type].from_dict(config)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(hf_config)
    except Exception:  # noqa: BLE001 (a config transformers cannot build: fall back to config keys)
        return None


def linear_layers(model) -> list[tuple[str, object]]:
    """(name, module) of every linear layer but the LM head (nn.Linear, and GPT-2's Conv1D): what
    LoRA's all-linear adapts."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not head]


# A multimodal model's image and audio side (Gemma 3 4B+'s SigLIP tower and projector, Gemma 4's towers and
# embedders): text batches never run it.
VISION_PARTS = ("vision_tower", "vision_model", "multi_modal_projector", "visual", "vision_embed_tokens",
                "audio_tower", "embed_vision", "embed_audio")  # Gemma 4 E2B/E4B: an audio tower too
VISION_MODULES = rf"(.*\.)?({'|'.join(VISION_PARTS)})(\..*)?"


def linear_biases(config: dict) -> bool:
    """Whether the linear layers text runs through (not the LM head, not a vision tower) carry biases: from
    the module tree where transformers can build it, else from config.json's keys."""
    skeleton = model_skeleton(config)
    if skeleton is not None:
        return any(m.bias is not None for name, m in linear_layers(skeleton) if not re.fullmatch(VISION_MODULES, name))
    text = text_config(config)
    return (text.get("model_type") in ("qwen2", "bloom", "gpt2", "falcon") or bool(text.get("attention_bias"))
            or bool(text.get("mlp_bias")) or bool(text.get("add_qkv_bias")) or bool(text.get("bias")))


# Older config.json spellings of the standard keys (BLOOM, GPT-2, Falcon, ChatGLM...): transformers
# maps them with each config class's attribute_map; ducktune reads config.json without the class.
_KEY_ALIASES = {"num_hidden_layers": ("n_layer", "num_layers"), "num_attention_heads": ("n_head",),
                "hidden_size": ("n_embd", "d_model"), "intermediate_size": ("ffn_hidden_size",),
                "max_position_embeddings": ("n_positions", "seq_length")}


def text_config(config: dict) -> dict:
    """The language model's config (a multimodal config's text part) with the standard key names."""
    text = dict(config.get("text_config", config))
    for key, aliases in _KEY_ALIASES.items():
        if key not in text:
            found = next((text[a] for a in aliases if a in text), None)
            if found is not None:
                text[key] = found
    if isinstance(text.get("intermediate_size"), list):  # one width per layer (Gemma 3n): their mean, for sizing
        widths = text["intermediate_size"]
        text["intermediate_size"] = sum(widths) // max(1, len(widths))
    return text


def estimate_params(config: dict) -> int:
    """Parameter count of a decoder-only transformer from its config (no weights loaded)."""
    text = text_config(config)
    h = text.get("hidden_size", 0)
    n_layers = text.get("num_hidden_layers", 0)
    vocab = text.get("vocab_size", 0)
    inter = text.get("intermediate_size", 4 * h)
    heads = text.get("num_attention_heads", 1) or 1
    kv = text.get("num_key_value_heads", heads) or heads
    head_dim = text.get("head_dim") or h // heads
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2
    mlp = 3 * h * inter
    embed = vocab * h * (1 if text.get("tie_word_embeddings", config.get("tie_word_embeddings", False)) else 2)
    return n_layers * (attn + mlp + 2 * h) + embed + h


def load_model(folder: str | Path, placement: Placement, quantize_4bit: bool = False, trust_remote_code: bool = False):
    """Load weights (safetensors only) onto the placement's device.

    No `device_map` on MPS/CPU: it can leave meta tensors behind on MPS. 4-bit loading uses
    bitsandbytes (CUDA, and its CPU backend).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from ducktune.models.prequant import dequantized_on_load, dequantizing_load_kwargs, is_bitsandbytes

    register_multimodal_lms()
    kwargs = dict(dtype=placement.torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True)
    config = model_config(folder)
    prequantized = is_bitsandbytes(config)
    if dequantized_on_load(config):  # gpt-oss's MXFP4 experts: full precision, then as any other model
        if quantize_4bit:
            raise ModelError(f"{folder}: QLoRA {qlora_support(config, placement.device)}")
        kwargs.update(dequantizing_load_kwargs(config))
    elif prequantized:  # already 4/8-bit: its own quantization_config loads it
        kwargs["device_map"] = {"": 0} if placement.device == "cuda" else {"": "cpu"}
    elif quantize_4bit:
        problem = qlora_support(model_config(folder), placement.device)
        if problem:
            raise ModelError(f"{folder}: QLoRA {problem}")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=placement.torch_dtype,
        )
        kwargs["device_map"] = {"": 0} if placement.device == "cuda" else {"": "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except OSError as exc:
        raise ModelError(f"{folder}: cannot load the model weights: {exc}") from None
    if not (quantize_4bit or prequantized) and placement.device != "cpu":
        model = model.to(torch.device(placement.device))
    return model


def check_weights(folder: str | Path, trust_remote_code: bool = False, name: str = "") -> None:
    """Refuse, before anything is written, weights that cannot be what config.json describes or that
    ducktune cannot train (quantized by FP8, GPTQ, AWQ...; `name` names the full-precision repository): none in
    safetensors (pickled .bin files only: loading a pickle can run code), a safetensors file cut short,
    or tensors that belong to another architecture (an encoder's weights under a decoder's config would
    otherwise load as a randomly initialised model and train without complaint)."""
    from ducktune.io import safetensors_header

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        if pickled:
            raise ModelError(f"{folder / pickled[0]}: pickled weights only; ducktune loads safetensors (a pickle can run "
                             "code): convert with transformers' save_pretrained(safe_serialization=True)")
        raise ModelError(f"{folder}: no model weights (*.safetensors)")
    names = set()
    for file in files:
        header, problem = safetensors_header(file)
        if problem:
            raise ModelError(f"{file}: {problem}; download or copy the model again")
        names.update(key for key in header if key != "__metadata__")
    config = model_config(folder)
    names = _names_as_loaded(names, config.get("model_type"))
    from ducktune.models.prequant import prequant_problem

    if problem := prequant_problem(config, name or folder.name):
        raise ModelError(f"{folder / 'config.json'}: {problem}")
    if trust_remote_code or config.get("quantization_config"):
        return  # their tensor names are the remote code's or the quantizer's business
    expected = _expected_tensor_names(folder)
    if not expected:
        return

    def tail(key: str) -> str:  # prefixes differ between checkpoints and classes ("model.", "language_model.")
        return ".".join(key.split(".")[-4:])
    found = {tail(k) for k in names} & {tail(k) for k in expected}
    if len(found) < len(expected) / 2:
        example = sorted(names)[0] if names else "none"
        raise ModelError(f"{folder / 'config.json'}: model_type {config.get('model_type')!r}: the weights do not fit this "
                         f"architecture ({len(found)} of {len(expected)} tensors found; the files hold e.g. {example})")


def _names_as_loaded(names: set[str], model_type: str | None) -> set[str]:
    """Checkpoint tensor names as transformers loads them: it renames some model types' published names on load
    (EXAONE 3.x's transformer.h.N.attn.attention.*, its conversion_mapping); converters (fusing, splitting) aside."""
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, rename_source_key
    except ImportError:  # a transformers without load-time renames: the names are the model's
        return names
    renamings = [t for t in get_checkpoint_conversion_mapping(model_type) or [] if type(t) is WeightRenaming]
    return {rename_source_key(name, renamings, [])[0] for name in names} if renamings else names


def _expected_tensor_names(folder: Path) -> set[str]:
    """The tensor names config.json's causal-LM architecture has (built on the meta device: no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    register_multimodal_lms()
    try:
        config = AutoConfig.from_pretrained(str(folder))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001 - an architecture transformers cannot build: the loader reports it
        return set()
    tied = {key for key in model.state_dict() if key.startswith("lm_head")} if config.tie_word_embeddings else set()
    return set(model.state_dict()) - tied
