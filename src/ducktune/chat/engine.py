"""Generation with the run's own chat template and stop tokens.

`ducktune chat`, `compare`, the training report, `serve` and the web UI all generate
through `ChatEngine`, so every surface prompts the model exactly as it was trained and
stops at the same end-of-turn tokens.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ducktune.data.template import ChatFormat, prompting_chat_format


MIN_TEMPERATURE = 1e-4  # below it sampling is greedy: logits / t overflow to inf (then nan) in float32 near 1e-37


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"
    # The answer with its special tokens kept (the stop token and what follows a stop string left out): tool
    # calls are read from it, since templates mark them with control tokens (Mistral's [TOOL_CALLS]).
    raw_text: str = ""
    # The reasoning the model wrote before its answer (<think> ... </think>, gpt-oss's analysis message),
    # kept out of `text` (see data.template_rules.AnswerFrame); None when it wrote none.
    reasoning: str | None = None


def answer_start(tokenizer, tokens: list[int], frame, done: bool, raw: str | None = None
                 ) -> tuple[str | None, int | None, str]:
    """(the reasoning or None, the index of the token the answer's text starts at, the start of that
    token's text that still belongs to the frame) of generated `tokens` under `frame` (an AnswerFrame, or
    None: the answer is all of them). The index is None while the frame is undecided (`done`: never).
    `raw`: the tokens' text with special tokens, when the caller has it."""
    if frame is None:
        return None, 0, ""
    raw = tokenizer.decode(tokens, skip_special_tokens=False) if raw is None else raw
    reasoning, at = frame.split(raw)
    if at is None:
        if not done:
            return reasoning, None, ""
        return reasoning, (len(tokens) if reasoning is not None else 0), ""
    low, high = 0, len(tokens)  # the longest run of whole tokens whose text ends at or before `at`
    while low < high:
        mid = (low + high + 1) // 2
        if len(tokenizer.decode(tokens[:mid], skip_special_tokens=False)) <= at:
            low = mid
        else:
            high = mid - 1
    return reasoning, low, raw[len(tokenizer.decode(tokens[:low], skip_special_tokens=False)):at]


def answer_text(tokenizer, tokens: list[int], start: int, leftover: str) -> str:
    """The text of tokens[start:], special tokens left out, without the frame's `leftover`."""
    text = tokenizer.decode(tokens[start:], skip_special_tokens=True)
    return text[len(leftover):] if leftover and text.startswith(leftover) else text


def finish_generation(tokenizer, stop_token_ids: list[int], n_prompt: int, new: list[int], max_new_tokens: int,
                      stop: list[str] | None, frame=None) -> Generation:
    """The Generation of answer tokens `new`: the stop token dropped, the answer's frame (`frame`: reasoning,
    gpt-oss's channel header) kept out of its text, text cut at the first stop string. completion_tokens
    counts the tokens generated (a stop token included, none invented after a stop string)."""
    stop_ids = set(stop_token_ids)
    finish = "length"
    generated = len(new)
    if new and new[-1] in stop_ids:
        new = new[:-1]
        finish = "stop"
    raw = tokenizer.decode(new, skip_special_tokens=False)
    reasoning, start, leftover = answer_start(tokenizer, new, frame, done=True, raw=raw)
    text = answer_text(tokenizer, new, start, leftover)
    cut = first_stop(text, stop)
    if cut >= 0:
        text, finish = text[:cut], "stop"
        raw_cut = first_stop(raw, stop)
        raw = raw[:raw_cut] if raw_cut >= 0 else raw
    if finish == "length":  # cut inside a character's bytes: its undecodable first half is dropped
        text, raw = text.rstrip("\ufffd"), raw.rstrip("\ufffd")
    return Generation(text, n_prompt, min(generated, max_new_tokens), finish, raw, reasoning)


def first_stop(text: str, stop: list[str] | None) -> int:
    """Where the first stop string in `text` begins, or -1."""
    return min((text.find(s) for s in stop if s in text), default=-1) if stop else -1


def held_back(text: str, stop: list[str] | None) -> int:
    """How many characters at the end of `text` could be the start of a stop string: a stream holds them
    back until the next token shows whether the stop string completes (then they are never sent)."""
    hold = 0
    for s in stop or []:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold


def left_padded(prompts: list[list[int]], pad_id: int, device=None):
    """(input_ids, attention_mask) of token lists padded on the left to the longest, for batched generation."""
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return input_ids, attention


@dataclass
class BatchRequest:
    """One greedy request of a batch: its conversation, limits, cancel event, and where its text goes."""
    messages: list[dict]
    max_new_tokens: int
    stop: list[str] | None = None
    cancel: threading.Event | None = None
    on_piece: Callable[[str], None] | None = None
    tools: list[dict] | None = None  # the functions the model may call (OpenAI's tools list), in its prompt
    on_reasoning: Callable[[str], None] | None = None  # where the reasoning's text goes as it is generated
    answer_start: str = ""  # the answer's first text, put in the prompt (a call the request forces)


class AnswerText:
    """One answer's tokens as they arrive: the new text of each (held back while a character is
    incomplete), and `done` at a stop token, a stop string or the length limit."""

    def __init__(self, tokenizer, stop_token_ids: list[int], max_new_tokens: int, stop: list[str] | None = None,
                 frame=None, reasoning_stop_ids: list[int] | tuple = (), shown_tokens: dict[int, str] | None = None):
        self.tokenizer = tokenizer
        self.stop_token_ids = list(stop_token_ids)
        # Stop tokens that end the answer only after its reasoning (ChatFormat.reasoning_stop_token_ids).
        self.reasoning_stop_ids = set(reasoning_stop_ids)
        self.max_new_tokens = max_new_tokens
        self.stop = stop
        self.frame = frame  # the template's AnswerFrame: reasoning and channel headers are not the answer's text
        self.tokens: list[int] = []
        self.emitted = ""
        self.done = False
        self.stopped_by_string = False
        self.start: tuple[int, str] | None = None  # (token index, leftover) once the answer's text has begun
        self.reasoning: str | None = None
        self.reasoning_piece = ""  # the reasoning text the last token added (shown apart by `ducktune chat`)
        # Special tokens whose text the pieces show where they come (the text itself leaves them out): the
        # one a tool call opens with (Mistral's [TOOL_CALLS]), so a stream's CallGate sees where calls begin.
        self.shown_tokens = shown_tokens or {}

    @classmethod
    def for_format(cls, tokenizer, chat_format, max_new_tokens: int, stop: list[str] | None = None,
                   tools: list[dict] | None = None) -> "AnswerText":
        """An answer generated in `chat_format`: its stop tokens, its frame, its stops that wait for the reasoning;
        with `tools` offered, the special token its calls open with shown in the pieces (chat/call_gate.py)."""
        shown = None
        if tools:
            from ducktune.chat.call_gate import hidden_opening

            hidden = hidden_opening(chat_format)
            shown = dict([hidden]) if hidden else None
        return cls(tokenizer, chat_format.stop_token_ids, max_new_tokens, stop, chat_format.answer_frame,
                   chat_format.reasoning_stop_token_ids, shown)

    def _answer_tokens(self, body: list[int]) -> tuple[int, str] | None:
        """Where the answer's text starts in `body`, once the frame decides it (fixed from then on)."""
        if self.start is None:
            reasoning, index, leftover = answer_start(self.tokenizer, body, self.frame, self.done)
            shown = self.reasoning or ""
            self.reasoning_piece = reasoning[len(shown):] if reasoning and reasoning.startswith(shown) else ""
            self.reasoning = reasoning
            if index is not None:
                self.start = (index, leftover)
        else:
            self.reasoning_piece = ""
        return self.start

    def add(self, token: int) -> str:
        """The text this token makes safe to show: nothing of a stop string, nor of what may begin one
        (held back until it cannot), nor half a character, nor the answer's frame; the rest once the answer
        is done."""
        self.tokens.append(token)
        reasoning = self.start is None and self.reasoning is not None  # before this token
        at_stop_token = token in self.stop_token_ids and not (reasoning and token in self.reasoning_stop_ids)
        body = self.tokens[:-1] if at_stop_token else self.tokens
        self.done = at_stop_token or len(self.tokens) >= self.max_new_tokens
        start = self._answer_tokens(body)
        if start is None:
            return ""
        text = answer_text(self.tokenizer, body, *start)
        marker = self.shown_tokens.get(token, "")
        cut = first_stop(text, self.stop)
        if cut >= 0:
            self.done = self.stopped_by_string = True
            text, marker = text[:cut], ""
        elif marker:  # the text before it is whole: no stop string or character continues across it
            text = text.rstrip("\ufffd")
        elif not self.done:
            if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
                return ""
            text = text[:len(text) - held_back(text, self.stop)]
        elif not at_stop_token:  # the length limit cut inside a character: not sent, as in the Generation
            text = text.rstrip("\ufffd")
        piece = text[len(self.emitted):] if len(text) > len(self.emitted) else ""
        self.emitted += piece  # the marker is no part of the answer's text
        return piece + marker

    def generation(self, n_prompt: int) -> Generation:
        result = finish_generation(self.tokenizer, self.stop_token_ids, n_prompt, self.tokens,
                                   self.max_new_tokens, self.stop, self.frame)
        if self.stopped_by_string:
            result.finish_reason = "stop"
        return result


def _advance(row: "AnswerText", request: "BatchRequest", token: int) -> bool:
    """Give a row its next token (streaming its piece); True once the row is done."""
    piece = row.add(token)
    if row.reasoning_piece and request.on_reasoning is not None:
        request.on_reasoning(row.reasoning_piece)
    if piece and request.on_piece is not None:
        request.on_piece(piece)
    if request.cancel is not None and request.cancel.is_set():
        row.done = True
    return row.done


class _RowsCriterion:
    """generate's per-row stopping criterion for a batch: feeds each row's new token to its
    AnswerText (streaming its piece) and ends rows that are done or cancelled."""

    def __init__(self, rows: list[AnswerText], requests: list[BatchRequest]):
        self.rows = rows
        self.requests = requests

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        last = input_ids[:, -1].tolist()
        for row, request, token in zip(self.rows, self.requests, last):
            if not row.done:
                _advance(row, request, token)
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


class ChatEngine:
    def __init__(self, model, tokenizer, chat_format: ChatFormat, name: str = "model", has_adapter: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.chat_format = chat_format
        self.name = name
        self.has_adapter = has_adapter
        self.batches = True  # the server may answer concurrent greedy requests in one generate_rows call
        # One generation at a time per model: HF models are not safe to share across threads.
        self.lock = threading.Lock()
        model.eval()

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_run(cls, run_dir: str | Path, base_only: bool = False, device: str = "auto", log=print) -> "ChatEngine":
        """Base model + the run's adapter (not merged), or the base alone with `base_only`."""
        from ducktune.models.adapter_check import check_adapter
        from ducktune.models.device import choose_placement
        from ducktune.models.loading import estimate_params, load_model, load_tokenizer, model_config
        from ducktune.models.sources import resolve_model
        from ducktune.rundir import RunDir

        run = RunDir(run_dir)
        info = run.info()
        config = run.config()
        weights = run.weights_dir()
        base_folder = resolve_model(config.model.name_or_path, config.model.revision, log=log)
        if info.get("method") != "full" and not base_only:
            check_adapter(weights, base_folder)  # a damaged adapter: one line, before any loading
        placement = choose_placement(device if device != "auto" else config.model.device,
                                     config.model.dtype, estimate_params(model_config(base_folder)))
        # The tokenizer saved with the run carries the chat template it was trained with.
        tokenizer = load_tokenizer(weights, trust_remote_code=config.model.trust_remote_code)
        chat_format = prompting_chat_format(tokenizer, base_folder, config.model.system_prompt)
        name = Path(run_dir).resolve().name
        if info.get("method") == "full":
            source = base_folder if base_only else weights
            model = load_model(source, placement, trust_remote_code=config.model.trust_remote_code)
            return cls(model, tokenizer, chat_format, name=name + ("-base" if base_only else ""))
        model = load_model(base_folder, placement, trust_remote_code=config.model.trust_remote_code)
        if base_only:
            return cls(model, tokenizer, chat_format, name=name + "-base")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(weights))
        return cls(model, tokenizer, chat_format, name=name, has_adapter=True)

    @classmethod
    def from_model_dir(cls, folder: str | Path, device: str = "auto", system_prompt: str | None = None) -> "ChatEngine":
        """A plain (e.g. merged) Hugging Face model folder."""
        from ducktune.models.device import choose_placement
        from ducktune.models.loading import estimate_params, load_model, load_tokenizer, model_config

        placement = choose_placement(device, "auto", estimate_params(model_config(folder)))
        tokenizer = load_tokenizer(folder)
        model = load_model(folder, placement)
        chat_format = prompting_chat_format(tokenizer, folder, system_prompt)
        return cls(model, tokenizer, chat_format, name=Path(folder).name)

    # ------------------------------------------------------------------ generation

    @contextlib.contextmanager
    def adapter_disabled(self, disabled: bool = True):
        """Answer as the base model (PEFT's disable_adapter), without loading it twice."""
        if disabled and self.has_adapter:
            with self.model.disable_adapter():
                yield
        else:
            yield

    def _sampling_kwargs(self, max_new_tokens: int, temperature: float, top_p: float, seed: int | None) -> dict:
        import torch

        kwargs = dict(
            max_new_tokens=max_new_tokens,
            # generate stops a row at these itself; the others end it through AnswerText (_RowsCriterion)
            eos_token_id=[i for i in self.chat_format.stop_token_ids
                          if i not in self.chat_format.reasoning_stop_token_ids],
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if temperature and temperature >= MIN_TEMPERATURE:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p if top_p else 1.0, top_k=0)
            if seed is not None:
                torch.manual_seed(seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _answer(self, messages: list[dict], max_new_tokens: int, temperature: float, top_p: float, seed: int | None,
                stop: list[str] | None, cancel: threading.Event | None, on_piece=None,
                tools: list[dict] | None = None, on_reasoning=None, answer_start: str = "") -> Generation:
        """One answer through `generate`, stop strings and cancelling checked by ducktune's own per-token
        criterion (AnswerText), sampled or greedy. (transformers' stop_strings precomputes a table that
        grows with the stop string's length, and matches stops that begin in the prompt.)"""
        prompt = self.chat_format.prompt_ids(messages, tools, answer_start)
        row = AnswerText.for_format(self.tokenizer, self.chat_format, max_new_tokens, stop, tools)
        request = BatchRequest(messages, max_new_tokens, stop, cancel, on_piece, tools, on_reasoning, answer_start)
        self._generate_rows([prompt], [row], [request], (temperature, top_p, seed))
        return row.generation(len(prompt))

    def generate(self, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, stop: list[str] | None = None, cancel: threading.Event | None = None,
                 tools: list[dict] | None = None, answer_start: str = "") -> Generation:
        """One answer; `answer_start`: text the answer begins with, in the prompt (the Generation holds what
        the model added to it)."""
        with self.lock:
            return self._answer(messages, max_new_tokens, temperature, top_p, seed, stop, cancel, tools=tools,
                                answer_start=answer_start)

    def generate_batch(self, conversations: list[list[dict]], max_new_tokens: int = 256,
                       batch_size: int = 16, tools: list | None = None) -> list[Generation]:
        """Greedy answers to many conversations at once, `batch_size` per left-padded batch.

        CPU generation of small models is bound by reading the weights once per step, so a
        batch of 16 costs little more than one answer. Each batch is decoded with a KV cache and
        a row leaves it at its stop token (generate_rows): the batch's cost follows its answers'
        lengths, not the longest one's. Used by reports, `compare` and the quickstart.
        """
        results: list[Generation] = []
        tools = tools or [None] * len(conversations)  # `tools`: each conversation's tools list (or None)
        for start in range(0, len(conversations), batch_size):
            chunk = zip(conversations[start:start + batch_size], tools[start:start + batch_size])
            results += self.generate_rows([BatchRequest(c, max_new_tokens, tools=t) for c, t in chunk])
        return results

    def greedy_ids(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy answer token ids to prompts given as token ids, each through its stop token when it
        produced one (decoded together as generate_rows does)."""
        requests = [BatchRequest([], max_new_tokens) for _ in prompts]
        rows = [AnswerText(self.tokenizer, self.chat_format.stop_token_ids, max_new_tokens) for _ in prompts]
        with self.lock:
            if len(prompts) == 1 or not self._decode_rows(prompts, rows, requests):
                self._generate_rows(prompts, rows, requests)
        return [row.tokens for row in rows]

    def _finish(self, n_prompt: int, new: list[int], max_new_tokens: int, stop: list[str] | None) -> Generation:
        return finish_generation(self.tokenizer, self.chat_format.stop_token_ids, n_prompt, new, max_new_tokens, stop,
                                 self.chat_format.answer_frame)

    def generate_rows(self, requests: list["BatchRequest"]) -> list[Generation]:
        """Greedy answers to concurrent requests at once (the server's batching).

        Each row keeps its own limits: its max_new_tokens, stop strings and cancel event end that
        row alone, and its text pieces go to its own `on_piece` as they are generated. Several rows
        are decoded in one left-padded batch from which finished rows are dropped (a short answer
        stops costing compute); a single row goes through `generate`, like an unbatched request.
        """
        prompts = [self.chat_format.prompt_ids(r.messages, r.tools, r.answer_start) for r in requests]
        rows = [AnswerText.for_format(self.tokenizer, self.chat_format, r.max_new_tokens, r.stop, r.tools)
                for r in requests]
        with self.lock:
            if len(requests) == 1 or not self._decode_rows(prompts, rows, requests):
                self._generate_rows(prompts, rows, requests)
        return [row.generation(len(p)) for row, p in zip(rows, prompts)]

    def _padded(self, prompts: list[list[int]]):
        pad_id = self.tokenizer.pad_token_id
        pad_id = pad_id if pad_id is not None else self.chat_format.stop_token_ids[0]
        input_ids, attention = left_padded(prompts, pad_id, next(self.model.parameters()).device)
        return input_ids, attention, pad_id

    def _generate_rows(self, prompts, rows: list["AnswerText"], requests: list["BatchRequest"],
                       sampling: tuple = (0.0, 1.0, None)) -> None:
        """The rows through transformers' `generate`, a per-row stopping criterion ending each;
        `sampling` is (temperature, top_p, seed), greedy by default."""
        import torch
        from transformers import StoppingCriteriaList

        input_ids, attention, pad_id = self._padded(prompts)
        kwargs = self._sampling_kwargs(max(r.max_new_tokens for r in requests), *sampling)
        kwargs.update(pad_token_id=pad_id, stopping_criteria=StoppingCriteriaList([_RowsCriterion(rows, requests)]))
        with torch.inference_mode():
            self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)

    def _cache_argument(self) -> str:
        """The forward's name for the KV cache: `cache` in newer transformers 5 releases, else `past_key_values`."""
        import inspect

        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"

    def _decode_rows(self, prompts, rows: list["AnswerText"], requests: list["BatchRequest"]) -> bool:
        """Greedy decoding of a left-padded batch with a KV cache, dropping rows once they are done.
        False (nothing generated) when the model does not take this plain forward, so `generate` answers."""
        import torch
        from transformers import DynamicCache

        input_ids, attention, _ = self._padded(prompts)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        kv_cache = DynamicCache(config=self.model.config)
        cache = {self._cache_argument(): kv_cache}
        if not all(hasattr(layer, "batch_select_indices") for layer in getattr(kv_cache, "layers", ())):
            return False  # recurrent layers whose cache cannot drop finished rows (Nemotron-H's Mamba-2 states)
        live = list(range(len(rows)))
        with torch.inference_mode():
            try:
                logits = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                                    use_cache=True, logits_to_keep=1, **cache).logits[:, -1]
            except (TypeError, ValueError, NotImplementedError):  # a family whose forward needs generate's preparation
                return False
            positions = positions[:, -1:]
            while True:
                tokens = logits.argmax(-1).tolist()
                keep = [j for j, (i, token) in enumerate(zip(live, tokens)) if not _advance(rows[i], requests[i], token)]
                if not keep:
                    return True
                if len(keep) < len(live):
                    index = torch.tensor(keep, device=attention.device)
                    kv_cache.batch_select_indices(index)
                    attention, positions = attention[index], positions[index]
                    live = [live[j] for j in keep]
                attention = torch.cat([attention, attention.new_ones((len(live), 1))], dim=1)
                positions = positions + 1
                step = torch.tensor([[tokens[j]] for j in keep], device=attention.device)
                logits = self.model(input_ids=step, attention_mask=attention, position_ids=positions,
                                    use_cache=True, logits_to_keep=1, **cache).logits[:, -1]

    def stream(self, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
               seed: int | None = None, stop: list[str] | None = None,
               cancel: threading.Event | None = None,
               on_finish: Callable[[Generation], None] | None = None,
               tools: list[dict] | None = None,
               on_reasoning: Callable[[str], None] | None = None) -> Iterator[str]:
        """Yield text pieces as they are generated. Setting `cancel` (or closing the iterator) stops generation.

        `on_finish` receives the whole Generation (token counts, finish reason) once the model
        has stopped: servers report usage and finish_reason for streamed answers too. `on_reasoning`
        receives the reasoning's text as it is generated (called on the generating thread).
        """
        import queue

        cancel = cancel or threading.Event()
        pieces: queue.Queue = queue.Queue()
        done = object()
        outcome: list = []

        def work():
            try:
                outcome.append(self._answer(messages, max_new_tokens, temperature, top_p, seed, stop, cancel,
                                            on_piece=pieces.put, tools=tools, on_reasoning=on_reasoning))
            except BaseException as exc:  # surfaced in the consumer thread
                outcome.append(exc)
            finally:
                pieces.put(done)

        with self.lock:
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            try:
                while (piece := pieces.get()) is not done:
                    yield piece
            finally:
                cancel.set()  # the consumer closed the iterator early: stop generating
                thread.join()
        if outcome and isinstance(outcome[0], BaseException):
            raise outcome[0]
        if on_finish is not None and outcome:
            on_finish(outcome[0])
