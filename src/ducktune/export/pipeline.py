"""`ducktune export`: run directory -> merged model -> GGUF files -> Ollama Modelfile -> verification.

    RUN_DIR/export/                (or --out)
      merged/                      safetensors (base dtype) + tokenizer + chat template + generation_config
      NAME-f16.gguf, NAME-q8_0.gguf, NAME-q4_k_m.gguf
      Modelfile                    FROM q4_k_m (else the next quant in MODELFILE_PREFERENCE), TEMPLATE, stop tokens, num_ctx, SYSTEM
      export.json                  what was written and how (read by `ducktune verify`)
      verify.json                  the verification checks

Everything a later step needs is written atomically, and the TEMPLATE is derived (and refused
when it cannot be made exact) before any heavy work starts. The verification table is
printed, saved, and appended to the run's report.md.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ducktune.errors import ModelError, UserError
from ducktune.export import verify as checks_mod
from ducktune.export.gguf_file import QUANTS as DIRECT_QUANTS
from ducktune.export.quantize import INSTALL_HINT, K_QUANTS, llama_cpp_available
from ducktune.io import (atomic_dir, atomic_file, holds_working_folder, optional_json_field, read_json_file,
                         unwritable, write_json, write_text)
from ducktune.rundir import WriterLock

TARGETS = ("merged", "gguf", "ollama")
MAX_NUM_CTX = 4096
VERIFY_MAX_NEW_TOKENS = 64
REPORT_MARKER = "<!-- ducktune export verification -->"
# Smallest first: the Modelfile points at the first one written.
MODELFILE_PREFERENCE = ["q4_k_m", "q4_k_s", "q5_k_m", "q5_k_s", "q3_k_m", "q3_k_l", "q3_k_s", "q2_k", "q6_k",
                        "q8_0", "f16"]


@dataclass
class ExportResult:
    export_dir: Path
    name: str
    files: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    ollama_command: str | None = None
    seconds: float = 0.0
    # Where llama.cpp runs this architecture differently from transformers (gguf_arch.gguf_caveats), or
    # the Ollama TEMPLATE keeps the export day's date (template_caveats): checks on short probe prompts,
    # run the same day, cannot see them, so they are printed beside the verdict.
    caveats: list = field(default_factory=list)
    # `ducktune verify` of an existing export (seconds are the checks', not the export's)
    reverified: bool = False

    @property
    def verified(self) -> bool:
        return checks_mod.passed(self.checks)


def model_slug(text: str) -> str:
    """A name Ollama accepts and file names can carry: lowercase letters, digits, - _ ."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug or "model"


def export_name(name: str | None, run_path: Path, log=print) -> str:
    """The export's model name (its slug), refused when too long for a file name, with a note when
    --name has nothing Ollama accepts (小鸭 becomes 'model')."""
    slug = model_slug(name or Path(run_path).resolve().name)
    if len(slug) > 80:
        raise UserError(f"--name: {slug[:40]}...: {len(slug)} characters; give a name of at most 80")
    if name and slug == "model" and name.strip().lower() != "model":
        log(f"Note: --name {name!r} has no character Ollama takes in a model name (a-z, 0-9, - _ .): "
            "exported as 'model'; pass --name with Latin letters")
    return slug


def _previous_name(export_dir: Path) -> str | None:
    """The model name of the export already in `export_dir` (None: none, or not readable)."""
    name = optional_json_field(export_dir / "export.json", "name")
    return name if isinstance(name, str) and name.strip() else None


def _export_folder(out: str | Path | None, run_path: Path) -> Path:
    """--out (default RUN/export), refused in one line where the export cannot go: a file (it was
    swapped away), the working folder or one above it, a folder holding something else."""
    export_dir = Path(out).expanduser() if out else Path(run_path) / "export"
    if export_dir.exists() and not export_dir.is_dir():
        raise UserError(f"{out}: a file, not a folder; choose another --out")
    if holds_working_folder(export_dir):
        raise UserError(f"{out}: the folder you are in (it would be swapped away); give --out a new folder's name")
    if export_dir.is_dir() and any(export_dir.iterdir()) and not (export_dir / "export.json").is_file():
        raise UserError(f"{export_dir}: exists and is not a ducktune export folder; choose another --out")
    return export_dir


def parse_targets(value: str | list | tuple | None) -> list[str]:
    items = _split(value) or list(TARGETS)
    unknown = [t for t in items if t not in TARGETS]
    if unknown:
        raise UserError(f"--to {','.join(items)}: unknown target {unknown[0]!r}; choose from {', '.join(TARGETS)}")
    # Each target needs the previous one: the Modelfile points at a GGUF made from the merged model.
    deepest = max(TARGETS.index(t) for t in items)
    return list(TARGETS[: deepest + 1])


def parse_quants(value: str | list | tuple | None, log=print) -> list[str]:
    items = _split(value)
    if not items:
        if llama_cpp_available():
            return ["f16", "q4_k_m"]
        log(f"Writing f16 and q8_0 (q4_k_m needs llama.cpp's quantizer: {INSTALL_HINT})")
        return ["f16", "q8_0"]
    known = list(DIRECT_QUANTS) + list(K_QUANTS)
    unknown = [q for q in items if q not in known]
    if unknown:
        raise UserError(f"--quant {','.join(items)}: unknown quantization {unknown[0]!r}; choose from {', '.join(known)}")
    if any(q in K_QUANTS for q in items) and not llama_cpp_available():
        wanted = ", ".join(q for q in items if q in K_QUANTS)
        raise UserError(f"--quant {wanted} needs llama.cpp's quantizer (llama-cpp-python): {INSTALL_HINT}. "
                        "f16 and q8_0 are written without it")
    return list(dict.fromkeys(items))


def _split(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip().lower() for v in value if v and v.strip()]


@contextlib.contextmanager
def quiet_progress_bars():
    """transformers' weight-loading and saving bars would bury the export's own output."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _refuse_unwritable(export_dir: Path, out, run_path: Path) -> None:
    """One line, before any work, where the export folder cannot be written (a read-only run folder)."""
    why = unwritable(export_dir.parent)
    if why is None:
        return
    if out:
        raise UserError(f"{export_dir.parent}: {why}; pass --out with a folder you can write to")
    raise UserError(f"{run_path}: {why} (the export goes to {export_dir}); pass --out with a folder you can write "
                    "to, or export a writable copy of the run")


def export_run(run_path: str | Path, to=None, quants=None, out: str | Path | None = None, name: str | None = None,
               create: bool | None = None, prompt_limit: int = checks_mod.DEFAULT_PROMPT_LIMIT,
               allow_default_template: bool = False, log=print) -> ExportResult:
    """Export a finished run; returns the files written and the verification checks (run on at
    most `prompt_limit` of the run's probe prompts; 0 = all). With `allow_default_template`, a
    chat template that has no exact Ollama TEMPLATE gives a Modelfile without TEMPLATE instead
    of stopping the export."""
    with quiet_progress_bars():
        return _export_run(run_path, to, quants, out, name, create, prompt_limit, allow_default_template, log)


def refuse_unexportable(base_folder: Path) -> None:
    """Raise, before the merge, when the base model cannot become a GGUF: the merged Hugging Face
    folder (`--to merged`) is then what ducktune can give."""
    from ducktune.export.gguf_file import read_config
    from ducktune.export.support import gguf_support

    reason = gguf_support(base_folder, read_config(base_folder))
    if reason:
        raise ModelError(f"{base_folder / 'config.json'}: {reason}. `ducktune export RUN --to merged` writes the "
                         "merged Hugging Face folder, which llama.cpp's convert_hf_to_gguf.py may convert")


def llama_cpp_caveats(base_folder: Path, targets: list[str]) -> list[str]:
    """One line per way llama.cpp will run this model differently from transformers (none without GGUF)."""
    from ducktune.export.gguf_arch import gguf_caveats
    from ducktune.export.gguf_file import read_config

    return gguf_caveats(read_config(base_folder)) if "gguf" in targets else []


def template_caveats(chat_format, targets: list[str], tool_samples: int = 0, architecture: str | None = None,
                     go_template: str = "") -> list[str]:
    """Where Ollama prompts differently from the chat template: on another day, and with tools
    (`tool_samples`: the run's training samples that used them; `architecture`: the GGUF's, `go_template`:
    the TEMPLATE written, which names no tools)."""
    from ducktune.export.gotemplate import frozen_date
    from ducktune.export.ollama_select import OLLAMA_NATIVE_SINCE, prefers_gguf_template, uses_harmony

    if "ollama" not in targets:
        return []
    caveats = []
    if date := frozen_date(chat_format.tokenizer):
        caveats.append(f"the chat template prints today's date ({date!r} now); Go templates cannot, so the Ollama "
                       f"TEMPLATE keeps {date!r}: export again to refresh it (llama.cpp's own Jinja renders the date "
                       "of each day)")
    if tool_samples and uses_harmony(architecture, go_template):
        caveats.append(f"the run trained on tool calls ({tool_samples} samples): Ollama prompts gpt-oss with the "
                       "TEMPLATE, which has no tool section, so it never shows the model the tools of a request: "
                       "serve the export with `ducktune serve` (OpenAI tools API) or llama-server --jinja")
    elif tool_samples:
        since = OLLAMA_NATIVE_SINCE
        native = (f"Ollama {since} and later prompt this model with the GGUF's chat template, the trained one "
                  "(checked below), so requests with tools work there: llama-server renders the tools and reads the "
                  f"calls; Ollama before {since} uses the TEMPLATE, which" if prefers_gguf_template(
                      chat_format.trained_template(), go_template, architecture) else "the Ollama TEMPLATE")
        caveats.append(f"the run trained on tool calls ({tool_samples} samples): {native} has no tool section "
                       "(requests with tools are answered 'does not support tools'): there, serve the export with "
                       "`ducktune serve` (OpenAI tools API) or llama-server --jinja")
    return caveats


def _gguf_architecture(base_folder: Path) -> str | None:
    """The GGUF's general.architecture for this base model (llama.cpp's name), None when it has none."""
    from ducktune.export.gguf_arch import llama_cpp_arch
    from ducktune.export.gguf_file import read_config

    return llama_cpp_arch(read_config(base_folder))


def ollama_layout(chat_format, allow_default_template: bool, log=print):
    """(TurnLayout, None), or (None, the one-line reason) when the template cannot be expressed and
    the user allowed a Modelfile without TEMPLATE; otherwise the reason stops the export."""
    from ducktune.export.gotemplate import TemplateError, derive_layout

    try:
        return derive_layout(chat_format), None
    except TemplateError as exc:
        if not allow_default_template:
            raise TemplateError(f"{exc}. To export anyway, pass --allow-default-template: the Modelfile is then "
                                "written without TEMPLATE and Ollama prompts the model in its default format, "
                                "not the one it was trained on") from None
        log(f"Writing the Modelfile without TEMPLATE (--allow-default-template): {exc}")
        return None, str(exc)


def _export_run(run_path, to, quants, out, name, create, prompt_limit, allow_default_template, log) -> ExportResult:
    from ducktune.export.merge import open_run
    from ducktune.models.adapter_check import check_adapter

    started = time.perf_counter()
    targets = parse_targets(to)
    source = open_run(run_path, log=log)
    if quants and "gguf" not in targets:  # it would be ignored without a word
        raise UserError(f"--quant {quants}: --to {','.join(targets)} writes no GGUF; add gguf to --to or drop --quant")
    quant_list = parse_quants(quants, log=log) if "gguf" in targets else []
    export_dir = _export_folder(out, source.run.path)
    if name is None and (previous := _previous_name(export_dir)):
        # Exported again: the files keep their name (the quickstart's duckling-*.gguf were replaced by
        # quickstart-*.gguf, breaking the Modelfile and commands that named them).
        log(f"Exporting as {previous!r}, the name of the export it replaces (--name gives another)")
        name = previous
    name = export_name(name, source.run.path, log)
    _refuse_unwritable(export_dir, out, source.run.path)
    prompts, tools = _verification_probes(source, prompt_limit)
    # Refuse a broken adapter, an architecture or tokenizer llama.cpp cannot take, or an
    # untranslatable chat template or system prompt before merging or writing anything.
    if source.method != "full":
        check_adapter(source.weights, source.base_folder)
    if "gguf" in targets:
        refuse_unexportable(source.base_folder)
    layout, template_omitted = (ollama_layout(source.chat_format, allow_default_template, log=log)
                                if "ollama" in targets else (None, None))
    if "ollama" in targets and source.chat_format.system_prompt:
        from ducktune.export.modelfile import unquotable

        if problem := unquotable(source.chat_format.system_prompt, "model.system_prompt"):
            raise UserError(f"{problem} (the Modelfile's SYSTEM); export --to merged,gguf, or train with another "
                            "system prompt")

    log(f"\nExporting {source.run.path} as '{name}' to {export_dir} ({', '.join(targets)}"
        + (f"; {', '.join(quant_list)}" if quant_list else "") + ")")
    result = ExportResult(export_dir, name, caveats=llama_cpp_caveats(source.base_folder, targets)
                          + (template_caveats(source.chat_format, targets, (source.info.get("data") or {}).get(
                              "tool_samples", 0), _gguf_architecture(source.base_folder), layout.go_template())
                             if layout else []))
    for note in result.caveats:
        log(f"Caveat: {note}")
    with WriterLock("export") as lock:  # one writer per run: not beside a training or another export
        lock.acquire(source.run.path)
        # Built and verified in a temporary folder that replaces the previous export in one rename: an
        # interrupted export (verification included) leaves the last complete one, and the report's table
        # of it; no stale files survive a new one.
        with atomic_dir(export_dir) as work:
            merge, summaries, manifest, config = _write_export(work, export_dir, source, targets, quant_list, name,
                                                               (layout, template_omitted), (prompts, tools), result, log)
            log("\nVerifying the export (merged model vs GGUF in transformers and llama.cpp, Modelfile via Go)")
            reference = checks_mod.Reference(merge.model, source.tokenizer, source.chat_format, prompts,
                                             manifest["max_new_tokens"], tools)
            merge_check = checks_mod.Check(**manifest["merge_check"])
            result.checks = [merge_check] + run_checks(work, manifest, reference, summaries, config, log=log)
            result.seconds = time.perf_counter() - started
            table = record_verification(result, work, log=log)
            drop_report_section(source.run.report)  # its table names the files about to be replaced
        publish(result, table, source.run.report, log=log)
    if result.ollama_command:
        offer_ollama_create(result.ollama_command, create, log=log)
    return result


def _verification_probes(source, limit: int) -> tuple[list[str], list | None]:
    """(at most `limit` of the run's probe prompts, spread over its list; their tools, None without any):
    a run trained on calls is verified on prompts offering its tools, as it was probed in training."""
    picked = checks_mod.spread_indices(len(source.probe_prompts), limit)
    tools = [source.probe_tools[i] for i in picked] if source.probe_tools else None
    return [source.probe_prompts[i] for i in picked], (tools if tools and any(tools) else None)


def _write_export(work: Path, export_dir: Path, source, targets, quant_list, name, template, probes, result, log):
    """Merged model, GGUFs, Modelfile and manifest, written into `work` (renamed to `export_dir` after).
    `template` is (layout, None) or (None, why the Modelfile has no TEMPLATE); `probes` (prompts, their tools)."""
    layout, template_omitted = template
    prompts, tools = probes
    from ducktune.export.gguf_file import read_config
    from ducktune.export.gguf_vocab import prompt_starts_with_bos
    from ducktune.export.merge import merge_run

    started = time.perf_counter()
    merge = merge_run(source, work / "merged", prompts, tools, log=log)
    log(f"Merged and saved merged/ ({time.perf_counter() - started:.0f} s)")
    result.files["merged"] = "merged"
    merge_check = _merge_check(merge)

    # Written to the GGUF as add_bos_token: llama.cpp (and Ollama) add BOS exactly when the trained
    # prompts start with it.
    add_bos = prompt_starts_with_bos(source.tokenizer)
    summaries = {}
    if "gguf" in targets:
        summaries = _write_ggufs(work, merge.merged_dir, source, quant_list, name, add_bos, log)
        result.files["gguf"] = {q: f"{name}-{q}.gguf" for q in quant_list}

    config = read_config(merge.merged_dir)
    if "ollama" in targets:
        result.files["modelfile"] = "Modelfile"
        modelfile_quant = next(q for q in MODELFILE_PREFERENCE if q in quant_list)
        _write_modelfile(work, export_dir, name, modelfile_quant, layout, source, config, add_bos, template_omitted)
        result.ollama_command = ollama_command(name, export_dir, only_f16=quant_list == ["f16"])

    manifest = {
        "name": name,
        "run": str(source.run.path.resolve()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "base_model": source.config.model.name_or_path,
        "method": source.method,
        "targets": targets,
        "quants": quant_list,
        "files": result.files,
        "merged_dtype": merge.dtype,
        "add_bos": add_bos,
        "system_prompt": source.config.model.system_prompt,
        "stop_tokens": source.chat_format.stop_tokens,
        "template": layout.to_dict() if layout else None,
        "template_renderings": checks_mod.template_renderings(source.chat_format),
        "template_omitted": template_omitted,
        "probe_prompts": prompts,
        **({"probe_tools": tools} if tools else {}),
        "max_new_tokens": min(source.config.eval.max_new_tokens, VERIFY_MAX_NEW_TOKENS),
        "merge_check": merge_check.to_dict(),
        "ollama_command": result.ollama_command,
        "caveats": result.caveats,
    }
    write_json(work / "export.json", manifest)
    return merge, summaries, manifest, config


def _write_ggufs(work: Path, merged_dir: Path, source, quant_list: list[str], name: str, add_bos: bool, log) -> dict:
    """Each quant's GGUF written into `work` ({quant: write_gguf's summary, None for a llama.cpp k-quant})."""
    from ducktune.export.gguf_file import write_gguf
    from ducktune.export.merge import exported_tokenizer
    from ducktune.export.quantize import quantize_gguf

    summaries = {}
    tokenizer = exported_tokenizer(source)
    # A template with no end-of-turn token of its own (GLM-4): the first other stop token of the model's
    # generation_config (<|user|>) is the GGUF's end of turn, as llama.cpp's converter writes it.
    eot = source.chat_format.eot_token or next(
        (t for t in source.chat_format.stop_tokens if t != tokenizer.eos_token), None)
    direct = [q for q in quant_list if q in DIRECT_QUANTS]
    k_quants = [q for q in quant_list if q in K_QUANTS]
    f16_path = work / f"{name}-f16.gguf"
    temporary_f16 = bool(k_quants) and "f16" not in direct
    for quant in direct + (["f16"] if temporary_f16 else []):
        path = work / f"{name}-{quant}.gguf"
        started = time.perf_counter()
        summaries[quant] = write_gguf(merged_dir, path, quant, name, tokenizer, eot, log=log,
                                      add_bos=add_bos)
        log(f"Wrote {path.name} ({path.stat().st_size / 1e6:.0f} MB, {time.perf_counter() - started:.0f} s)")
    try:
        for quant in k_quants:
            path = work / f"{name}-{quant}.gguf"
            started = time.perf_counter()
            quantize_gguf(f16_path, path, quant)
            summaries[quant] = None
            log(f"Quantized {path.name} with llama.cpp ({path.stat().st_size / 1e6:.0f} MB, "
                f"{time.perf_counter() - started:.0f} s)")
    finally:
        if temporary_f16:
            f16_path.unlink(missing_ok=True)
            summaries.pop("f16", None)
    return summaries


def _merge_check(merge) -> checks_mod.Check:
    from ducktune.export.merge import MERGE_TOLERANCE

    name = "merge: merged = base + adapter (logits)"
    if merge.max_diff is None:
        return checks_mod.Check(name, checks_mod.SKIP, "full fine-tune: nothing to merge")
    return checks_mod.Check(name, checks_mod.PASS,
                            f"max |Δlogit| {merge.max_diff:.1e} < {MERGE_TOLERANCE:.0e} in {merge.precision} on "
                            f"{merge.prompts} probe prompts; saved as {merge.dtype}",
                            {"max_abs_diff": merge.max_diff, "precision": merge.precision, "prompts": merge.prompts})


def modelfile_num_ctx(config: dict) -> int:
    """The Modelfile's num_ctx: the trained context, capped at MAX_NUM_CTX. GPT-2 names it n_positions, the rows
    of its learned position table: llama.cpp cannot look up positions past them (ALiBi's BLOOM names none)."""
    return min(int(config.get("max_position_embeddings") or config.get("n_positions") or MAX_NUM_CTX), MAX_NUM_CTX)


def _write_modelfile(work: Path, export_dir: Path, name: str, quant: str, layout, source, config: dict,
                     add_bos: bool, template_omitted: str | None = None) -> None:
    from ducktune.export.modelfile import ModelfileSpec, render_modelfile

    # llama.cpp adds BOS itself when the GGUF says so; the TEMPLATE must not print it twice.
    include_bos = not (add_bos and layout is not None and layout.bos)
    spec = ModelfileSpec(
        gguf_name=f"{name}-{quant}.gguf",
        template=layout.go_template(include_bos=include_bos) if layout else None,
        stop=source.chat_format.stop_tokens,
        num_ctx=modelfile_num_ctx(config),
        system=source.config.model.system_prompt,
    )
    header = (f"{name}: fine-tuned from {source.config.model.name_or_path} with ducktune\n"
              + (f"chat template: {layout.describe()}" if layout else
                 f"no TEMPLATE (--allow-default-template): {template_omitted}")
              + "; build with:\n"
              f"  {ollama_command(name, export_dir, only_f16=quant == 'f16')}")
    write_text(work / "Modelfile", render_modelfile(spec, header))


def ollama_command(name: str, export_dir: Path, only_f16: bool = False) -> str:
    words = ["ollama", "create", name, "-f", str(export_dir / "Modelfile")]
    return shlex.join(words + (["--quantize", "q4_K_M"] if only_f16 else []))


def run_checks(export_dir: Path, manifest: dict, reference, summaries: dict | None = None,
               config: dict | None = None, log=print) -> list:
    """Checks 1-4 on an export folder (see ducktune.export.verify)."""
    from ducktune.export.gguf_file import read_config
    from ducktune.models.loading import load_tokenizer

    summaries = summaries or {}
    config = config or read_config(export_dir / manifest["files"]["merged"])
    results, readable = [], []  # readable: the GGUFs whose header reads back
    gguf_files = manifest["files"].get("gguf") or {}
    for quant, filename in gguf_files.items():
        path = export_dir / filename
        log(f"  checking {filename}")
        if not path.is_file():
            results.append(checks_mod.Check(f"GGUF {filename}", checks_mod.FAIL, "file missing"))
            continue
        read_back = checks_mod.check_read_back(path, summaries.get(quant), export_dir / manifest["files"]["merged"])
        results.append(read_back)
        if read_back.status == checks_mod.FAIL:  # a damaged file (truncated...): the readers below would crash
            continue
        # transformers' loader is the independent reader for f16 (and for q8_0 when llama.cpp,
        # which checks q8_0 more tightly, is not installed).
        if quant == "f16" or (quant in DIRECT_QUANTS and checks_mod.llama_cpp_missing()):
            results.append(_check_or_fail(f"GGUF {filename}: transformers' GGUF loader vs merged",
                                          lambda: checks_mod.check_transformers_loader(path, quant, reference)))
        results.extend(checks_mod.check_llama_cpp(path, quant, reference, manifest["add_bos"]))
        readable.append(path)
    results.append(_check_or_fail("Chat template in merged/ and the GGUFs = trained format",
                                  lambda: checks_mod.check_embedded_templates(
                                      manifest.get("template_renderings"),
                                      load_tokenizer(export_dir / manifest["files"]["merged"]), readable)))
    if manifest["files"].get("modelfile"):
        log("  checking the Modelfile")
        results.extend(checks_mod.check_modelfile(export_dir / manifest["files"]["modelfile"],
                                                  reference.chat_format, manifest["add_bos"],
                                                  config.get("max_position_embeddings"),
                                                  manifest.get("template_omitted"), list(gguf_files.values())))
    return results


def _check_or_fail(label: str, check):
    """check()'s row, or a FAIL row naming the error when the file makes the reader itself fail."""
    try:
        return check()
    except (ValueError, OSError, RuntimeError, KeyError, IndexError) as exc:
        return checks_mod.Check(label, checks_mod.FAIL, f"could not be read: {type(exc).__name__}: {str(exc)[:160]}")


def finish(result: ExportResult, manifest: dict, report_path: Path | None, log=print) -> None:
    """Print the table, save verify.json and verification.md, append the table to the run's report.md."""
    publish(result, record_verification(result, result.export_dir, log=log), report_path, log=log)


def record_verification(result: ExportResult, folder: Path, log=print) -> str:
    """Print the table and the verdict; save verify.json and verification.md in `folder` (the export
    folder, or the one being built that replaces it). Returns the table (markdown)."""
    table = checks_mod.render_table(result.checks)
    verdict = ("all checks passed" if result.verified
               else "SOME CHECKS FAILED: do not ship this export before reading the table")
    log("\n" + checks_mod.render_text(result.checks) + f"\n\nExport verification: {verdict} ({result.seconds:.0f} s).")
    for note in result.caveats:
        log(f"Caveat (not covered by these checks): {note}")
    write_json(folder / "verify.json", {
        "verified": result.verified, "seconds": round(result.seconds, 1),
        "checks": [c.to_dict() for c in result.checks], "caveats": result.caveats,
    })
    # The same table next to the files it describes (the web UI's Export tab shows it).
    write_text(folder / "verification.md", "\n".join(export_section(result, table)))
    return table


def publish(result: ExportResult, table: str, report_path: Path | None, log=print) -> None:
    """The table in the run's report.md (a warning where it cannot be written), and where the files are."""
    if report_path is not None and report_path.parent.is_dir():
        try:
            append_report(report_path, result, table)
        except OSError as exc:  # a read-only run beside an export written elsewhere (--out): the export stands
            log(f"warning: {report_path}: could not be updated with the verification table "
                f"({exc.strerror or exc}); the export itself is complete")
    for label, key in (("merged model", "merged"), ("Modelfile", "modelfile")):
        if key in result.files:
            log(f"  {label}: {result.export_dir / result.files[key]}")
    for quant, filename in (result.files.get("gguf") or {}).items():
        log(f"  GGUF {quant}: {result.export_dir / filename}")


def drop_report_section(report_path: Path) -> None:
    """Remove the export section from the run's report.md (nothing to do where there is none, or where
    the report cannot be written: publish() warns about that)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = report_path.read_text(encoding="utf-8")
        if REPORT_MARKER in text:
            write_text(report_path, text.split(REPORT_MARKER)[0].rstrip("\n") + "\n")


def append_report(report_path: Path, result: ExportResult, table: str) -> None:
    """Add (or replace) the export section at the end of the run's report.md."""
    text = report_path.read_text(encoding="utf-8") if report_path.is_file() else ""
    text = text.split(REPORT_MARKER)[0].rstrip("\n")
    section = [REPORT_MARKER, ""] + export_section(result, table)
    with atomic_file(report_path) as handle:
        handle.write((text + "\n\n" if text else "") + "\n".join(section))


def export_section(result: ExportResult, table: str) -> list[str]:
    """Markdown lines: the export's verdict, its verification table and the ollama command."""
    section = [f"## Export: {result.name}", "",
               f"{'Verified again' if result.reverified else 'Exported to'} `{result.export_dir}` in {result.seconds:.0f} s; "
               f"{'all checks passed' if result.verified else 'some checks FAILED'}.", "", table, ""]
    section += [f"Caveat (not covered by these checks): {note}" for note in result.caveats]
    section += [""] if result.caveats else []
    if result.ollama_command:
        section += ["```", result.ollama_command, "```", ""]
    return section


def offer_ollama_create(command: str, create: bool | None, log=print) -> None:
    log(f"\nTo use it in Ollama:\n  {command}")
    if shutil.which("ollama") is None or create is False:
        return
    if create is None:
        if not sys.stdin.isatty():
            return
        answer = input("Ollama is installed: run this now? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            return
    subprocess.run(shlex.split(command), check=False)


def verify_export(export_dir: str | Path, log=print) -> ExportResult:
    """`ducktune verify`: re-run the checks on an existing export folder, holding the writer lock of
    the run it belongs to (refused in one line while an export or a training writes there)."""
    export_dir = Path(export_dir)
    with quiet_progress_bars(), WriterLock("verify") as lock:
        run_folder = _run_of_export(export_dir)
        if run_folder is not None:
            lock.acquire(run_folder)
        return _verify_export(export_dir, log)


def _run_of_export(export_dir: Path) -> Path | None:
    """The run folder an export belongs to: the one it sits in, else the one export.json names (an
    export written elsewhere with --out); None when neither is a folder."""
    if (export_dir.resolve().parent / "run.json").is_file():
        return export_dir.resolve().parent
    run = optional_json_field(export_dir / "export.json", "run")  # damaged: _verify_export says what is wrong
    return Path(run) if isinstance(run, str) and Path(run).is_dir() else None


def _verify_export(export_dir: Path, log) -> ExportResult:
    import torch
    from transformers import AutoModelForCausalLM

    from ducktune.data.template import prompting_chat_format
    from ducktune.models.loading import load_tokenizer, register_multimodal_lms

    register_multimodal_lms()

    manifest_path = export_dir / "export.json"
    if not manifest_path.is_file():
        if (export_dir / "export" / "export.json").is_file():  # the run folder given, not its export
            raise UserError(f"{export_dir}: a run folder, not an export; verify its export with "
                            f"`ducktune verify {export_dir / 'export'}`")
        raise UserError(f"{export_dir}: not a ducktune export (no export.json); create one with `ducktune export RUN_DIR`")
    manifest = read_json_file(manifest_path)
    started = time.perf_counter()
    manifest = manifest if isinstance(manifest, dict) else {}
    files = manifest.get("files")
    for key, ok in (("files.merged", isinstance(files, dict) and isinstance(files.get("merged"), str)),
                    ("files.modelfile", isinstance(files, dict) and isinstance(files.get("modelfile", ""), str)),
                    ("name", "name" in manifest), ("probe_prompts", "probe_prompts" in manifest)):
        if not ok:  # an edited or foreign export.json: one line, not a KeyError
            raise UserError(f"{manifest_path}: {key}: missing or malformed; export again with `ducktune export`")
    merged_dir = export_dir / files["merged"]
    modelfile = files.get("modelfile")
    if modelfile:
        _refuse_unparsable_modelfile(export_dir / modelfile)
    if not (merged_dir / "config.json").is_file():
        raise UserError(f"{merged_dir}: the merged model is missing; export again with `ducktune export`")
    tokenizer = load_tokenizer(merged_dir)
    chat_format = prompting_chat_format(tokenizer, merged_dir, manifest.get("system_prompt"))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32, use_safetensors=True)
    except (OSError, ValueError) as exc:  # weights missing or damaged
        raise UserError(f"{merged_dir}: the merged model cannot be loaded ({str(exc).splitlines()[0][:160]}); "
                        "export again with `ducktune export`") from None
    model.eval()
    tools = manifest.get("probe_tools")
    if tools is not None and not (isinstance(tools, list) and len(tools) == len(manifest["probe_prompts"])):
        raise UserError(f"{manifest_path}: probe_tools: not one entry per probe prompt; export again with "
                        "`ducktune export`")
    reference = checks_mod.Reference(model, tokenizer, chat_format, manifest["probe_prompts"],
                                     manifest.get("max_new_tokens", VERIFY_MAX_NEW_TOKENS), tools)
    caveats = manifest.get("caveats")
    result = ExportResult(export_dir, manifest["name"], files=manifest["files"],
                          ollama_command=manifest.get("ollama_command"),
                          caveats=[str(c) for c in caveats] if isinstance(caveats, list) else [], reverified=True)
    recorded = checks_mod.Check(**manifest["merge_check"]) if manifest.get("merge_check") else None
    if recorded is not None:
        recorded.detail += " (recorded at export)"
    result.checks = ([recorded] if recorded else []) + run_checks(export_dir, manifest, reference, log=log)
    result.seconds = time.perf_counter() - started
    run_report = _report_of_exported_run(export_dir, manifest)
    finish(result, manifest, run_report if run_report and run_report.parent.is_dir() else None, log=log)
    return result


def _report_of_exported_run(export_dir: Path, manifest: dict) -> Path | None:
    """The report.md that verify appends to: that of the run folder the export sits in (a copied or
    moved run keeps its own report; export.json's recorded path would be the original's), else that
    of the run recorded at export time (an export written elsewhere with --out)."""
    holder = Path(export_dir).resolve().parent
    if (holder / "run.json").is_file():
        return holder / "report.md"
    return Path(manifest["run"]) / "report.md" if isinstance(manifest.get("run"), str) else None


def _refuse_unparsable_modelfile(path: Path) -> None:
    """A Modelfile Ollama's parser would reject is bad input (exit 2), found before any model loads."""
    from ducktune.export.modelfile import ModelfileError, parse_modelfile

    try:
        parse_modelfile(path.read_text(encoding="utf-8")).parameters()
    except FileNotFoundError:
        raise UserError(f"{path}: missing; export again with `ducktune export`") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except (OSError, ModelfileError) as exc:
        raise UserError(f"{path}: {exc}") from None
