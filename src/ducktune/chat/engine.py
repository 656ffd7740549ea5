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

from ducktune.data.template import ChatFormat


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


class _EventStop:
    """Stops generation when a threading.Event is set (client gone, user pressed stop)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class ChatEngine:
    def __init__(self, model, tokenizer, chat_format: ChatFormat, name: str = "model", has_adapter: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.chat_format = chat_format
        self.name = name
        self.has_adapter = has_adapter
        # One generation at a time per model: HF models are not safe to share across threads.
        self.lock = threading.Lock()
        model.eval()

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_run(cls, run_dir: str | Path, base_only: bool = False, device: str = "auto", log=print) -> "ChatEngine":
        """Base model + the run's adapter (not merged), or the base alone with `base_only`."""
        from ducktune.models.device import choose_placement
        from ducktune.models.loading import estimate_params, load_model, load_tokenizer, model_config
        from ducktune.models.sources import resolve_model
        from ducktune.rundir import RunDir

        run = RunDir(run_dir)
        info = run.info()
        config = run.config()
        weights = run.weights_dir()
        base_folder = resolve_model(config.model.name_or_path, config.model.revision, log=log)
        placement = choose_placement(device if device != "auto" else config.model.device,
                                     config.model.dtype, estimate_params(model_config(base_folder)))
        # The tokenizer saved with the run carries the chat template it was trained with.
        tokenizer = load_tokenizer(weights, trust_remote_code=config.model.trust_remote_code)
        chat_format = ChatFormat(tokenizer, system_prompt=config.model.system_prompt)
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
        return cls(model, tokenizer, ChatFormat(tokenizer, system_prompt=system_prompt), name=Path(folder).name)

    # ------------------------------------------------------------------ generation

    @contextlib.contextmanager
    def adapter_disabled(self, disabled: bool = True):
        """Answer as the base model (PEFT's disable_adapter), without loading it twice."""
        if disabled and self.has_adapter:
            with self.model.disable_adapter():
                yield
        else:
            yield

    def _inputs(self, messages: list[dict]):
        import torch

        ids = self.chat_format.prompt_ids(messages)
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def _generate_kwargs(self, max_new_tokens, temperature, top_p, seed, stop, cancel):
        from transformers import StoppingCriteriaList

        import torch

        kwargs = dict(
            max_new_tokens=max_new_tokens,
            eos_token_id=self.chat_format.stop_token_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p if top_p else 1.0, top_k=0)
            if seed is not None:
                torch.manual_seed(seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        if cancel is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_EventStop(cancel)])
        return kwargs

    def generate(self, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, stop: list[str] | None = None, cancel: threading.Event | None = None) -> Generation:
        import torch

        with self.lock, torch.inference_mode():
            inputs = self._inputs(messages)
            output = self.model.generate(**inputs, **self._generate_kwargs(max_new_tokens, temperature, top_p, seed, stop, cancel))
        new = output[0, inputs["input_ids"].shape[1]:].tolist()
        return self._finish(inputs["input_ids"].shape[1], new, max_new_tokens, stop)

    def generate_batch(self, conversations: list[list[dict]], max_new_tokens: int = 256,
                       batch_size: int = 16) -> list[Generation]:
        """Greedy answers to many conversations at once (left-padded batches).

        CPU generation of small models is bound by reading the weights once per step, so a
        batch of 16 costs little more than one answer. Used by reports and `compare`.
        """
        import torch

        results: list[Generation] = []
        pad_id = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        for start in range(0, len(conversations), batch_size):
            prompts = [self.chat_format.prompt_ids(c) for c in conversations[start:start + batch_size]]
            width = max(len(p) for p in prompts)
            input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
            attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
            with self.lock, torch.inference_mode():
                output = self.model.generate(input_ids=input_ids, attention_mask=attention,
                                             **self._generate_kwargs(max_new_tokens, 0.0, 1.0, None, None, None))
            stop_ids = set(self.chat_format.stop_token_ids)
            for prompt, row in zip(prompts, output[:, width:].tolist()):
                # Rows that finished early are padded after their stop token: cut there.
                end = next((i + 1 for i, t in enumerate(row) if t in stop_ids), len(row))
                results.append(self._finish(len(prompt), row[:end], max_new_tokens, None))
        return results

    def _finish(self, n_prompt: int, new: list[int], max_new_tokens: int, stop: list[str] | None) -> Generation:
        stop_ids = set(self.chat_format.stop_token_ids)
        finish = "length"
        if new and new[-1] in stop_ids:
            new = new[:-1]
            finish = "stop"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        if stop:
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        completion = len(new) + (1 if finish == "stop" and len(new) < max_new_tokens else 0)
        return Generation(text, n_prompt, min(completion, max_new_tokens), finish)

    def stream(self, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
               seed: int | None = None, stop: list[str] | None = None,
               cancel: threading.Event | None = None,
               on_finish: Callable[[Generation], None] | None = None) -> Iterator[str]:
        """Yield text pieces as they are generated. Setting `cancel` (or closing the iterator) stops generation.

        `on_finish` receives the whole Generation (token counts, finish reason) once the model
        has stopped: servers report usage and finish_reason for streamed answers too.
        """
        import torch
        from transformers import TextIteratorStreamer

        cancel = cancel or threading.Event()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        errors: list[BaseException] = []
        outputs: list = []

        def work():
            try:
                with torch.inference_mode():
                    inputs = self._inputs(messages)
                    output = self.model.generate(**inputs, streamer=streamer,
                                                 **self._generate_kwargs(max_new_tokens, temperature, top_p, seed, stop, cancel))
                    n_prompt = inputs["input_ids"].shape[1]
                    outputs.append((n_prompt, output[0, n_prompt:].tolist()))
            except BaseException as exc:  # surfaced in the consumer thread
                errors.append(exc)
                streamer.end()

        with self.lock:
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            emitted = ""
            try:
                for piece in streamer:
                    if stop:
                        candidate = emitted + piece
                        cut = min((candidate.find(s) for s in stop if s in candidate), default=-1)
                        if cut >= 0:
                            if cut > len(emitted):
                                yield candidate[len(emitted):cut]
                            cancel.set()
                            break
                    emitted += piece
                    if piece:
                        yield piece
            finally:
                stopped_by_string = cancel.is_set() and bool(stop)
                cancel.set()
                thread.join()
        if errors:
            raise errors[0]
        if on_finish is not None and outputs:
            n_prompt, new = outputs[0]
            result = self._finish(n_prompt, new, max_new_tokens, stop)
            if stopped_by_string:
                result.finish_reason = "stop"
            on_finish(result)
