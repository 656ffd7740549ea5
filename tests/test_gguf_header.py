"""export.verify.gguf_string_field: one header field without parsing the whole file (fast, no model)."""

import pytest


def _write(path, arch="llama"):
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_uint32("some.count", 7)
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
