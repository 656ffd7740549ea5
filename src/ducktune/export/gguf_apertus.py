"""llama.cpp's `apertus` architecture: Swiss AI's Apertus (ApertusForCausalLM: Apertus-8B / 70B, Instruct-2509).

Learned from llama.cpp's loader and graph (src/models/apertus.cpp) and its converter (ApertusModel in
conversion/llama.py). Llama's attention with per-head q/k RMSNorm before rope, rope in rotate-half
(NEOX) order as HF stores it (no q/k re-ordering), Llama 3.1's "llama3" rope scaling as the
`rope_freqs` table, an untied output head, and an MLP without a gate: down(xIELU(up(x))).

xIELU has four learned scalars per layer (model.layers.N.mlp.act_fn.{alpha_p, alpha_n, beta, eps}).
llama.cpp reads them as per-layer arrays of hyper-parameters (xielu.*), not tensors, and applies the
softplus itself, as transformers' Python path does (alpha_p' = softplus(alpha_p), alpha_n' = beta +
softplus(alpha_n)): the stored values are written as they are.
"""

from __future__ import annotations

from collections.abc import Callable

from ducktune.export.gguf_common import unloaded_biases

ARCH = "apertus"
# xIELU's learned scalar (transformers' act_fn attribute) -> the gguf writer method of llama.cpp's per-layer key
XIELU_WRITERS = {"alpha_p": "add_xielu_alpha_p", "alpha_n": "add_xielu_alpha_n", "beta": "add_xielu_beta",
                 "eps": "add_xielu_eps"}


def xielu_scalar(hf_name: str) -> str | None:
    """The xIELU scalar a weight holds ("alpha_p", ...), or None for any other weight."""
    prefix, _, last = hf_name.rpartition(".")
    return last if prefix.endswith(".mlp.act_fn") and last in XIELU_WRITERS else None


def xielu_values(names, read: Callable[[str], float], n_layers: int, where: str) -> dict[str, list[float]]:
    """{writer method: one value per layer} from the checkpoint's act_fn scalars (`read` returns one as a float)."""
    from ducktune.errors import ModelError

    found: dict[str, dict[int, float]] = {scalar: {} for scalar in XIELU_WRITERS}
    for name in names:
        if (scalar := xielu_scalar(name)) is not None:
            layer = int(name.split(".layers.", 1)[1].split(".", 1)[0])
            found[scalar][layer] = read(name)
    for scalar, per_layer in found.items():
        if sorted(per_layer) != list(range(n_layers)):
            raise ModelError(f"{where}: xIELU {scalar} found for {len(per_layer)} of {n_layers} layers "
                             f"(model.layers.N.mlp.act_fn.{scalar})")
    return {XIELU_WRITERS[scalar]: [per_layer[i] for i in range(n_layers)] for scalar, per_layer in found.items()}


def apertus_support(config: dict, name: str) -> str | None:
    """What llama.cpp's apertus graph would run differently from transformers' Apertus: another activation
    (it runs xIELU only), biases, a tied output (it loads an output head of its own). qk_norm / post_norm are
    the published configs' keys; transformers' class ignores them (q/k norms always, norms before each block),
    so a checkpoint built otherwise is refused."""
    act = config.get("hidden_act", "xielu")
    if act != "xielu":
        reason = f"hidden_act {act!r}: llama.cpp's apertus runs xIELU only"
    elif config.get("qk_norm") is False:
        reason = "qk_norm false, but llama.cpp's apertus (and transformers') always norms q/k"
    elif config.get("post_norm"):
        reason = "post_norm true, but llama.cpp's apertus (and transformers') norms before attention and the MLP"
    elif bias := unloaded_biases(config, "apertus"):
        reason = bias
    elif config.get("tie_word_embeddings"):
        reason = "tie_word_embeddings true: llama.cpp's apertus loads an output head of its own"
    else:
        return None
    return f"GGUF export of {name}: {reason}"
