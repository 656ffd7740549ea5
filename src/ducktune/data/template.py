"""Chat templates and loss masks: the part most fine-tuning tutorials get wrong.

One `ChatFormat` wraps the tokenizer's own Jinja chat template and is used by training,
chat, serving and export alike, so a model is always prompted exactly as it was trained.

Masking works for any template (no per-model registry). The conversation is rendered
once with the template; the character span of every assistant answer is located in that
text, extended over the template's end-of-turn token, and the rendered text is tokenized
once with offsets: tokens starting inside an assistant span are trained, all others
(system, user, role headers, the generation prompt) get label -100.

Spans are found by prefix rendering: the text the model must generate for assistant turn
i is what `render(messages[:i+1])` adds after `render(messages[:i], add_generation_prompt=True)`.
Templates that rewrite history (e.g. drop reasoning from earlier turns) break the prefix
property; then the answer is searched for in the full rendering after its generation prompt.

The end-of-turn marker is discovered by rendering a probe conversation. If a template
emits no end-of-turn token after an answer, the tokenizer's EOS is inserted, so a tuned
model always learns to stop.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass

from ducktune.data.schema import Sample
from ducktune.errors import DataError, ModelError
from ducktune.models.loading import read_template  # noqa: F401  (re-exported for callers of the data layer)

IGNORE_INDEX = -100
REFUSED = "the chat template refused this conversation:"  # how a conversation it raises on is said
_THINK_END = "</think>"  # where reasoning models' answers end their reasoning
_PROBE_ANSWER = "DUCKTUNEPROBEANSWER"
_PROBE_QUESTION = "DUCKTUNEPROBEQUESTION"
_PROBE_SYSTEM = "DUCKTUNEPROBESYSTEM"
# Turn markers that templates only ever mean as single special tokens (ChatML, Llama 3, Phi-3,
# Gemma); `[INST]`-style markers are plain text in several real tokenizers, so they are not listed.
_TOKEN_MARKER = re.compile(r"<\|[^<>|\s]{1,40}\|>|<(?:start|end)_of_turn>")


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool
    where: str = ""

    @property
    def n_trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


class ChatFormat:
    """Renders conversations with the tokenizer's chat template and builds loss masks."""

    def __init__(self, tokenizer, system_prompt: str | None = None, extra_stop_tokens: list[str] | tuple = ()):
        """`extra_stop_tokens`: more tokens that end a turn at inference, beside the template's marker and
        EOS: those the model's generation_config.json lists (models.loading.generation_stop_tokens)."""
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError(
                "the model's tokenizer has no chat template; set model.chat_template (a Jinja template, a .jinja "
                "file, or a bundled one such as chatml, firefly or phi2-qa: see `ducktune models`)"
            )
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.extra_stop_tokens = list(extra_stop_tokens)
        self.turn_suffix, self.eot_token = self._discover_turn_end()
        earlier_suffix, earlier_token = self._earlier_turn_marker()
        # OLMo 3 ends the last answer with EOS but earlier ones with <|im_end|>: both close a turn.
        other = earlier_token and self.eot_token and earlier_token != self.eot_token
        self.earlier_turn_suffix, self.earlier_eot_token = (earlier_suffix, earlier_token) if other else ("", None)
        # If the template ends answers with no special token, EOS is inserted after each answer.
        self.inserted_eos = None if self.eot_token else tokenizer.eos_token
        # Apertus' template writes EOS after an answer only when another turn follows: then it is inserted after
        # the last answer alone (earlier ones have it already, once, as the model was trained to see them).
        self.eos_closes_earlier = bool(self.inserted_eos) and earlier_suffix == self.inserted_eos
        if self.eot_token is None and not tokenizer.eos_token:
            raise ModelError("the chat template ends answers with no special token and the tokenizer has no EOS token")
        self.generation_prompt = self._discover_generation_prompt()
        # Text the template's generation prompt adds beyond what precedes answers it renders (DeepSeek-R1's
        # `<think>\n`): training never shows it, so ducktune prompts without it ("" when they agree).
        self.dropped_prompt_text = ""
        opening = self._discover_answer_opening()
        # Text rendered answers have after the generation prompt, which the model generates and is trained on
        # (gpt-oss's <|channel|>final<|message|> after <|start|>assistant); "" for most templates.
        self.answer_lead = (opening[len(self.generation_prompt):] if opening and opening.startswith(self.generation_prompt)
                            else "")
        if opening is not None and len(self.generation_prompt) > len(opening) and self.generation_prompt.startswith(opening):
            self.generation_prompt, self.dropped_prompt_text = opening, self.generation_prompt[len(opening):]
        if system_prompt:
            self._check_system_role()

    # -------------------------------------------------------------- discovery

    def _render_raw(self, messages: list[dict], add_generation_prompt: bool, tools: list[dict] | None = None) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                messages, tools=tools or None, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as exc:  # jinja2 errors: templates raise on unsupported role orders
            if type(exc).__name__ == "UndefinedError":  # e.g. 'bos_token' is undefined: not the data's fault
                raise ModelError(f"the chat template uses a value this tokenizer does not define ({exc}); set "
                                 "model.chat_template to a template made for this tokenizer") from None
            raise DataError(f"{REFUSED} {exc}") from None

    def special_tokens(self) -> list[str]:
        tokens = set(self.tokenizer.all_special_tokens)
        for token in self.tokenizer.added_tokens_decoder.values():
            if token.special:
                tokens.add(token.content)
        return sorted(tokens, key=len, reverse=True)

    def _discover_turn_end(self) -> tuple[str, str | None]:
        """Text between an answer and the end of its turn marker, and that marker (or None)."""
        probe = [{"role": "user", "content": _PROBE_QUESTION}, {"role": "assistant", "content": _PROBE_ANSWER}]
        text = self._render_raw(probe, False)
        if _PROBE_ANSWER not in text:
            raise ModelError("the chat template does not include the assistant's answer in its output")
        return self._marker_after(text, _PROBE_ANSWER)

    def _earlier_turn_marker(self) -> tuple[str, str | None]:
        """The text and special token that end an answer which is not the last (("", None): none, or a
        template that refuses two turns)."""
        first = "DUCKTUNEPROBEEARLIER"
        probe = [{"role": "user", "content": _PROBE_QUESTION}, {"role": "assistant", "content": first},
                 {"role": "user", "content": _PROBE_QUESTION}, {"role": "assistant", "content": _PROBE_ANSWER}]
        try:
            text = self._render_raw(probe, False)
        except (DataError, ModelError):  # a template that refuses this conversation keeps the one marker
            return "", None
        if first not in text:
            return "", None
        return self._marker_after(text, first)

    def _marker_after(self, text: str, answer: str) -> tuple[str, str | None]:
        after = text[text.find(answer) + len(answer):]
        best = None
        for token in self.special_tokens():
            pos = after.find(token)
            if pos >= 0 and (best is None or pos < best[0]):
                best = (pos, token)
        # Only a marker that directly follows the answer (after whitespace at most) ends the turn.
        if best is not None and not after[: best[0]].strip():
            return after[: best[0] + len(best[1])], best[1]
        return "", None

    def _check_system_role(self) -> None:
        """Gemma 2 and Mistral v0.1 templates raise on a system message: a run's system prompt would
        fail on every sample, so it is refused up front (and the Ollama TEMPLATE has no trained
        system text to reproduce)."""
        probe = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": _PROBE_QUESTION}]
        try:
            self.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ModelError(f"model.system_prompt: this model's chat template has no system role ({reason}); "
                             "remove model.system_prompt (put the instructions in the user messages) or set "
                             "model.chat_template to a template with a system role") from None

    def _discover_generation_prompt(self) -> str:
        messages = [{"role": "user", "content": _PROBE_QUESTION}]
        with_prompt = self._render_raw(messages, True)
        without = self._render_raw(messages, False)
        return with_prompt[len(without):] if with_prompt.startswith(without) else ""

    def _discover_answer_opening(self) -> str | None:
        """The text a rendered conversation puts between a user turn and the answer that follows it
        (None: not measurable, e.g. a template that changes the user turn once answered)."""
        user = [{"role": "user", "content": _PROBE_QUESTION}]
        before = self._render_raw(user, False)
        both = self._render_raw(user + [{"role": "assistant", "content": _PROBE_ANSWER}], False)
        at = both.find(_PROBE_ANSWER, len(before))
        return both[len(before):at] if both.startswith(before) and at >= 0 else None

    def _render_prompt(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """The template's rendering ready for the next answer, opened as training opened answers."""
        if self.dropped_prompt_text:
            return self._render_raw(messages, False, tools) + self.generation_prompt
        return self._render_raw(messages, True, tools)

    @functools.cached_property
    def system_only_in_prompts(self) -> bool:
        """Whether the template writes a system message into prompts but not into a conversation that
        ends with an answer: Mistral v0.3 and Nemo put it in the last user turn only, so rendered whole,
        every training conversation lost its system prompt while every prompt at inference has it."""
        probe = [{"role": "system", "content": _PROBE_SYSTEM}, {"role": "user", "content": _PROBE_QUESTION},
                 {"role": "assistant", "content": _PROBE_ANSWER}]
        try:
            return _PROBE_SYSTEM not in self._render_raw(probe, False) and _PROBE_SYSTEM in self._render_prompt(probe[:2])
        except (DataError, ModelError):  # no system role: nothing to place
            return False

    def conversation_text(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """A whole conversation as training renders it (before any inserted EOS): the template's own
        rendering, except that a conversation ending with an answer, whose template writes the system
        message only into prompts, gets the final answer after the prompt inference gives (system
        included), so the trained answer follows exactly what the model is asked with."""
        raw = self._render_raw(messages, False, tools)
        if not (self.system_only_in_prompts and len(messages) > 2 and messages[0]["role"] == "system"
                and messages[-1]["role"] == "assistant"):
            return raw
        # Without the system message the template renders as usual: prompt, then the answer's text.
        prompt_without = self._render_prompt(messages[1:-1], tools)
        if raw != self._render_raw(messages[1:], False, tools) or not raw.startswith(prompt_without):
            return raw  # a template placing it some other way: its own rendering
        return self._render_prompt(messages[:-1], tools) + raw[len(prompt_without):]

    # -------------------------------------------------------------- public API

    @functools.cached_property
    def longest_token_bytes(self) -> int:
        """UTF-8 bytes of the tokenizer's longest token (at least 1): a prompt of N bytes has at least
        N / that many tokens, a bound found without tokenizing (serve refuses megabyte prompts by it)."""
        return max((len(t.encode("utf-8", "surrogatepass")) for t in self.tokenizer.get_vocab()), default=1) or 1

    @property
    def stop_tokens(self) -> list[str]:
        """Every token that ends an assistant turn: the template's marker, EOS and the model's own list."""
        tokens = []
        for token in (self.eot_token, self.earlier_eot_token, self.tokenizer.eos_token, *self.extra_stop_tokens):
            if token and token not in tokens:
                tokens.append(token)
        return tokens

    @property
    def reasoning_stop_token_ids(self) -> list[int]:
        """The stop tokens the template also writes inside one answer, between its reasoning and its text:
        gpt-oss's <|end|> closes an earlier answer, and the analysis message the final answer follows. They
        end an answer only once its reasoning is over (chat.engine.AnswerText)."""
        inside = self.answer_frame.reasoning_close
        return [i for t, i in zip(self.stop_tokens, self._ids(self.stop_tokens)) if i is not None and t in inside]

    def _ids(self, tokens: list[str]) -> list[int | None]:
        ids = [self.tokenizer.convert_tokens_to_ids(t) for t in tokens]
        return [i if isinstance(i, int) and i >= 0 else None for i in ids]

    @functools.cached_property
    def answer_frame(self):
        """What the template writes around an answer's own words (template_rules.AnswerFrame)."""
        from ducktune.data.template_rules import answer_frame

        return answer_frame(self)

    @property
    def stop_token_ids(self) -> list[int]:
        ids = []
        for token_id in self._ids(self.stop_tokens):
            if token_id is not None and token_id not in ids:
                ids.append(token_id)
        return ids

    def with_system(self, messages: list[dict]) -> list[dict]:
        if self.system_prompt and not (messages and messages[0]["role"] == "system"):
            return [{"role": "system", "content": self.system_prompt}] + list(messages)
        return list(messages)

    def prompting_template(self) -> str:
        """The tokenizer's template, ending a prompt as training opened answers: where its generation
        prompt adds text trained answers never follow (dropped_prompt_text), it renders the conversation
        without it and appends the trained opening itself. Otherwise the template unchanged."""
        template = self.tokenizer.chat_template
        if not self.dropped_prompt_text:
            return template
        opening = json.dumps(self.generation_prompt, ensure_ascii=False)
        return ("{%- set ducktune_prompt = add_generation_prompt is defined and add_generation_prompt %}"
                "{%- set add_generation_prompt = false %}" + template
                + f"{{% if ducktune_prompt %}}{{{{ {opening} }}}}{{% endif %}}")

    def trained_template(self) -> str:
        """A Jinja chat template that renders on its own what `render` renders: prompting_template()
        behind a prelude that adds the default system prompt to conversations without one and appends
        the inserted EOS to each answer. Exports carry it (merged/'s tokenizer, the GGUF's
        tokenizer.chat_template), so runners that only read the template (llama-server, LM Studio,
        transformers) prompt as training did. Unchanged when training added none of these."""
        template = self.prompting_template()
        prelude = ""
        if self.system_prompt:
            # A JSON string is a valid Jinja string literal (quotes, backslashes and newlines escaped).
            system = json.dumps(self.system_prompt, ensure_ascii=False)
            prelude += ("{%- if not messages or messages[0]['role'] != 'system' %}"
                        f"{{%- set messages = [{{'role': 'system', 'content': {system}}}] + messages %}}"
                        "{%- endif %}")
        if self.inserted_eos and not self.eos_closes_earlier:  # prompts hold earlier answers only
            eos = json.dumps(self.inserted_eos, ensure_ascii=False)
            prelude += ("{%- set ducktune_ns = namespace(messages=[]) %}{%- for m in messages %}"
                        "{%- if m['role'] == 'assistant' and m['content'] is string %}"
                        f"{{%- set ducktune_ns.messages = ducktune_ns.messages + [{{'role': 'assistant', "
                        f"'content': m['content'] + {eos}}}] %}}"
                        "{%- else %}{%- set ducktune_ns.messages = ducktune_ns.messages + [m] %}{%- endif %}"
                        "{%- endfor %}{%- set messages = ducktune_ns.messages %}")
        return prelude + template

    def render(self, messages: list[dict], add_generation_prompt: bool = False, tools: list[dict] | None = None) -> str:
        """The conversation as the model saw it in training. Where the template ends answers with no
        special token, training inserts EOS after each answer (assistant_spans), so earlier answers
        get it here too (not a final assistant message: that one is being continued). `tools`: the
        functions the model may call (OpenAI's list), written where the template puts them."""
        messages = self.with_system(messages)
        raw = self._render_prompt(messages, tools) if add_generation_prompt else self.conversation_text(messages, tools)
        if self.inserted_eos is None or self.eos_closes_earlier or not any(m["role"] == "assistant" for m in messages):
            return raw
        try:
            _, spans = self.assistant_spans(messages, tools)
        except DataError:  # a template whose answers cannot be located: its own rendering
            return raw
        eos = self.inserted_eos
        # Span j ends after j + 1 insertions; the rest of the text (a generation prompt, Phi-3's
        # closing EOS) follows the last answer, so the raw positions hold with or without it.
        cuts = [end - (j + 1) * len(eos) for j, (_, end) in enumerate(spans)]
        if messages[-1]["role"] == "assistant":
            cuts = cuts[:-1]
        for cut in reversed(cuts):
            raw = raw[:cut] + eos + raw[cut:]
        return raw

    def prompt_ids(self, messages: list[dict], tools: list[dict] | None = None, answer_start: str = "") -> list[int]:
        """Token ids of a conversation ready for the assistant's next answer (inference), the answer begun
        with `answer_start` (a call a request forces: chat/tool_calls.forced_call_prefix). Message text
        that spells a special token (a user typing `<|im_end|><|im_start|>system`) stays text: left to the
        tokenizer it would become the control token and forge turns (OpenAI's API treats content as text)."""
        messages = self.with_system(messages)
        return self.tokenize(self.render(messages, add_generation_prompt=True, tools=tools) + answer_start, messages)[0]

    @functools.cached_property
    def _special_token_text(self) -> re.Pattern:
        """One pattern for the text of every special token: tokenize() runs for every training sample, and
        building the list and scanning each content once per token cost 40 % of encode with Llama 3's 256."""
        tokens = self.special_tokens()
        return re.compile("|".join(map(re.escape, tokens)) if tokens else r"(?!)")

    def tokenize(self, text: str, messages: list[dict]) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and character offsets of `text`, a rendering of `messages`, whose message contents
        stay text: a content that spells a special token (`<|im_end|>` typed in a message or pasted in a
        dataset) is tokenized with the special tokens split, in training as at inference; left to the
        tokenizer it becomes the control token, and a training sample gets a forged turn no prompt has."""
        spells = self._special_token_text.search
        contents = [m["content"] for m in messages if isinstance(m.get("content"), str) and m["content"]]
        if not any(spells(content) for content in contents):
            encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            return encoding["input_ids"], encoding["offset_mapping"]
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []

        def add(start: int, end: int, split: bool) -> None:
            if end > start:
                encoding = self.tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True,
                                          split_special_tokens=split)
                ids.extend(encoding["input_ids"])
                offsets.extend((a + start, b + start) for a, b in encoding["offset_mapping"])

        emitted = searched = 0
        for content in contents:  # the template writes them in order; only those spelling a token split
            at = text.find(content, searched)
            if at < 0:
                continue
            searched = at + len(content)
            if spells(content):
                add(emitted, at, False)
                add(at, searched, True)
                emitted = searched
        add(emitted, len(text), False)
        return ids, offsets

    # -------------------------------------------------------------- training

    def assistant_spans(self, messages: list[dict], tools: list[dict] | None = None) -> tuple[str, list[tuple[int, int]]]:
        """The rendered conversation and the character span of each assistant answer (with its end-of-turn).
        An answer with tool calls spans whatever the template writes for it (its text and the calls in the
        template's own syntax) up to its end-of-turn marker."""
        raw = self.conversation_text(messages, tools)
        full = raw
        spans: list[tuple[int, int]] = []
        cursor = 0
        shift = 0  # characters of inserted EOS before `cursor`: full = raw + insertions
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            # Located in the template's own rendering, so an inserted EOS never hides the prefix.
            start = self._answer_start(messages, i, raw, cursor - shift, tools) + shift
            if message.get("tool_calls"):
                end = self._call_end(messages, i, raw, start - shift, tools) + shift
            elif self.eot_token:
                # The answer runs to the next end-of-turn marker: this also covers templates
                # that trim answers or rewrite earlier turns.
                at = self._after_reasoning(full, start, message)
                end = self._turn_end(full, self._content_end(full, at, message["content"]) or at)
            else:
                end = self._content_end(full, start, message["content"])
                if end is None:
                    raise DataError("the chat template changes the assistant's text in a way ducktune cannot "
                                    "follow; set model.chat_template to a template that keeps answers verbatim")
                if not (self.eos_closes_earlier and full.startswith(self.inserted_eos, end)):
                    full = full[:end] + self.inserted_eos + full[end:]
                    shift += len(self.inserted_eos)
                end += len(self.inserted_eos)
            spans.append((start, end))
            cursor = end
        return self._keep_final_reasoning(messages, full, spans)

    @staticmethod
    def _reasoning_end(full: str, start: int, message: dict, before: int | None = None) -> int | None:
        """Where the answer's separate reasoning ends in `full` (searched from `start`, up to `before`); None
        when it has none, or the template did not write it there."""
        reasoning = (message.get("reasoning_content") or "").strip()
        at = full.find(reasoning, start, len(full) if before is None else before) if reasoning else -1
        return at + len(reasoning) if at >= 0 else None

    @classmethod
    def _after_reasoning(cls, full: str, start: int, message: dict) -> int:
        """Where the text of an answer with separate reasoning starts: after its reasoning, which gpt-oss writes
        as a message of its own (closed by <|end|>, the answer follows in a final-channel message)."""
        after = cls._reasoning_end(full, start, message)
        if after is None:
            return start
        content = message["content"].strip()
        found = full.find(content, after) if content else -1
        return found if found >= 0 else after

    def _call_end(self, messages: list[dict], i: int, raw: str, start: int, tools: list[dict] | None) -> int:
        """Where answer i, which calls tools, ends in `raw`: the template writes calls in its own syntax, with no
        text of the data's to find. The first end-of-turn marker before the next message's text ends it (a
        tool result follows with a marker of its own); a call that closes otherwise (gpt-oss's <|call|>,
        Gemma 4's <|tool_response>) ends where the conversation rendered up to it stops agreeing with `raw`."""
        if not self.eot_token and not self.eos_closes_earlier:
            raise DataError("the chat template ends answers with no end-of-turn token, so where a tool call ends "
                            "is unknown; set model.chat_template to a template with an end-of-turn token")
        following = messages[i + 1]["content"] if i + 1 < len(messages) else ""
        before = raw.find(following, start) if isinstance(following, str) and following.strip() else -1
        before = before if before >= 0 else len(raw)
        suffixes = [suffix for suffix in (self.turn_suffix, self.earlier_turn_suffix) if suffix]
        after = self._reasoning_end(raw, start, messages[i], before)
        if after is not None:  # gpt-oss closes the reasoning's own message with <|end|>: the call comes after it
            start = after + next((len(s) for s in suffixes if raw.startswith(s, after)), 0)
        found = [(pos, suffix) for pos, suffix in ((raw.find(s, start, before), s) for s in suffixes) if pos >= 0]
        if found:
            pos, suffix = min(found)
            return pos + len(suffix)
        upto = messages[: i + 1]
        if after is None and (messages[i].get("reasoning_content") or "").strip():  # dropped once a final answer follows
            upto = messages[:i] + [{k: v for k, v in messages[i].items() if k != "reasoning_content"}]
        upto = self._render_raw(upto, False, tools)
        bound = start + len(os.path.commonprefix([upto[start:], raw[start:]]))
        end = start + len(raw[start:bound].rstrip())
        if end <= start:
            raise DataError("the chat template writes no end to an assistant turn's tool calls that ducktune can find; "
                            "set model.chat_template to a template with tool support")
        return end

    def _turn_end(self, full: str, at: int) -> int:
        """Where the assistant turn containing `at` ends: after the nearest end-of-turn marker."""
        ends = [(full.find(suffix, at), suffix) for suffix in (self.turn_suffix, self.earlier_turn_suffix) if suffix]
        found = [(pos, suffix) for pos, suffix in ends if pos >= 0]
        if not found:
            raise DataError(f"the chat template does not end an assistant turn with {self.eot_token!r} in this conversation")
        pos, suffix = min(found)
        return pos + len(suffix)

    @staticmethod
    def _keep_final_reasoning(messages: list[dict], full: str, spans: list[tuple[int, int]]
                              ) -> tuple[str, list[tuple[int, int]]]:
        """A template that renders only what follows '</think>' in every answer (DeepSeek-R1's: earlier
        answers lose their reasoning in a prompt) would drop the reasoning of the answer being trained
        too, silently. The final answer keeps it, verbatim: the model must generate it after the prompt."""
        if not spans or messages[-1]["role"] != "assistant" or not isinstance(messages[-1]["content"], str):
            return full, spans
        content = messages[-1]["content"]
        cut = content.rfind(_THINK_END) + len(_THINK_END)
        dropped, tail = content[:cut], content[cut:]
        start, end = spans[-1]
        if cut < len(_THINK_END) or not tail.strip() or not full.startswith(tail, start) or full.startswith(content, start):
            return full, spans
        return full[:start] + dropped + full[start:], spans[:-1] + [(start, end + len(dropped))]

    def _answer_start(self, messages: list[dict], i: int, full: str, cursor: int, tools: list[dict] | None = None) -> int:
        prefix = self._render_prompt(messages[:i], tools) if i else self.generation_prompt
        if i and full.startswith(prefix) and len(prefix) >= cursor:
            return len(prefix)
        if messages[i].get("tool_calls"):  # no text of the data's to search for
            # A template that writes prompts' reasoning opening into the last answer only (Nemotron-H's
            # `<think>\n`): the call opens after the part of the generation prompt that its rendering has.
            before = self._render_raw(messages[:i], False, tools)
            shared = 0
            if full.startswith(before) and len(before) >= cursor:
                shared = len(os.path.commonprefix([full[len(before):], self.generation_prompt]))
                # Back to the end of a line or special token ("<" is shared by `<think>` and `<TOOLCALL>`).
                prompt = self.generation_prompt[:shared]
                ends = [prompt.rfind("\n") + 1] + [prompt.rfind(t) + len(t) for t in self.special_tokens() if t in prompt]
                shared = max(ends)
            if shared:
                return len(before) + shared
            raise DataError("the chat template does not write an assistant's tool call where the assistant's turn "
                            "opens; set model.chat_template to a template with tool support")
        # History-rewriting template: search for the generation prompt followed by the answer.
        content = messages[i]["content"]
        for needle in (self.generation_prompt + content, self.generation_prompt + content.strip()):
            if self.generation_prompt:
                at = full.find(needle, cursor)
                if at >= 0:
                    return at + len(self.generation_prompt)
        for needle in (content, content.strip()):
            at = full.find(needle, cursor)
            if at >= 0:
                return at
        raise DataError("the chat template does not reproduce an assistant answer verbatim; "
                        "set model.chat_template to a template that does")

    @staticmethod
    def _content_end(full: str, start: int, content: str) -> int | None:
        for candidate in (content, content.strip(), content.rstrip()):
            if candidate and full.startswith(candidate, start):
                return start + len(candidate)
        # Templates may put whitespace (or a marker) before the answer; allow a short gap.
        stripped = content.strip()
        at = full.find(stripped, start, start + len(stripped) + 16)
        return at + len(stripped) if stripped and at >= 0 else None

    def encode(self, sample: Sample, cutoff: int, train_on: str = "assistant") -> Encoded:
        """Token ids and labels for one sample, truncated to `cutoff` tokens."""
        tok = self.tokenizer
        if sample.kind == "text":
            ids = tok(sample.text, add_special_tokens=True)["input_ids"]
            if tok.eos_token_id is not None:
                ids = ids + [tok.eos_token_id]
            labels = list(ids)
        else:
            messages = self.with_system(sample.message_dicts())
            text, spans = self.assistant_spans(messages, sample.tools)
            trained = [m.trained for m in sample.messages if m.role == "assistant"]
            if train_on == "last_assistant":  # the last answer, trained unless the data says "weight": 0
                spans, trained = spans[-1:], trained[-1:]
            if not all(trained):  # turns the data marks untrained ("weight": 0) stay context only
                spans = [span for span, keep in zip(spans, trained) if keep]
            ids, offsets = self.tokenize(text, messages)
            labels = list(ids) if train_on == "all" else _labels_from_spans(ids, offsets, spans)
        truncated = len(ids) > cutoff
        return Encoded(ids[:cutoff], labels[:cutoff], truncated, sample.where)

    def decode_spans(self, encoded: Encoded) -> list[tuple[str, bool]]:
        """(text, trained) runs of a sample, for previews that highlight the trained tokens."""
        runs: list[tuple[str, bool]] = []
        current: list[int] = []
        state = None
        for token_id, label in zip(encoded.input_ids, encoded.labels):
            trained = label != IGNORE_INDEX
            if state is not None and trained != state:
                runs.append((self.tokenizer.decode(current), state))
                current = []
            current.append(token_id)
            state = trained
        if current:
            runs.append((self.tokenizer.decode(current), bool(state)))
        return runs


def marks_a_trained_answer(sample: Sample, train_on: str = "assistant") -> bool:
    """Whether `sample` leaves anything to train under `train_on` before any cutoff: text and
    train_on "all" always do; otherwise an answer the data does not mark untrained ("weight": 0), the
    last one for "last_assistant". Training drops a sample without one."""
    if sample.kind != "chat" or train_on == "all":
        return True
    answers = [m for m in sample.messages if m.role == "assistant"]
    return any(m.trained for m in (answers[-1:] if train_on == "last_assistant" else answers))


def _labels_from_spans(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    labels = [IGNORE_INDEX] * len(ids)
    if not spans:
        return labels
    span_index = 0
    for t, (start, end) in enumerate(offsets):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        if span_index == len(spans):
            break
        s, e = spans[span_index]
        # A token straddling the start of an answer (a BPE merge across the boundary, e.g.
        # "A:" + " hello") carries answer text, so it is trained too.
        if end > s and start < e and end > start:
            labels[t] = ids[t]
    return labels


def plain_text_markers(tokenizer) -> list[str]:
    """Turn markers (`<|im_end|>`, `<end_of_turn>`...) the chat template writes that the tokenizer has no
    single token for, when the one closing an answer is among them: e.g. a ChatML template on a Llama 3
    tokenizer, whose markers are trained as pieces of plain text and never stop generation. Empty when
    answers end with a real token (Zephyr's `<|user|>` is plain text by design; `</s>` ends its turns)
    or the template cannot render the probe."""
    def single_token(marker: str) -> bool:
        return len(tokenizer.encode(marker, add_special_tokens=False)) == 1

    probe = [{"role": "user", "content": _PROBE_QUESTION}, {"role": "assistant", "content": _PROBE_ANSWER},
             {"role": "user", "content": _PROBE_QUESTION}]
    try:
        text = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:  # no template, or one that refuses the probe: ChatFormat reports it
        return []
    text = text if isinstance(text, str) else ""
    closing = _TOKEN_MARKER.match(text[text.find(_PROBE_ANSWER) + len(_PROBE_ANSWER):].lstrip())
    if _PROBE_ANSWER not in text or not closing or single_token(closing.group()):
        return []
    return [marker for marker in dict.fromkeys(_TOKEN_MARKER.findall(text)) if not single_token(marker)]


def prompting_chat_format(tokenizer, model_folder, system_prompt: str | None = None) -> "ChatFormat":
    """The chat format to prompt a model with and to stop its answers: the tokenizer's template, the
    run's system prompt, and, beside the template's end-of-turn marker and EOS, every stop token the
    model folder's generation_config.json lists (a GLM-4 answer talks on past <|user|> without them).
    Every inference path (chat, compare, serve, export, the quickstart's comparison) builds it here."""
    from ducktune.models.loading import generation_stop_tokens

    return ChatFormat(tokenizer, system_prompt=system_prompt,
                      extra_stop_tokens=generation_stop_tokens(model_folder, tokenizer))


def model_chat_format(model, log=print) -> "ChatFormat":
    """The chat format training would use for `model:` (a ModelConfig), without loading weights (for
    masks and previews: its stop tokens are the template's and EOS only)."""
    from ducktune.models.tokenizer import model_tokenizer

    return ChatFormat(model_tokenizer(model, log), system_prompt=model.system_prompt)
