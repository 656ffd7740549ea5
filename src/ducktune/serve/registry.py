"""Which models a server answers for, and how each is loaded.

`ducktune serve` loads one folder up front (`StaticRegistry`): a run directory (base +
adapter, unmerged), a plain Hugging Face model folder, or an export folder. An export folder
(or `--gguf FILE`) is run by llama.cpp when llama-cpp-python is installed (serve/llamacpp.py),
else its `merged/` model by transformers. The web UI serves every finished run of its runs folder (`RunsRegistry`),
loading a run's model on first use and keeping the few most recently used.

For a LoRA run the untuned base model is the same weights with the adapter switched off,
so `NAME-base` costs no memory; it shares the tuned model's worker (one generation at a
time on those weights).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ducktune.errors import UserError
from ducktune.serve.worker import GenerationWorker

BASE_SUFFIX = "-base"
DEFAULT_CONTEXT = 2048


@dataclass
class ServedModel:
    id: str
    engine: object  # ducktune.chat.engine.ChatEngine
    worker: GenerationWorker
    base: bool  # answer with the adapter switched off
    created: int
    max_context: int

    def describe(self) -> dict:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "ducktune"}


def context_length(engine) -> int:
    """The longest sequence the model was built for (prompt + answer)."""
    if getattr(engine, "max_context", None):  # llama.cpp: the context it was opened with
        return engine.max_context
    config = getattr(engine.model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_CONTEXT


def served_models(engine, model_id: str, with_base: bool, base_engine=None, max_queue: int = 64,
                  created: int | None = None) -> list[ServedModel]:
    """The tuned model as `model_id`, and with `with_base` the untuned one as `model_id-base`."""
    created = created or int(time.time())
    worker = GenerationWorker(model_id, max_queue)
    models = [ServedModel(model_id, engine, worker, False, created, context_length(engine))]
    if with_base:
        if base_engine is not None:  # full fine-tune: the base is other weights
            base_worker = GenerationWorker(model_id + BASE_SUFFIX, max_queue)
            models.append(ServedModel(model_id + BASE_SUFFIX, base_engine, base_worker, False, created,
                                      context_length(base_engine)))
        elif getattr(engine, "has_adapter", False):
            models.append(ServedModel(model_id + BASE_SUFFIX, engine, worker, True, created, context_length(engine)))
    return models


def model_folder(path: Path) -> tuple[str, Path]:
    """('run', path) for a run directory, ('model', folder) for a HF folder or an export's merged/ folder."""
    if (path / "run.json").is_file():
        return "run", path
    if (path / "config.json").is_file():
        return "model", path
    if (path / "merged" / "config.json").is_file():
        return "model", path / "merged"
    raise UserError(f"{path}: not a run directory (run.json), a model folder (config.json) "
                    "or an export folder (merged/config.json)")


ENGINES = ("auto", "transformers", "llama.cpp")


def use_llama_cpp(path: Path, engine: str, log=print) -> bool:
    """Whether `path` (an export folder) is served by llama.cpp: `auto` picks it when the export has a
    GGUF and llama-cpp-python is installed; `llama.cpp` insists (one-line error without it)."""
    from ducktune.export.quantize import llama_cpp_available
    from ducktune.serve.llamacpp import MISSING, read_manifest

    if engine == "transformers" or not (path / "export.json").is_file():
        if engine == "llama.cpp":
            raise UserError(f"{path}: --engine llama.cpp needs an export folder (export.json) or --gguf FILE")
        return False
    has_gguf = bool((read_manifest(path).get("files") or {}).get("gguf"))
    if engine == "llama.cpp" or (has_gguf and llama_cpp_available()):
        if not llama_cpp_available():
            raise UserError(MISSING)
        return True
    if has_gguf:
        log(f"Serving {path.name}/merged with transformers: {MISSING.split(': ', 1)[1]} to run the GGUF "
            "with llama.cpp (faster on CPU)")
    return False


def load_engine(path: str | Path | None, gguf: str | Path | None = None, engine: str = "auto",
                name: str | None = None, device: str = "auto", log=print):
    """The engine `ducktune chat` and `serve` answer with for an export folder or a GGUF file,
    or None when `path` is a run directory or a model folder (the transformers paths)."""
    from ducktune.serve.llamacpp import LlamaCppEngine

    if gguf is not None:
        if path is not None:
            raise UserError(f"give a folder or --gguf FILE, not both ({path}, {gguf})")
        if engine == "transformers":
            raise UserError("--gguf runs the file with llama.cpp: drop --engine transformers")
        return LlamaCppEngine.from_gguf(gguf, name=name)
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: not found")
    if use_llama_cpp(path, engine, log=log):
        return LlamaCppEngine.from_export(path, name=name)
    return None


def load_path(path: str | Path | None, with_base: bool = False, name: str | None = None, device: str = "auto",
              max_queue: int = 64, log=print, gguf: str | Path | None = None,
              engine: str = "auto") -> list[ServedModel]:
    """Load what `ducktune serve PATH` (or `--gguf FILE`) serves."""
    from ducktune.chat.engine import ChatEngine

    if gguf is not None or engine != "transformers":
        fast = load_engine(path, gguf, engine, name=name, device=device, log=log)
        if fast is not None:
            if with_base:
                raise UserError("--base needs a run directory (a GGUF has no separate base)")
            return served_models(fast, fast.name, False, max_queue=max_queue)
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: not found")
    kind, folder = model_folder(path)
    if name is None and kind != "run" and (path / "export.json").is_file():
        from ducktune.serve.llamacpp import export_model_id

        name = export_model_id(path)
    model_id = name or path.resolve().name
    if kind == "run":
        engine = ChatEngine.from_run(path, device=device, log=log)
        base_engine = None
        if with_base and not engine.has_adapter:
            base_engine = ChatEngine.from_run(path, base_only=True, device=device, log=log)
        return served_models(engine, model_id, with_base, base_engine, max_queue)
    if with_base:
        raise UserError(f"{path}: --base needs a run directory (a merged model folder has no separate base)")
    engine = ChatEngine.from_model_dir(folder, device=device, system_prompt=export_system_prompt(Path(folder)))
    return served_models(engine, model_id, False, max_queue=max_queue)


def export_system_prompt(folder: Path) -> str | None:
    """The run's default system prompt when `folder` is an export's merged model (export.json beside it),
    so the served model answers like the trained one and like its Ollama Modelfile (SYSTEM)."""
    import json

    manifest = folder.parent / "export.json"
    if not manifest.is_file():
        return None
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("system_prompt")
    except (OSError, json.JSONDecodeError):
        return None


class StaticRegistry:
    """A fixed set of models loaded before the server starts."""

    def __init__(self, models: list[ServedModel]):
        self._models = {m.id: m for m in models}

    def list(self) -> list[dict]:
        return [m.describe() for m in self._models.values()]

    def get(self, model_id: str) -> ServedModel | None:
        return self._models.get(model_id)

    def stats(self) -> dict:
        # Keyed by worker: a LoRA run's tuned and base models share one.
        return {m.worker.name: m.worker.stats() for m in self._models.values()}


def _readable_run_json(folder: Path) -> bool:
    """Whether run.json is a JSON object: a damaged one is not offered as a model (it only fails on use)."""
    from ducktune.rundir import RunDir

    try:
        RunDir(folder).info()
    except (UserError, OSError):
        return False
    return True


class RunsRegistry:
    """Every finished run under `runs_dir`, as `RUN` (tuned) and `RUN-base`; loaded on first use."""

    def __init__(self, runs_dir: str | Path, keep_loaded: int = 2, device: str = "auto", max_queue: int = 64):
        self.runs_dir = Path(runs_dir)
        self.keep_loaded = keep_loaded
        self.device = device
        self.max_queue = max_queue
        # run name -> (run.json mtime when loaded, its served models)
        self._loaded: OrderedDict[str, tuple[float, list[ServedModel]]] = OrderedDict()
        self._lock = threading.Lock()

    def run_names(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        names = []
        for child in sorted(self.runs_dir.iterdir()):
            if child.name.startswith(".") or not (child / "run.json").is_file():
                continue
            if ((child / "adapter").is_dir() or (child / "model").is_dir()) and _readable_run_json(child):
                names.append(child.name)
        return names

    def list(self) -> list[dict]:
        rows = []
        for name in self.run_names():
            created = int((self.runs_dir / name / "run.json").stat().st_mtime)
            rows.append({"id": name, "object": "model", "created": created, "owned_by": "ducktune"})
            rows.append({"id": name + BASE_SUFFIX, "object": "model", "created": created, "owned_by": "ducktune"})
        return rows

    def _split(self, model_id: str) -> tuple[str, bool] | None:
        names = set(self.run_names())
        if model_id in names:
            return model_id, False
        if model_id.endswith(BASE_SUFFIX) and model_id[: -len(BASE_SUFFIX)] in names:
            return model_id[: -len(BASE_SUFFIX)], True
        return None

    def get(self, model_id: str) -> ServedModel | None:
        """The served model for `model_id`, loading its run if needed (slow: call off the event loop)."""
        split = self._split(model_id)
        if split is None:
            return None
        run_name, _ = split
        stamp = (self.runs_dir / run_name / "run.json").stat().st_mtime
        with self._lock:
            loaded = self._loaded.get(run_name)
            if loaded is not None and loaded[0] != stamp:  # retrained since: load the new weights
                self._drop(run_name)
                loaded = None
            if loaded is None:
                models = load_path(self.runs_dir / run_name, with_base=True, device=self.device,
                                   max_queue=self.max_queue, log=lambda *a, **k: None)
                loaded = self._loaded[run_name] = (stamp, models)
                while len(self._loaded) > self.keep_loaded:
                    self._drop(next(iter(self._loaded)))
            self._loaded.move_to_end(run_name)
        return next((m for m in loaded[1] if m.id == model_id), None)

    def _drop(self, run_name: str) -> None:
        for m in self._loaded.pop(run_name, (0, []))[1]:
            m.worker.shutdown()

    def stats(self) -> dict:
        with self._lock:
            return {m.worker.name: m.worker.stats() for _, models in self._loaded.values() for m in models}
