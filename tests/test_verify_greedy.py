"""The export's llama.cpp checks on answers. Greedy answers (f16): identical answers pass, a parting at a
near-tie of the merged model passes and is reported, a parting the merged model was sure about fails.
Teacher-forced top-1 agreement (f16, q8_0): near-ties within the quant's margin count as agreeing,
tokens the merged model was sure of do not."""

from __future__ import annotations

import numpy as np
import torch

from ducktune.export.verify import FAIL, GREEDY_TIE_LOGITS, PASS, check_greedy_answers

VOCAB, STOP = 6, 5


class ScriptedLlama:
    """llama-cpp-python's reset/eval/scores/n_tokens, answering tokens from a table of sequences."""

    def __init__(self, continuations: dict[tuple, int]):
        self.continuations, self.tokens, self.scores = continuations, [], []

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def reset(self) -> None:
        self.tokens, self.scores = [], []

    def eval(self, tokens: list[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            row = np.zeros(VOCAB, dtype=np.float32)
            row[self.continuations.get(tuple(self.tokens), STOP)] = 1.0
            self.scores.append(row)


class Reference:
    """The merged model's side: prompts, greedy answers and their teacher-forced logits."""

    def __init__(self, prompt_ids, answers, margins):
        self.prompts = [f"prompt {i}" for i in range(len(prompt_ids))]
        self.prompt_ids, self.stop_ids, self.max_new_tokens = prompt_ids, {STOP}, 8
        self.logits = []
        for answer, margin in zip(answers, margins):
            rows = torch.zeros(len(answer), VOCAB, dtype=torch.float64)
            for i, token in enumerate(answer):
                rows[i, token] = 10.0
                rows[i, (token + 1) % VOCAB] = 10.0 - margin  # the runner-up, `margin` below
            self.logits.append(rows)

    def forced_logits(self):
        return self.logits

    def answer_text(self, ids):
        return " ".join(str(t) for t in ids if t != STOP)


def _llama_answering(prompt: list[int], answer: list[int]) -> dict[tuple, int]:
    return {tuple(prompt + answer[:i]): token for i, token in enumerate(answer)}


def test_identical_answers_pass():
    prompt, answer = [1, 2], [3, 4, STOP]
    check = check_greedy_answers(ScriptedLlama(_llama_answering(prompt, answer)),
                                 Reference([prompt], [answer], [2.0]), [answer], "llama.cpp x-f16.gguf")
    assert check.status == PASS and check.numbers["identical"] == 1 and not check.numbers["near_ties"]


def test_answers_that_stop_at_once_pass_but_say_that_they_show_little():
    """A tuned model that emits its stop token first on every prompt made "5/5 greedy answers identical"
    look like proof of a good export: the detail now says the answers end at once."""
    prompts, answers = [[1], [2], [3]], [[STOP], [STOP], [4, 2, STOP]]
    table = {k: v for prompt, answer in zip(prompts, answers) for k, v in _llama_answering(prompt, answer).items()}
    check = check_greedy_answers(ScriptedLlama(table), Reference(prompts, answers, [2.0] * 3), answers, "p")
    assert check.status == PASS and check.numbers["identical"] == 3
    assert "2/3 of the merged model's answers end within one token" in check.detail
    longer = [[3, 4, STOP]] * 3
    table = {k: v for prompt in prompts for k, v in _llama_answering(prompt, longer[0]).items()}
    check = check_greedy_answers(ScriptedLlama(table), Reference(prompts, longer, [2.0] * 3), longer, "p")
    assert "end within one token" not in check.detail


def test_parting_at_a_near_tie_passes_and_is_reported_but_a_sure_token_overturned_fails():
    prompt, answer = [1, 2], [3, 4, 0, STOP]
    llama = [3, STOP]  # parts at token 1, taking the merged model's runner-up there ((4 + 1) % 6: stop)
    tie = Reference([prompt], [answer], [GREEDY_TIE_LOGITS / 2])
    check = check_greedy_answers(ScriptedLlama(_llama_answering(prompt, llama)), tie, [answer], "p")
    assert check.status == PASS and check.numbers["identical"] == 0
    (row,) = check.numbers["near_ties"]
    assert row["at_token"] == 1 and abs(row["hf_margin"] - GREEDY_TIE_LOGITS / 2) < 1e-9
    assert "near-tie" in check.detail and "'3 4 0' vs llama.cpp '3'" in check.detail

    sure = Reference([prompt], [answer], [5.0])
    check = check_greedy_answers(ScriptedLlama(_llama_answering(prompt, llama)), sure, [answer], "p")
    assert check.status == FAIL and not check.numbers["near_ties"]
    assert check.numbers["diverged"][0]["hf_margin"] == 5.0 and "margin 5.000 logits" in check.detail


def test_a_token_the_merged_model_ranks_low_fails_even_when_its_top_two_are_close():
    prompt, answer = [1], [2, STOP]
    tie = Reference([prompt], [answer], [0.01])  # runner-up is 3, within the tie bound ...
    check = check_greedy_answers(ScriptedLlama(_llama_answering(prompt, [0, STOP])), tie, [answer], "p")
    assert check.status == FAIL  # ... but llama.cpp chose 0, which the merged model put 10 logits below


# Teacher-forced top-1 agreement (f16 / q8_0 must reach Q8_AGREEMENT, near-ties counted as agreeing).

def _forced(positions: int, flips: dict[int, float], runner_shift: float = 0.0):
    """The merged model's logits (top-1 token 0, runner-up 1 at 3 logits below, or at the flip's margin) and
    an export's: the same, with the runner-up raised above the top-1 at the flipped positions and moved
    by `runner_shift` logits elsewhere."""
    hf = np.zeros((positions, VOCAB))
    hf[:, 0], hf[:, 1] = 10.0, 7.0
    for i, margin in flips.items():
        hf[i, 1] = 10.0 - margin
    cpp = hf.copy()
    cpp[:, 1] += runner_shift
    for i in flips:
        cpp[i, 1] = 10.5
    return cpp, hf


def test_q8_agreement_counts_near_ties_of_the_merged_model_but_fails_on_sure_tokens_overturned():
    from ducktune.export.verify import INFO, QUANT_TIE_LOGITS, agreement_check

    tie = QUANT_TIE_LOGITS["q8_0"] / 2
    cpp, hf = _forced(20, {3: tie, 11: tie})
    check = agreement_check("p", "q8_0", [cpp[:8], cpp[8:]], [hf[:8], hf[8:]])
    assert check.status == PASS and check.numbers["agreement"] == 1.0
    assert check.numbers["identical"] == 18 and check.numbers["near_ties"] == 2 and check.numbers["overturned"] == 0
    assert "2 near-ties" in check.detail

    cpp, hf = _forced(20, {3: 2.0, 11: 2.0})  # the merged model was sure: a real difference
    check = agreement_check("p", "q8_0", [cpp], [hf])
    assert check.status == FAIL and check.numbers["agreement"] == 0.9 and check.numbers["overturned"] == 2
    assert "2 overturn the merged model's choice by 2.000-2.000 logits" in check.detail

    cpp, hf = _forced(40, {5: 2.0})  # one sure flip in 40: 0.975 still passes the bound
    assert agreement_check("p", "q8_0", [cpp], [hf]).status == PASS
    # f16's tie margin is f16's (0.1): a flip at q8_0's near-tie margin is a disagreement there
    cpp, hf = _forced(10, {2: tie, 7: tie})
    check = agreement_check("p", "f16", [cpp], [hf])
    assert check.status == FAIL and check.numbers["near_ties"] == 0 and check.numbers["overturned"] == 2
    # k-quants are reported, never judged
    cpp, hf = _forced(10, {i: 3.0 for i in range(10)})
    check = agreement_check("p", "q4_k_m", [cpp], [hf])
    assert check.status == INFO and check.numbers["agreement"] == 0.0


def test_agreement_reports_how_far_the_export_moved_the_merged_models_top_two_gap():
    from ducktune.export.verify import agreement_check

    cpp, hf = _forced(20, {}, runner_shift=0.25)
    check = agreement_check("p", "q8_0", [cpp], [hf])
    assert check.status == PASS and abs(check.numbers["gap_error_p95"] - 0.25) < 1e-9
    assert "top-two gap moved by <= 0.250 logits" in check.detail


def test_a_gguf_loaded_with_other_rope_scaling_is_not_failed_on_its_logits():
    """transformers' GGUF loader drops Llama 3.1/3.2's rope scaling (llama.cpp reads it from the
    rope_freqs tensor): on a 550-token probe its logits moved 0.36 of 9.8 and a good Llama 3 export
    was failed. It is INFO (llama.cpp checks the file) when the loaded config's rope differs."""
    from transformers import LlamaConfig

    from ducktune.export.verify import _rope_read_differently

    scaled = LlamaConfig(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 8192})
    plain = LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    assert _rope_read_differently(scaled, plain) == (
        "transformers' GGUF loader reads this file with default rope where the model has llama3 rope scaling "
        "(its logits drift with the position); llama.cpp checks this file")
    assert _rope_read_differently(plain, LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": 1e4})) is None


def test_the_template_row_says_where_llama_cpp_python_swaps_in_its_own_format(tiny_llama):
    """create_chat_completion replaces a few exact templates (Mistral v0.1's, ChatML, Llama 3) with its
    built-in formatters, which the row's jinja2 rendering does not check: it says so."""
    from llama_cpp.llama_chat_format import MISTRAL_INSTRUCT_CHAT_TEMPLATE

    from ducktune.export.verify import _jinja_renderer
    from ducktune.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_llama)
    engine, _ = _jinja_renderer(MISTRAL_INSTRUCT_CHAT_TEMPLATE, tokenizer)
    assert engine.endswith("its create_chat_completion uses its built-in 'mistral-instruct' format instead, not checked")
    engine, render = _jinja_renderer(tokenizer.chat_template, tokenizer)
    assert engine == "llama-cpp-python's jinja2"
    assert render([{"role": "user", "content": "hi"}]) == tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
