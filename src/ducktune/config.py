"""The one configuration schema behind YAML files, `--set` flags and the web UI.

Every option is documented here, where it is defined (`Field(description=...)`); the CLI's
`ducktune train --help-config` and the web UI's form are generated from these descriptions.
Unknown keys are errors with a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from ducktune.errors import ConfigError

BUILTIN_MODEL = "smollm2-135m"


class _Section(BaseModel):
    # inf/nan are no option's value (num_epochs: inf crashed inside the Trainer).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: Any, info) -> Any:
        # pydantic's lax mode reads true as 1: `--set train.batch_size=true` trained with batch 1 and
        # `cutoff_len: yes` said "greater than 8 (got True)". Numbers in quotes ("128") still convert.
        if isinstance(value, bool) and _is_number_field(cls.model_fields[info.field_name].annotation):
            raise ValueError("Input should be a number, not a boolean (YAML reads yes/no/on/off as one)")
        return value


def _is_number_field(annotation: Any) -> bool:
    """int, float, or either of them | None."""
    kinds = [a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)]
    return bool(kinds) and all(a in (int, float) for a in kinds)


class ModelConfig(_Section):
    name_or_path: str = Field(
        BUILTIN_MODEL,
        description=(
            "Base model: 'smollm2-135m' (built in, offline), a local folder, a Hugging Face id "
            "('Qwen/Qwen2.5-0.5B-Instruct'; honours HF_ENDPOINT and HF_HOME) or a ModelScope id "
            "('modelscope:qwen/Qwen2.5-0.5B-Instruct')."
        ),
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to download.")
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped with the model. Off unless you trust the model's author."
    )
    device: Literal["auto", "cuda", "mps", "cpu"] = Field(
        "auto", description="Where to train and generate: auto picks CUDA, then Apple MPS, then CPU."
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description=(
            "Weight and compute dtype. auto: bf16 on CUDA that supports it, else fp16 on CUDA; "
            "fp32 on MPS for models under 1B parameters (fp16 above, never bf16); fp32 on CPU (bfloat16 "
            "trains ~1.3x faster on CPUs with AVX512-BF16/AMX but learned less in the quickstart; opt-in, "
            "bench/cpu_bf16.py)."
        ),
    )
    chat_template: str | None = Field(
        None,
        description=(
            "Jinja chat template to use instead of the model's own (a template string, a path "
            "to a .jinja file, or a template ducktune ships: see `ducktune models`, e.g. firefly "
            "for BLOOM, phi2-qa for Phi-2), or the name of one of the tokenizer's own named templates "
            "(Hermes 3's or Command R7B's tool_use; without this, their 'default'). Training, chat, serving "
            "and export all use the same one."
        ),
    )
    enable_thinking: bool = Field(
        False,
        description=(
            "For chat templates with a thinking switch (Qwen3's `enable_thinking`): false trains and "
            "prompts in non-thinking mode (the template's empty <think></think> block belongs to the "
            "prompt, so only the answer is trained); true keeps the template's thinking mode, for "
            "data whose answers carry their reasoning. Baked into the run's template, so chat, "
            "serving, GGUF and Ollama behave the same. No effect on other templates."
        ),
    )
    adapter: str | None = Field(
        None,
        description=(
            "Start from a trained LoRA adapter (a run directory or an adapter folder) and continue training it, "
            "e.g. preference tuning on top of an SFT run. With dpo/kto the reference is that adapter, frozen "
            "(only the adapter weights are loaded twice, never the base)."
        ),
    )
    system_prompt: str | None = Field(
        None,
        description=(
            "Default system prompt added to conversations that have none, in training and at "
            "inference; written to the Ollama Modelfile as SYSTEM."
        ),
    )


TAG_NAMES = ("role_tag", "content_tag", "user_tag", "assistant_tag", "system_tag", "observation_tag", "function_tag")
# The fields a dataset's `columns` may map: ducktune's, then LLaMA-Factory's own names (data/columns.py).
COLUMN_FIELDS = ("instruction", "input", "output", "system", "history", "conversations", "messages", "conversation",
                 "text", "prompt", "chosen", "rejected", "completion", "label",
                 "query", "response", "kto_tag", "tools", "images", "videos", "audios",
                 "better_response_id")  # PKU-SafeRLHF's: map it to safer_response_id to prefer the safer


def unknown_column_field(name: str) -> str | None:
    """Why `name` is not a field `columns` can map (a misspelt one was silently never read), or None."""
    if name in COLUMN_FIELDS:
        return None
    match = difflib.get_close_matches(name, COLUMN_FIELDS, n=1, cutoff=0.6)
    hint = f"did you mean '{match[0]}'?" if match else f"known: {', '.join(COLUMN_FIELDS)}"
    return f"unknown field {name!r}, {hint}"


class DatasetSpec(_Section):
    path: str = Field(
        ...,
        description=(
            "A .json/.jsonl/.csv/.tsv/.parquet/.txt file, a folder of such files, a dataset name "
            "registered in a LLaMA-Factory dataset_info.json (in data.dataset_dir), or 'hf:org/name' "
            "for a Hugging Face dataset ('hf:/local/folder' for one on disk)."
        ),
    )
    format: Literal["auto", "alpaca", "sharegpt", "messages", "firefly", "xlam", "glaive", "transcript", "text",
                    "preference", "unpaired"] = Field(
        "auto", description="Record format; auto detects it from the fields of the records. alpaca: a question "
                            "and its answer (instruction/input/output, or Dolly's instruction/context/response, "
                            "prompt/completion, question/answer, query/response, problem/solution). preference: "
                            "chosen/rejected pairs; unpaired: KTO samples with a true/false label; xlam: "
                            "Salesforce xLAM function-calling records (query, answers as calls, tools); glaive: "
                            "Glaive function-calling v2 records (system listing the functions, chat text); "
                            "transcript: {text} records that are chats rendered in a prompt format (Llama 2 [INST], "
                            "ChatML, Llama 3, Gemma, Zephyr/Phi-3, Vicuna, ### Human/### Assistant, HH, Alpaca "
                            "prompt), read as conversations "
                            "for the model's own template (auto detects them); text: plain text, every token "
                            "trained (transcripts too)."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Field renames for files whose fields have other names: ducktune's name -> the file's, "
            "e.g. {instruction: question, output: answer}. LLaMA-Factory's names (prompt, query, "
            "response, messages, system, history, chosen, rejected) work too."
        ),
    )
    tags: dict[Literal[TAG_NAMES], str] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        description=(
            "For conversation lists with other keys or role names (LLaMA-Factory's tags): role_tag, "
            "content_tag, user_tag, assistant_tag, system_tag, e.g. {role_tag: speaker, content_tag: text, "
            "user_tag: USER, assistant_tag: BOT}."
        ),
    )
    repeat: float = Field(
        1.0,
        gt=0,
        description=(
            "How many times this dataset is used per epoch (2 = twice; 0.5 = a random half). "
            "One example repeated 10,000 times: {path: me.json, repeat: 10000}."
        ),
    )
    weight: float | None = Field(
        None,
        gt=0,
        description=(
            "Share of the mix drawn from this dataset, relative to the other datasets' weights "
            "(set it on every dataset or on none; not together with repeat). The mix has "
            "data.max_samples samples, else as many as the datasets hold together."
        ),
    )
    max_samples: int | None = Field(None, gt=0, description="Use at most the first N records of this dataset.")
    split: str = Field("train", description="Split to read for Hugging Face datasets.")
    subset: str | None = Field(None, description="Configuration (subset) name of a Hugging Face dataset.")
    data_dir: str | None = Field(None, description="Folder inside a Hugging Face dataset repository to read.")
    text_unit: Literal["paragraph", "line", "file"] = Field(
        "paragraph",
        description="How .txt files become samples: paragraphs separated by blank lines, single lines, or whole files.",
    )

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, columns: dict[str, str]) -> dict[str, str]:
        for name in columns:
            unknown = unknown_column_field(name)
            if unknown:
                raise ValueError(f"{unknown} (columns map ducktune's field name to the file's)")
        return columns

    @model_validator(mode="after")
    def _repeat_or_weight(self) -> "DatasetSpec":
        if self.weight is not None and "repeat" in self.model_fields_set:
            raise ValueError("set repeat or weight, not both")
        return self


class DataConfig(_Section):
    datasets: list[DatasetSpec] = Field(
        default_factory=list,
        description="Training datasets; several are mixed (see each one's repeat or weight).",
    )
    dataset_dir: str = Field(
        "data",
        description=(
            "Folder with a LLaMA-Factory dataset_info.json: datasets[].path may be the name of a dataset "
            "registered there."
        ),
    )
    cutoff_len: int = Field(
        1024, gt=8, description="Maximum tokens per sample; longer samples are truncated (and counted in the log)."
    )
    val_ratio: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "Fraction of samples held out for evaluation (0 = none), taken from each dataset before "
            "repeats, so no copy of a validation sample is trained on."
        ),
    )
    val_file: str | None = Field(None, description="A separate validation file (instead of val_ratio).")
    train_on: Literal["assistant", "last_assistant", "all"] = Field(
        "assistant",
        description=(
            "Which tokens carry the loss: every assistant turn (default), only the last assistant "
            "turn, or every token (continued pre-training)."
        ),
    )
    shuffle: bool = Field(True, description="Shuffle the mixed samples (deterministically, by train.seed).")
    dedupe: bool = Field(False, description="Drop exact duplicate conversations before repeating.")
    skip_bad: bool = Field(
        False, description="Train on the good records and report how many bad ones were skipped, instead of refusing."
    )
    max_samples: int | None = Field(None, gt=0, description="Use at most this many samples in total after mixing.")
    replay: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "Guard against forgetting (self-distillation): mix in the base model's own greedy answers to "
            "bundled general prompts (English and Chinese: facts, arithmetic, writing, code), this many per "
            "training sample (0.5 = one for every two; 0 = off; at most the 36 bundled prompts). Generated "
            "once per base model and cached in ~/.cache/ducktune/base-answers; deterministic, offline."
        ),
    )

    @field_validator("datasets", mode="before")
    @classmethod
    def _accept_plain_paths(cls, value: Any) -> Any:
        # `datasets: [a.json, b.jsonl]` is shorthand for `[{path: a.json}, {path: b.jsonl}]`.
        if isinstance(value, (str, dict)):
            value = [value]
        if isinstance(value, list):
            return [{"path": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _weights_everywhere_or_nowhere(self) -> "DataConfig":
        weighted = [spec.weight is not None for spec in self.datasets]
        if any(weighted) and not all(weighted):
            missing = ", ".join(spec.path for spec in self.datasets if spec.weight is None)
            raise ValueError(f"data.datasets: set weight on every dataset or on none (no weight: {missing})")
        return self


class LoraConfig(_Section):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: float = Field(32, gt=0, description="LoRA alpha (scaling = alpha / r, or alpha / sqrt(r) with rsLoRA).")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Dropout on the LoRA input. Off by default, as in PEFT and LLaMA-Factory: on CPU its random mask "
                    "and extra copy of every projection's input cost 8-15 % of a training step (bench/RESULTS.md, "
                    "Profile); 0.05-0.1 can help small datasets overfit less.",
    )
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Modules that get adapters; all-linear finds every linear projection of the architecture (not the LM head).",
    )
    target_parameters: list[str] = Field(
        default_factory=list,
        description="Bare weight tensors that get adapters besides target_modules (PEFT's target_parameters), named "
                    "by a dotted suffix: e.g. the routed experts of MoE models, which transformers keeps as one fused "
                    "tensor per layer ([mlp.experts.gate_up_proj, mlp.experts.down_proj] for Qwen2-MoE, whose "
                    "experts all-linear leaves frozen; training names what no adapter covers).",
    )
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA scaling (alpha / sqrt(r)).")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    fused: bool = Field(
        True,
        description="Add each adapter's term to the frozen layer's output inside one matmul (addmm), with the "
                    "scale applied on the rank-wide activations, instead of PEFT's separate scale and add over the "
                    "whole output: the same sum up to float rounding, as fast or faster and with a lower peak "
                    "memory on CPU (measured in bench/RESULTS.md, LoRA as one addmm). Plain linear layers only: QLoRA, DoRA, autocast and "
                    "mixed-adapter batches keep PEFT's forward. false: PEFT's forward everywhere.",
    )

    @field_validator("target_modules", "target_parameters", mode="before")
    @classmethod
    def _names_as_list(cls, value):
        # `--set lora.target_modules=q_proj,v_proj` (or one name): a list, as in YAML's [q_proj, v_proj].
        if isinstance(value, str) and value != "all-linear":
            return [name.strip() for name in value.split(",") if name.strip()]
        return value


class TrainConfig(_Section):
    method: Literal["lora", "qlora", "full"] = Field(
        "lora", description="lora: adapters on frozen weights; qlora: adapters on 4-bit weights (bitsandbytes); full: all weights."
    )
    objective: Literal["sft", "dpo", "orpo", "simpo", "kto"] = Field(
        "sft",
        description=(
            "What the run learns from. sft: imitate the answers (chat/text data). Preference tuning on "
            "{prompt, chosen, rejected} data (settings in the preference section): dpo: prefer chosen over "
            "rejected relative to a frozen reference (the base with the adapter switched off: no second copy "
            "of the weights); orpo: answer loss on chosen + odds-ratio penalty, no reference; simpo: "
            "length-normalized margin, no reference; kto: unpaired good/bad answers (a record with chosen "
            "and rejected gives one of each) relative to the reference. dpo and kto need method lora or qlora."
        ),
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    num_epochs: float = Field(3.0, gt=0, description="Passes over the data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, le=10 ** 9, description="Stop after this many optimizer steps.")
    batch_size: int = Field(4, gt=0, description="Samples per device per forward pass.")
    grad_accum: int = Field(1, gt=0, description="Forward passes per optimizer step (global batch = batch_size x grad_accum x devices).")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of steps spent warming up the learning rate "
                                "(rounded up to whole steps, never all of them: a one-step run trains at the full rate).")
    warmup_steps: int | None = Field(None, ge=0, description="Warm-up steps (overrides warmup_ratio).")
    scheduler: Literal["cosine", "linear", "constant_with_warmup", "constant"] = Field(
        "cosine", description="Learning-rate schedule after warm-up (constant and constant_with_warmup are the "
                              "same: a warm-up, if any, then the rate; warmup_ratio 0 for none)."
    )
    optimizer: Literal["auto", "adamw_torch", "adamw_torch_fused", "sgd", "adafactor"] = Field(
        "auto", description="Optimizer (transformers' names). auto: AdamW, fused (one kernel per tensor) on CPU, "
                            "CUDA and MPS, the plain loop elsewhere; both give the same updates up to rounding."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 = off).")
    seed: int = Field(42, ge=0, le=2 ** 32 - 1,
                      description="Seed for initialisation, shuffling and data order (0 to 2**32-1, what numpy takes).")
    logging_steps: int = Field(1, gt=0, description="Log loss, lr, grad norm and tokens/s every N steps.")
    save_steps: int = Field(50, gt=0, description="Save a checkpoint every N steps.")
    save_total_limit: int = Field(2, gt=0, description="Keep only the last K checkpoints.")
    eval_steps: int | None = Field(None, gt=0, description="Evaluate every N steps (default: save_steps) when there is validation data.")
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="Recompute activations to save memory; auto lets the memory plan decide."
    )
    packing: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Pack several samples per row with attention kept inside each sample; auto turns it on when it is safe.",
    )
    loss_chunk_size: int | None = Field(
        None, gt=0,
        description="Tokens per chunk of the chunked cross-entropy (the full logits are never materialized). "
                    "Default: sized so one chunk's fp32 logits stay within 256 MiB (1024 tokens for a 49k "
                    "vocabulary, 256 for Qwen's 152k); the memory plan may lower it to fit a budget.",
    )
    memory_budget: str | None = Field(
        None, description="Memory to plan for, e.g. '11GB'; default: the device's free memory (RAM on CPU)."
    )
    num_threads: int | None = Field(None, gt=0, description="CPU threads for PyTorch (default: PyTorch's choice).")
    distributed: Literal["auto", "ddp", "fsdp"] = Field(
        "auto",
        description="How a multi-process run (torchrun) splits the work: ddp keeps a whole model copy per process; "
                    "fsdp shards weights, gradients and optimizer state over the processes (FSDP2, one shard unit "
                    "per decoder layer); auto is ddp unless the launcher chose otherwise (accelerate launch with an "
                    "FSDP or DeepSpeed config). Ignored by a single-process run.",
    )

    @field_validator("packing", "gradient_checkpointing", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        # YAML reads bare on/off/yes/no as booleans: `--set train.packing=off` means "off".
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> Any:
        # Checked here, so a typo is refused with the option's name before anything loads.
        if value is not None:
            parse_memory(value)
            return str(value)
        return value


def parse_memory(text: str | int | float) -> int:
    """'11GB', '11 GiB', '800MB', '16g' -> bytes (binary units, as GPU and OS tools report). A bare
    number is bytes; below 64 MiB it is refused, as it is a forgotten unit ("16" meaning 16 GB),
    not a budget any model fits."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B?)\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"'{text}' is not a memory size (examples: 11GB, 800MB, 24GiB)")
    value, unit = float(match.group(1)), match.group(2).upper()
    size = int(value * 1024 ** "BKMGT".index(unit or "B"))
    if size < 64 * 1024 ** 2:
        raise ValueError(f"'{text}' is {size} bytes, less than any model needs: give a unit (examples: 11GB, 800MB)")
    return size


class PreferenceConfig(_Section):
    """Settings of the preference objectives (train.objective dpo | orpo | simpo | kto); names follow TRL's."""

    beta: float | None = Field(
        None,
        gt=0,
        description=(
            "dpo/kto: how far the tuned model may move from the reference (smaller = further; default 0.1); "
            "simpo: scale of the length-normalized reward (default 2.0, as in the SimPO paper). Not used by orpo."
        ),
    )
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        "sigmoid",
        description=(
            "dpo only. sigmoid: the DPO paper's -log sigmoid(beta x margin); ipo: squared distance of the "
            "per-token margin to 1/(2 beta) (IPO, resists overfitting on deterministic preferences); hinge: "
            "max(0, 1 - beta x margin) (SLiC); robust: sigmoid corrected for label_smoothing of the pairs "
            "being flipped (rDPO)."
        ),
    )
    label_smoothing: float = Field(
        0.0,
        ge=0.0,
        lt=0.5,
        description=(
            "Assumed share of pairs whose chosen and rejected are swapped (noisy labels): for dpo with "
            "loss_type robust and for simpo; 0 = trust every pair."
        ),
    )
    rpo_alpha: float = Field(
        0.0,
        ge=0,
        description=(
            "dpo: weight of an answer loss (mean negative log-likelihood per token) on the chosen answers, added "
            "to the DPO loss (RPO, Pang et al. 2024; TRL's rpo_alpha, in TRL 1.16 loss_type [\"sigmoid\", \"sft\"] "
            "with loss_weights [1, rpo_alpha]). DPO alone can widen the margin by lowering both answers; this "
            "keeps the chosen ones likely. 0 = off; the RPO paper uses 1.0."
        ),
    )
    orpo_lambda: float = Field(
        0.1,
        gt=0,
        description="orpo: weight of the odds-ratio term next to the answer loss on chosen (the ORPO paper's lambda; TRL's beta).",
    )
    simpo_gamma: float = Field(
        0.5,
        ge=0,
        description="simpo: target reward margin gamma between chosen and rejected (TRL's simpo_gamma).",
    )
    desirable_weight: float = Field(
        1.0,
        gt=0,
        description="kto: weight of the loss on good (chosen) answers; raise it when good answers are rarer than bad ones.",
    )
    undesirable_weight: float = Field(
        1.0,
        gt=0,
        description="kto: weight of the loss on bad (rejected) answers; raise it when bad answers are rarer than good ones.",
    )

    def beta_for(self, objective: str) -> float:
        """beta, or the objective's default (0.1 for dpo/kto, 2.0 for simpo)."""
        if self.beta is not None:
            return self.beta
        return 2.0 if objective == "simpo" else 0.1


PREFERENCE_OBJECTIVES = ("dpo", "orpo", "simpo", "kto")
# Objectives whose loss compares against a frozen reference model (the adapter switched off).
REFERENCE_OBJECTIVES = ("dpo", "kto")


class OutputConfig(_Section):
    dir: str = Field("runs/run", description="Run directory: config, adapter, checkpoints, metrics, report. "
                     "A run's own RUN/config.yaml trains (resumes) RUN itself, wherever it was moved, "
                     "unless output.dir is given with --set or -o.")
    overwrite: bool = Field(False, description="Start afresh in an existing run directory instead of resuming it.")

    @field_validator("dir")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():  # an empty path is the working folder, never what was meant
            raise ValueError("empty; give the run directory")
        return value


class EvalConfig(_Section):
    probe_prompts: list[str] = Field(
        default_factory=list,
        description="Prompts answered by the base and the tuned model in the report (default: the first training "
                    "questions, each offered the tools its sample defines, as it was trained).",
    )
    max_new_tokens: int = Field(128, gt=0, description="Token limit for answers in the report and compare.")
    probe_during_training: bool = Field(
        False,
        description=(
            "Generation probe: every train.eval_steps steps (default: save_steps), answer the first "
            "eval.probe_count probe prompts (greedy) and append them to metrics.jsonl; the UI's run page shows them."
        ),
    )
    probe_count: int = Field(4, gt=0, description="How many probe prompts the generation probe answers.")
    persona_terms: list[str] = Field(
        default_factory=list,
        description=(
            "Text that marks the trained persona or task (e.g. the assistant's new name): `ducktune eval` counts "
            "a general answer containing it as bleed. Trained answers quoted verbatim count too."
        ),
    )


class RunConfig(_Section):
    """A whole training run."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _check_consistency(self, info: ValidationInfo) -> "RunConfig":
        if self.data.val_file and self.data.val_ratio:
            raise ValueError("set data.val_ratio or data.val_file, not both")
        problem = preference_problem(self)
        # A run's own config.yaml was accepted when it started: stages read runs made before this check.
        if not problem and not (info.context or {}).get("recorded"):
            problem = unused_option_problem(self)
        if problem:
            raise ValueError(problem)
        return self


# LoRA options that shape a new adapter; a continued one (model.adapter) keeps its own. lora.fused
# is not one: it chooses how any adapter's layers compute.
ADAPTER_SHAPE = ("r", "alpha", "dropout", "target_modules", "target_parameters", "use_rslora", "use_dora")


def unused_option_problem(config: "RunConfig") -> str | None:
    """The one-line reason an option set away from its default would be silently ignored, or None
    (as preference_problem refuses preference options the objective does not use)."""
    lora, train = config.lora, config.train
    changed = [name for name in LoraConfig.model_fields
               if getattr(lora, name) != LoraConfig.model_fields[name].get_default(call_default_factory=True)]
    if train.method == "full" and changed:
        return (f"lora.{changed[0]} has no effect with train.method full (no adapter is trained); "
                "remove the lora options or use train.method lora or qlora")
    shaping = [name for name in changed if name in ADAPTER_SHAPE]
    if config.model.adapter and shaping:
        return (f"lora.{shaping[0]} has no effect with model.adapter: a continued adapter keeps its own "
                f"{', '.join(ADAPTER_SHAPE[:4])}, ...; remove the lora option")
    if train.objective != "sft" and train.packing == "on":
        return (f"train.packing on has no effect with train.objective {train.objective} (preference pairs "
                "train as padded batches); set train.packing to auto or off")
    return None


def preference_problem(config: "RunConfig") -> str | None:
    """The one-line reason a train/preference combination cannot run, or None."""
    train, pref, adapter = config.train, config.preference, config.model.adapter
    objective = train.objective
    if objective != "sft" and config.data.replay:
        return (f"data.replay mixes in supervised answers, which train.objective {objective} cannot use; "
                "set data.replay to 0")
    if objective in REFERENCE_OBJECTIVES and train.method == "full":
        return (f"train.objective {objective} compares against the base model with the adapter switched off, and "
                "method full has no adapter; use train.method lora or qlora (or objective orpo/simpo, which need no "
                "reference)")
    if adapter and train.method == "full":
        return "model.adapter continues a LoRA adapter; it cannot be combined with train.method full"
    if objective == "kto" and train.batch_size < 2:
        return ("train.objective kto estimates its KL term from mismatched answers within a micro-batch; "
                "set train.batch_size to 2 or more")
    set_fields = pref.model_fields_set
    unused = {
        "beta": objective in ("sft", "orpo"),
        "loss_type": objective != "dpo",
        "label_smoothing": not (objective == "simpo" or (objective == "dpo" and pref.loss_type == "robust")),
        "rpo_alpha": objective != "dpo",
        "orpo_lambda": objective != "orpo",
        "simpo_gamma": objective != "simpo",
        "desirable_weight": objective != "kto",
        "undesirable_weight": objective != "kto",
    }
    for name, is_unused in unused.items():
        if name in set_fields and is_unused and getattr(pref, name) != PreferenceConfig.model_fields[name].default:
            used_by = {"beta": "dpo, simpo and kto", "loss_type": "dpo", "rpo_alpha": "dpo", "orpo_lambda": "orpo",
                       "simpo_gamma": "simpo", "desirable_weight": "kto", "undesirable_weight": "kto",
                       "label_smoothing": "dpo with loss_type robust, and simpo"}[name]
            return f"preference.{name} has no effect with train.objective {objective} (it is used by {used_by})"
    return None


# --------------------------------------------------------------------------- loading


def _suggest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else f" (known keys: {', '.join(sorted(choices))})"


def _model_at(loc: tuple, root: type[BaseModel] = RunConfig) -> type[BaseModel] | None:
    """The pydantic model that owns the field at `loc` (skipping list indices)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif inner and any(isinstance(a, type) and issubclass(a, BaseModel) for a in inner):
            model = next(a for a in inner if isinstance(a, type) and issubclass(a, BaseModel))
        else:
            return None
    return model


def format_validation_error(err: ValidationError, source: str, overridden: tuple[str, ...] = ()) -> str:
    """One line per problem: `source: key.path: message`. A problem with a key given by `--set` (one
    of `overridden`, dotted) is blamed on that flag (`--set train.lerning_rate: unknown key`), not on
    the file. The alternatives of a union field (target_modules: a list or all-linear) fail together:
    one line naming both."""
    lines: dict[tuple, str] = {}
    for item in err.errors():
        loc = _option_loc(item["loc"])
        dotted = ".".join(str(p) for p in loc)
        message = item["msg"].removeprefix("Value error, ")
        flags = _blamed_flags(dotted, item["type"], message, overridden)
        where = ", ".join(f"--set {key}" for key in flags) or source
        if flags and source != "--set" and set(_named_options(message)) - set(overridden):
            where = f"{source}, {where}"  # a check across options, some of them from the file
        # The key is left out where the one flag blamed, or the message, names it already.
        key = "" if not dotted or flags == [dotted] or message.startswith(dotted + ".") else f"{dotted}: "
        if item["type"] == "extra_forbidden":
            owner = _model_at(loc[:-1])
            choices = list(owner.model_fields) if owner else []
            lines[loc] = f"{where}: {key}unknown key{_suggest(str(loc[-1]), choices)}"
            continue
        got = item.get("input")
        shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
        if loc in lines and loc:  # another alternative of the same union field
            lines[loc] = lines[loc].removesuffix(shown) + f", or {message[0].lower()}{message[1:]}{shown}"
            continue
        # Checks across options (a section's or RunConfig's validator) name their keys in the message.
        lines[loc] = f"{where}: {key}{message}{shown}"
    return "\n".join(lines.values())


def _blamed_flags(dotted: str, kind: str, message: str, overridden: tuple[str, ...]) -> list[str]:
    """The `--set` keys a problem at `dotted` came from: the key itself or one around it; for an unknown
    key, also a flag that made it (`--set trian.max_steps` made `trian`); for a check across options
    (at a section or the top), the flags whose keys its message names."""
    inside = [k for k in overridden if dotted and (dotted == k or dotted.startswith(k + "."))]
    if inside:
        return inside[-1:]
    made = [k for k in overridden if kind == "extra_forbidden" and k.startswith(dotted + ".")]
    if made:
        return made[-1:]
    if kind == "extra_forbidden":
        return []
    named = []
    for k in overridden:
        relative = k.removeprefix(dotted + ".") if dotted else k
        if k not in named and any(re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", message)
                                  for name in {k, relative}):
            named.append(k)
    return named


def _named_options(message: str) -> list[str]:
    """The `section.option` keys a message names (`train.batch_size`)."""
    sections = "|".join(RunConfig.model_fields)
    return re.findall(rf"(?<![\w.])(?:{sections})\.\w+", message)


def _option_loc(loc: tuple) -> tuple:
    """pydantic's error location as the user's keys: without the tags it inserts for the member of a
    union that failed (`lora.target_modules.list[str]`) and for a dict's key (`[key]`). Tags are told
    by the schema, not by their spelling: a user's own key `int` or `datasets[0]` is kept and named."""
    kept: list = []
    node: Any = RunConfig
    after_union = False
    for part in loc:
        if part == "[key]" or (after_union and isinstance(part, str)):
            after_union = False
            continue
        after_union = False
        kept.append(part)
        if isinstance(part, int) and typing.get_origin(node) is list:
            node = typing.get_args(node)[0]
            continue
        field = node.model_fields.get(part) if isinstance(node, type) and issubclass(node, BaseModel) else None
        node = field.annotation if field else None
        members = [a for a in typing.get_args(node) if a is not type(None)] \
            if typing.get_origin(node) in (typing.Union, types.UnionType) else None
        if members is not None:
            after_union = len(members) > 1  # `X | None` has no member tag
            node = members[0] if len(members) == 1 else None
    return tuple(kept)


# The spellings that clear an optional text option from the command line (`--set model.adapter=null`):
# YAML's words for null. `~`, also YAML's null, is not one: in a path it is the home folder.
NULL_WORDS = ("null", "Null", "NULL")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.learning_rate=1e-4` -> (['train', 'learning_rate'], 0.0001).

    A text option (a str field, such as model.system_prompt or output.dir) takes the value verbatim:
    read as YAML, `#1 assistant` was a comment (null), `Rules: be nice` a mapping and `yes` True. An
    optional text option is cleared by `null` (NULL_WORDS). Every other option's value is read as
    YAML (numbers, true/false, [lists], {mappings})."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key=value, e.g. --set train.learning_rate=1e-4")
    key, raw = text.split("=", 1)
    # `data.datasets[0].repeat` is `data.datasets.0.repeat`: the index spelling users know from Python.
    keys = [k for k in re.sub(r"\[(\d+)\]", r".\1", key.strip()).split(".") if k]
    if not keys:
        raise ConfigError(f"--set {text}: empty key")
    text_field = _text_field(keys)
    if text_field is not None:
        return keys, None if text_field == "optional" and raw in NULL_WORDS else raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def _text_field(keys: list[str]) -> str | None:
    """'required' or 'optional' when the option at `keys` is a plain text field (str or str | None),
    else None (other types, and keys that name no option, which validation reports)."""
    owner = _model_at(tuple(int(k) if k.isdigit() else k for k in keys[:-1]))  # data.datasets.0.path
    field = owner.model_fields.get(keys[-1]) if owner is not None else None
    if field is None:
        return None
    if field.annotation is str:
        return "required"
    return "optional" if field.annotation == (str | None) else None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set each `key.path=value`; a number indexes a list (`data.datasets.0.weight=2`)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for depth, key in enumerate(keys[:-1]):
            node = _override_child(node, key, keys[:depth], text, keys[depth + 1].isdigit())
        if isinstance(node, list):
            node[_list_index(node, keys[-1], keys[:-1], text)] = value
        else:
            node[keys[-1]] = value
    return data


def _override_child(node, key: str, parents: list[str], text: str, indexed: bool = False):
    """The mapping or list under `key` that a --set path goes through, made a mapping (a list when the
    path indexes it: `data.datasets.0.repeat` with no datasets yet) if absent."""
    if isinstance(node, list):
        index = _list_index(node, key, parents, text)
        if isinstance(node[index], str):  # a bare dataset path: its mapping form
            node[index] = {"path": node[index]}
        return node[index]
    if not isinstance(node.get(key), (dict, list)):
        node[key] = [] if indexed else {}
    return node[key]


def _list_index(node: list, key: str, parents: list[str], text: str) -> int:
    if not node:
        raise ConfigError(f"--set {text}: {'.'.join(parents)} is empty; give the list first, "
                          f"e.g. --set {'.'.join(parents)}=[...]")
    if not key.isdigit() or int(key) >= len(node):
        raise ConfigError(f"--set {text}: {'.'.join(parents)} is a list of {len(node)}; index it with 0-{len(node) - 1}")
    return int(key)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: plain YAML keeps the last one
    silently, so a second `learning_rate:` lower in a long config would win unseen."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by design
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key]})", key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a config file; give a YAML file (see examples/)")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start}); save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (model, data, lora, train, output)")
    return data


def build_config(data: dict, source: str = "config", overridden: tuple[str, ...] = (),
                 recorded: bool = False) -> RunConfig:
    """`recorded`: `data` is a run's own config.yaml, accepted when the run started (unused_option_problem
    is not asked again, so runs made before a check was added stay readable)."""
    try:
        return RunConfig.model_validate(data, context={"recorded": recorded})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, overridden)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or start from defaults), apply `key=value` overrides, validate."""
    data = read_yaml(path) if path else {}
    apply_overrides(data, overrides or [])
    source = str(path) if path else "--set"
    overridden = tuple(".".join(parse_override(text)[0]) for text in overrides or [])
    recorded = bool(path) and is_run_config(path) and not overrides
    config = build_config(data, source, overridden, recorded)
    if path and "output.dir" not in overridden and is_run_config(path):
        # A run's own config.yaml (beside its run.json) trains that run's folder, wherever the run was moved
        # and whatever the working folder: the output.dir recorded in it named the folder as it was started.
        config.output.dir = str(Path(path).parent)
    _resolve_paths(config, path)
    return config


def _resolve_paths(config: RunConfig, path: str | Path | None) -> None:
    """Every path option made what the user meant, wherever a later stage runs.

    `~` is the home folder in every path option (output.dir `~/x` wrote run.json into a literal `./~/x`
    while the Trainer's checkpoints went to the home folder). Relative paths in a YAML file are relative
    to that file, so configs can move with their data and models; then (and for --set) to the working
    folder. Found ones are stored absolute: the run's config.yaml (which chat, export and a resume read)
    then works from any folder.
    """
    model, data = config.model, config.data
    config.output.dir = _expand_home(config.output.dir)
    model.name_or_path = _expand_home(model.name_or_path)
    if model.adapter:
        model.adapter = _expand_home(model.adapter)
    template_file = model.chat_template and not _is_template_text(model.chat_template)
    if template_file:
        model.chat_template = _expand_home(model.chat_template)
    for spec in data.datasets:
        spec.path = _expand_home(spec.path)
    if data.val_file:
        data.val_file = _expand_home(data.val_file)
    data.dataset_dir = _expand_home(data.dataset_dir)
    bases = ([Path(path).resolve().parent] if path else []) + [Path.cwd()]
    for base in bases:
        for spec in data.datasets:
            spec.path = _resolve_relative(spec.path, base)
        if data.val_file:
            data.val_file = _resolve_relative(data.val_file, base)
        data.dataset_dir = _resolve_relative(data.dataset_dir, base)
        if model.adapter:
            model.adapter = _resolve_relative(model.adapter, base)
        if template_file:
            model.chat_template = _resolve_relative(model.chat_template, base, want_file=True)
        model.name_or_path = _resolve_model_folder(model.name_or_path, base)


def _expand_home(value: str) -> str:
    return os.path.expanduser(value) if value.startswith("~") else value


def _is_template_text(value: str) -> bool:
    """A chat_template given as the Jinja text itself (as models.loading.read_template tells it)."""
    return "{%" in value or "{{" in value


def _resolve_model_folder(value: str, base: Path) -> str:
    """model.name_or_path, absolute when it is a folder under `base`; hub ids (`org/name`) without such
    a folder, `modelscope:` ids and the built-in model's name are left to the model loader."""
    if value == BUILTIN_MODEL or ":" in value.split("/")[0] or Path(value).is_absolute():
        return value
    candidate = base / value
    return os.path.normpath(candidate) if candidate.is_dir() else value


def is_run_config(path: str | Path) -> bool:
    """Whether `path` is a run directory's config.yaml (the folder holds the run's run.json)."""
    path = Path(path)
    return path.name == "config.yaml" and (path.parent / "run.json").is_file()


def _resolve_relative(value: str, base: Path, want_file: bool = False) -> str:
    if ":" in value.split("/")[0] or Path(value).is_absolute():
        return value
    candidate = base / value
    found = candidate.is_file() if want_file else candidate.exists()
    return str(candidate) if found else value


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def describe_options(model: type[BaseModel] = RunConfig, prefix: str = "",
                     entries: bool = False) -> list[tuple[str, str, Any, str]]:
    """(key, type, default, description) for every option, for `--help-config` and the web UI. The type
    names a choice's allowed values (`one of: lora, qlora, full`). `entries`: also the keys of each entry
    of a list of sections (`data.datasets[].path`), after the list (the web UI edits the list as YAML)."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(describe_options(annotation, key + ".", entries))
            continue
        default = REQUIRED if field.is_required() else field.get_default(call_default_factory=True)
        rows.append((key, _type_name(annotation), default, field.description or ""))
        entry = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
        if entries and isinstance(entry, type) and issubclass(entry, BaseModel):
            rows.extend(describe_options(entry, key + "[].", entries))
    return rows


class _Required:
    """The default of an option that has none (a dataset entry's path)."""

    def __repr__(self) -> str:
        return "required"


REQUIRED = _Required()


def _type_name(annotation: Any) -> str:
    """A type as `--help-config` shows it: `int`, `int | null`, `lora | qlora | full` (the allowed
    values), `list of str`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        entry = args[0]
        kind = "entries (keys below)" if isinstance(entry, type) and issubclass(entry, BaseModel) else _type_name(entry)
        return f"list of {kind}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
