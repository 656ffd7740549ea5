"""export.gguf_file.read_gguf_header (and export.verify.gguf_string_field on it): a GGUF's metadata
and tensor index without decoding its arrays (fast, no model), checked against gguf's own GGUFReader."""

import pytest


def _write(path, arch="llama", experts=0):
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_uint32("some.count", 7)
    if experts:
        writer.add_expert_count(experts)
    writer.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(300)] + ["小鸭", ""])
    writer.add_array("tokenizer.ggml.scores", [float(i) for i in range(302)])
    writer.add_bool("some.flag", True)
    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_tensor("w", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_reads_fields_after_string_and_number_arrays(tmp_path):
    import gguf

    from ducktune.export.verify import gguf_string_field

    path = _write(tmp_path / "m.gguf", arch="qwen2")
    assert gguf_string_field(path, "general.architecture") == "qwen2"
    assert gguf_string_field(path, "tokenizer.ggml.model") == "gpt2"  # found after skipping the arrays
    assert gguf_string_field(path, "missing.key") is None
    reader = gguf.GGUFReader(str(path))
    assert reader.get_field("tokenizer.ggml.model").contents() == "gpt2"


def test_refuses_what_is_not_a_gguf_header(tmp_path):
    from ducktune.export.verify import gguf_string_field

    (tmp_path / "x.gguf").write_bytes(b"not a gguf file at all, just bytes")
    with pytest.raises(ValueError):
        gguf_string_field(tmp_path / "x.gguf", "general.architecture")
    (tmp_path / "short.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x01")
    with pytest.raises(ValueError):
        gguf_string_field(tmp_path / "short.gguf", "general.architecture")


def test_header_matches_gguf_reader(tmp_path):
    """Every scalar and string field, every array's type and length, and every tensor's name, shape,
    type and data offset are what gguf's own (slow, full) reader sees."""
    import gguf
    import numpy as np

    from ducktune.export.gguf_file import GGUFArray, read_gguf_header

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("some.count", 7)
    writer.add_float32("some.eps", 1e-5)
    writer.add_int64("some.big", -(2 ** 40))
    writer.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(300)] + ["小鸭", ""])
    writer.add_array("tokenizer.ggml.token_type", [1] * 302)
    writer.add_string("tokenizer.chat_template", "{{ messages }}")
    writer.add_tensor("a", np.arange(32, dtype=np.float32).reshape(4, 8))
    writer.add_tensor("b", np.zeros((3, 5, 64), dtype=np.float16))
    writer.add_tensor("c", gguf.quantize(np.ones((2, 64), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    header = read_gguf_header(path)
    reader = gguf.GGUFReader(str(path))
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):  # the reader's own pseudo-fields (version, counts)
            continue
        ours = header.metadata[name]
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            assert ours == GGUFArray(int(field.types[1]), len(field.data)), name
        else:
            assert ours == pytest.approx(field.contents()), name
    assert set(header.metadata) == {n for n in reader.fields if not n.startswith("GGUF.")}
    assert header.metadata["some.big"] == -(2 ** 40) and header.metadata["tokenizer.ggml.tokens"].count == 302
    assert [(t.name, t.shape, t.ggml_type, header.data_offset + t.offset) for t in header.tensors] == [
        (t.name, tuple(int(d) for d in reversed(list(t.shape))), int(t.tensor_type), int(t.data_offset))
        for t in reader.tensors]
    assert [t.shape for t in header.tensors] == [(4, 8), (3, 5, 64), (2, 64)]


def test_header_refuses_a_truncated_file(tmp_path):
    """A file cut inside its tensor data (an interrupted copy) or inside its header is refused."""
    from ducktune.export.gguf_file import read_gguf_header

    whole = _write(tmp_path / "m.gguf").read_bytes()
    read_gguf_header(tmp_path / "m.gguf")  # the whole file reads
    (tmp_path / "cut.gguf").write_bytes(whole[:-16])
    with pytest.raises(ValueError, match="past the end"):
        read_gguf_header(tmp_path / "cut.gguf")
    (tmp_path / "head.gguf").write_bytes(whole[:200])
    with pytest.raises(ValueError, match="ends early"):
        read_gguf_header(tmp_path / "head.gguf")


@pytest.mark.parametrize("arch, experts, expected", [
    ("qwen2", 0, None),                                  # read and compared with the merged model
    ("llama", 0, None),
    ("llama", 8, "dense Llama, without this file's experts"),  # Mixtral: the loader drops the experts
    ("gemma3", 0, "other logits than llama.cpp"),        # read, but not faithfully
    ("gemma4", 0, "cannot read gemma4"),                 # listed by transformers, but its loader fails on it
    ("olmo2", 0, "does not read architecture 'olmo2'"),
])
def test_which_files_transformers_gguf_loader_can_judge(tmp_path, arch, experts, expected):
    """The export's independent transformers check runs only where that loader is faithful; elsewhere it
    is INFO (llama.cpp checks the file), never a FAIL blamed on the export (Gemma 4 was)."""
    from ducktune.export.verify import transformers_gguf_gap

    gap = transformers_gguf_gap(_write(tmp_path / "m.gguf", arch=arch, experts=experts))
    assert gap is None if expected is None else expected in gap
