"""ChatEngine's interface over a GGUF run by llama.cpp (llama-cpp-python, the `verify` extra).

`ducktune serve EXPORT_DIR`, `ducktune serve --gguf FILE` and `ducktune chat` use it when
llama-cpp-python is installed: on a CPU llama.cpp generates several times faster than
transformers. The prompt is still the run's own: the conversation is rendered by the
run's chat template and tokenized by the HF tokenizer saved in the export (`merged/`),
and those token ids are handed to llama.cpp as they are (the export's verification proves
llama.cpp tokenizes the same text identically; llama.cpp's own template engine is not
used). Generation stops at the same stop tokens and stop strings and produces the same
`Generation` results as ChatEngine.

One llama.cpp context per model answers one request at a time (the server's worker queues
the rest); its prompt cache makes a follow-up turn of the same conversation cheap.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from pathlib import Path
from typing import Callable, Iterator

from ducktune.chat.engine import AnswerText, Generation
from ducktune.data.template import ChatFormat, prompting_chat_format
from ducktune.errors import UserError

MAX_CONTEXT = 4096  # like the Modelfile's num_ctx: the KV cache is allocated up front
MISSING = "llama-cpp-python is not installed: run `make verify-extra` (or pip install 'ducktune[verify]')"


def require_llama_cpp() -> None:
    from ducktune.export.quantize import llama_cpp_available

    if not llama_cpp_available():
        raise UserError(MISSING)


def export_gguf(export_dir: Path, quant: str | None = None) -> Path:
    """The export's GGUF: `quant` if given, else the one its Modelfile runs (what Ollama would serve),
    else the first listed."""
    manifest = read_manifest(export_dir)
    files = (manifest.get("files") or {}).get("gguf") or {}
    if not files:
        raise UserError(f"{export_dir / 'export.json'}: files.gguf: this export has no GGUF; "
                        "export again with `ducktune export RUN --to gguf`")
    if quant is not None:
        if quant not in files:
            raise UserError(f"{export_dir}: no {quant} GGUF in this export (it has {', '.join(files)})")
        return export_dir / files[quant]
    modelfile = export_dir / "Modelfile"
    if modelfile.is_file():
        for line in modelfile.read_text(encoding="utf-8").splitlines():
            if line.startswith("FROM ") and (export_dir / line[5:].strip()).is_file():
                return export_dir / line[5:].strip()
    return export_dir / next(iter(files.values()))


def export_ggufs(export_dir: Path) -> dict[str, Path]:
    """The export's GGUF files by quant, as its manifest lists them ({} when it lists none)."""
    files = (read_manifest(export_dir).get("files") or {}).get("gguf") or {}
    return {quant: export_dir / name for quant, name in files.items()} if isinstance(files, dict) else {}


def read_manifest(export_dir: Path) -> dict:
    path = export_dir / "export.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    return manifest if isinstance(manifest, dict) else {}


def export_model_id(export_dir: Path) -> str:
    """The id an export folder is served as: the export's name (`ollama run` knows the model by it),
    else the folder's name."""
    name = read_manifest(export_dir).get("name")
    return name if isinstance(name, str) and name.strip() else Path(export_dir).resolve().name


class LlamaCppEngine:
    has_adapter = False
    batches = False  # one sequence per llama.cpp context: the worker queues requests one by one

    def __init__(self, llm, tokenizer, chat_format: ChatFormat, name: str, max_context: int,
                 gguf: Path | None = None, quant: str | None = None):
        self.llm = llm
        self.tokenizer = tokenizer
        self.chat_format = chat_format
        self.name = name
        self.max_context = max_context
        self.gguf = gguf  # the file answering, and its quant in the export: shown at startup (quants answer differently)
        self.quant = quant
        self.lock = threading.Lock()

    @classmethod
    def from_gguf(cls, gguf: str | Path, name: str | None = None, n_threads: int | None = None,
                  max_context: int = MAX_CONTEXT) -> "LlamaCppEngine":
        """A GGUF file; in an export folder (export.json beside it) with the export's tokenizer and
        system prompt, else with the tokenizer and chat template the GGUF carries."""
        require_llama_cpp()
        gguf = Path(gguf).expanduser()
        if not gguf.is_file():
            raise UserError(f"{gguf}: not found")
        export_dir = gguf.parent
        in_export = (export_dir / "export.json").is_file()
        # Checked before anything reads it: the tokenizer loader, gguf's reader and llama.cpp each fail on a
        # damaged file with their own traceback (magic bytes, struct.error, "cannot reshape array").
        redo = (f"`ducktune verify {export_dir}` checks the export; export again to rewrite it" if in_export
                else "export or download it again")
        header = checked_gguf_header(gguf, redo)
        if in_export:
            from ducktune.models.loading import load_tokenizer

            manifest = read_manifest(export_dir)
            merged = export_dir / (manifest.get("files") or {}).get("merged", "merged")
            tokenizer = load_tokenizer(merged)
            chat_format = prompting_chat_format(tokenizer, merged, manifest.get("system_prompt"))
            default_name = gguf.stem  # one file of the folder (duckling-q4_k_m): the quant stays in its name
            quant = next((q for q, f in export_ggufs(export_dir).items() if f.name == gguf.name), None)
        else:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            except Exception as exc:  # a sound file whose tokenizer transformers' GGUF reader does not know
                raise UserError(f"{gguf}: transformers cannot read the tokenizer in this GGUF "
                                f"({type(exc).__name__}: {one_line(exc)})") from None
            chat_format = ChatFormat(tokenizer)  # a bare GGUF: its template's stops and EOS
            default_name, quant = gguf.stem, None
        llm = open_llama(gguf, max_context, n_threads, context_length(header))
        n_ctx = llm.n_ctx()
        return cls(llm, tokenizer, chat_format, name or default_name, n_ctx, gguf=gguf, quant=quant)

    @classmethod
    def from_export(cls, export_dir: str | Path, quant: str | None = None, name: str | None = None,
                    n_threads: int | None = None) -> "LlamaCppEngine":
        export_dir = Path(export_dir).expanduser()
        require_llama_cpp()
        return cls.from_gguf(export_gguf(export_dir, quant), name=name or export_model_id(export_dir),
                             n_threads=n_threads)

    # ------------------------------------------------------------------ generation

    @contextlib.contextmanager
    def adapter_disabled(self, disabled: bool = True):
        yield  # a GGUF is merged weights: there is no adapter to switch off

    def _tokens(self, prompt: list[int], temperature: float, top_p: float, seed: int | None) -> Iterator[int]:
        if temperature and temperature > 0:
            # llama.cpp's seed is 32-bit, and 0xFFFFFFFF means "random": seeds map below it.
            self.llm.set_seed(seed % (2 ** 32 - 1) if seed is not None else random.randrange(2 ** 31))
            if seed is not None:
                # A prompt found in llama.cpp's cache gets only its last token evaluated again, and the logits
                # of that one-token pass differ in the last bits from a whole-prompt pass: a seeded answer
                # would depend on the request before it. The whole prompt is evaluated for a seeded request.
                self.llm.reset()
            sampling = dict(temp=temperature, top_p=top_p if top_p else 1.0, top_k=0)
        else:
            sampling = dict(temp=0.0, top_p=1.0, top_k=0)
        # min_p/typical/penalties neutral: the same distribution as transformers' sampling.
        return self.llm.generate(prompt, min_p=0.0, typical_p=1.0, repeat_penalty=1.0, reset=True, **sampling)

    def _pieces(self, messages: list[dict], max_new_tokens: int, temperature: float, top_p: float,
                seed: int | None, stop: list[str] | None, cancel: threading.Event | None,
                results: list[Generation], tools: list[dict] | None = None, on_reasoning=None,
                answer_start: str = "") -> Iterator[str]:
        """Text pieces as they are generated; the Generation is appended to `results` at the end."""
        prompt = self.chat_format.prompt_ids(messages, tools, answer_start)
        # The server checks the context before queueing; a direct caller gets what still fits.
        max_new_tokens = max(1, min(max_new_tokens, self.max_context - len(prompt)))
        answer = AnswerText.for_format(self.tokenizer, self.chat_format, max_new_tokens, stop, tools)
        with self.lock:
            tokens = self._tokens(prompt, temperature, top_p, seed)
            try:
                for token in tokens:
                    piece = answer.add(int(token))
                    if answer.reasoning_piece and on_reasoning is not None:
                        on_reasoning(answer.reasoning_piece)
                    if piece:
                        yield piece
                    if answer.done or (cancel is not None and cancel.is_set()):
                        break
            finally:
                tokens.close()
        results.append(answer.generation(len(prompt)))

    def generate(self, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, stop: list[str] | None = None,
                 cancel: threading.Event | None = None, tools: list[dict] | None = None,
                 answer_start: str = "") -> Generation:
        results: list[Generation] = []
        for _ in self._pieces(messages, max_new_tokens, temperature, top_p, seed, stop, cancel, results, tools,
                              answer_start=answer_start):
            pass
        return results[0]

    def generate_batch(self, conversations: list[list[dict]], max_new_tokens: int = 256,
                       batch_size: int = 16, tools: list | None = None) -> list[Generation]:
        """Greedy answers, one after the other (llama.cpp runs one sequence per context here)."""
        tools = tools or [None] * len(conversations)
        return [self.generate(c, max_new_tokens=max_new_tokens, tools=t) for c, t in zip(conversations, tools)]

    def stream(self, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
               seed: int | None = None, stop: list[str] | None = None, cancel: threading.Event | None = None,
               on_finish: Callable[[Generation], None] | None = None,
               tools: list[dict] | None = None,
               on_reasoning: Callable[[str], None] | None = None) -> Iterator[str]:
        """Text pieces as they are generated (on the caller's thread); `on_finish` gets the Generation,
        `on_reasoning` the reasoning's text as it comes. Closing the iterator stops generation."""
        results: list[Generation] = []
        yield from self._pieces(messages, max_new_tokens, temperature, top_p, seed, stop, cancel, results, tools,
                                on_reasoning)
        if on_finish is not None and results:
            on_finish(results[0])

    def close(self) -> None:
        if hasattr(self.llm, "close"):
            self.llm.close()


def open_llama(gguf: Path, max_context: int, n_threads: int | None = None, trained_context: int | None = None):
    """A llama.cpp context of the GGUF's trained length (at most `max_context`) for generation."""
    from ducktune.export.verify import _open_llama

    n_ctx = min(max_context, trained_context or max_context)
    try:
        return _open_llama(gguf, n_ctx, logits_all=False, n_threads=n_threads)
    except ValueError as exc:  # llama-cpp-python's "Failed to load model from file" (e.g. an unknown architecture)
        raise UserError(f"{gguf}: llama.cpp cannot load this GGUF ({one_line(exc)})") from None


def checked_gguf_header(gguf: Path, redo: str):
    """The GGUF's header (export.gguf_file.read_gguf_header: magic, metadata, every tensor inside the
    file); a file that is not one, or is cut short, is a one-line UserError ending with `redo`."""
    from ducktune.export.gguf_file import read_gguf_header

    with open(gguf, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise UserError(f"{gguf}: not a GGUF file (it does not start with the GGUF magic bytes)")
    try:
        return read_gguf_header(gguf)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        reason = str(exc).removeprefix(f"{gguf}: ")
        raise UserError(f"{gguf}: damaged or truncated GGUF: {one_line(reason)}; {redo}") from None


def gguf_context_length(gguf: Path) -> int | None:
    """The `{arch}.context_length` the GGUF file was trained for (None when absent)."""
    from ducktune.export.gguf_file import read_gguf_header

    return context_length(read_gguf_header(gguf))


def context_length(header) -> int | None:
    """The `{arch}.context_length` the GGUF was trained for (None when absent)."""
    arch = header.metadata.get("general.architecture")
    length = header.metadata.get(f"{arch}.context_length") if isinstance(arch, str) else None
    return int(length) if isinstance(length, int) and length > 0 else None


def one_line(exc) -> str:
    return " ".join(str(exc).split())
