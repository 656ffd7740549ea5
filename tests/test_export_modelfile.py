"""Modelfiles: what ducktune writes reads back exactly under Ollama's grammar; what Ollama would
reject (or silently misread) is rejected here too."""

from __future__ import annotations

import pytest

from ducktune.export.modelfile import ModelfileError, ModelfileSpec, parse_modelfile, quote_value, render_modelfile

TEMPLATE = '{{- range .Messages }}{{ "<|im_start|>" }}{{ .Role }}\n{{ .Content }}{{ "<|im_end|>\\n" }}{{ end }}'


def test_written_modelfile_reads_back_exactly():
    spec = ModelfileSpec(gguf_name="duckling-q4_k_m.gguf", template=TEMPLATE, stop=["<|im_end|>", "<|endoftext|>"],
                         num_ctx=4096, system='You are Duckling, "a duck".\n  Be brief. ')
    parsed = parse_modelfile(render_modelfile(spec, header="duckling\nbuilt by ducktune"))
    assert parsed.from_ == "./duckling-q4_k_m.gguf"
    assert parsed.template == TEMPLATE
    assert parsed.system == spec.system
    assert parsed.parameters() == {"stop": ["<|im_end|>", "<|endoftext|>"], "num_ctx": 4096}


def test_ollama_grammar_details():
    text = ('# comment\nfrom ./m.gguf\nPARAMETER temperature 0.5\nparameter stop "</s>"\nPARAMETER top_k 40\n'
            'SYSTEM """\nline one\nline two\n"""\nMESSAGE user Hello there\nLICENSE Apache 2.0\n')
    parsed = parse_modelfile(text)
    assert parsed.from_ == "./m.gguf"
    assert parsed.parameters() == {"temperature": 0.5, "stop": ["</s>"], "top_k": 40}
    assert parsed.system == "\nline one\nline two\n"
    assert ("message", "user: Hello there") in parsed.commands
    assert parsed.first("license") == "Apache 2.0"


@pytest.mark.parametrize("text, message", [
    ("PARAMETER num_ctx 4096\n", "no FROM"),
    ("FROM m.gguf\nTEMPLTE x\n", "unknown command"),
    ("FROM m.gguf\nPARAMETER num_ctxx 4096\n", "unknown parameter"),
    ("FROM m.gguf\nPARAMETER num_ctx 4k\n", "invalid int"),
    ("FROM m.gguf\nPARAMETER temperature warm\n", "invalid float"),
    ('FROM m.gguf\nTEMPLATE """never closed\n', "end of file"),
    ("FROM m.gguf\nMESSAGE robot hi\n", "message role"),
])
def test_modelfiles_ollama_rejects_are_rejected(text, message):
    with pytest.raises(ModelfileError, match=message):
        parse_modelfile(text).parameters()


def test_unprintable_characters_are_dropped_like_ollama():
    # Ollama's parser keeps only printable runes outside quoted line breaks: a zero-width joiner vanishes.
    assert parse_modelfile("FROM m.gguf\nSYSTEM a\u200db\n").system == "ab"


def test_values_that_cannot_round_trip_are_refused():
    with pytest.raises(ModelfileError, match='"""'):
        quote_value('say """hi"""', "SYSTEM")
    with pytest.raises(ModelfileError, match="unprintable"):
        quote_value("a\u200db", "SYSTEM")
    assert quote_value("<|im_end|>", "stop") == "<|im_end|>"
    assert parse_modelfile(f"FROM m\nSYSTEM {quote_value(' padded ', 'SYSTEM')}\n").system == " padded "
