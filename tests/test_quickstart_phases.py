"""The quickstart's per-phase timings (run.json "quickstart" -> "phases"): fast, no model."""

import time

import pytest

from ducktune.quickstart import PhaseClock


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_phase_clock_records_wall_and_cpu_seconds_in_order():
    clock = PhaseClock()
    with clock.phase("waiting"):
        time.sleep(0.3)
    with clock.phase("working"):
        _busy(0.3)
    assert [p["phase"] for p in clock.phases] == ["waiting", "working"]
    waiting, working = clock.phases
    assert waiting["wall_s"] >= 0.29 and waiting["cpu_s"] < 0.1  # sleeping costs no CPU
    assert working["cpu_s"] >= 0.29
    assert "waiting 0 s (" in clock.summary() and "working" in clock.summary()


def test_phase_clock_records_a_phase_that_failed():
    clock = PhaseClock()
    with pytest.raises(ValueError):
        with clock.phase("broken"):
            raise ValueError("stop")
    assert [p["phase"] for p in clock.phases] == ["broken"]


def test_bleed_report_uses_the_engine_it_is_given(tiny_qwen, tmp_path, monkeypatch):
    """The quickstart answers the comparison and the bleed prompts with one engine: persona_bleed
    given that engine loads no second copy of the model."""
    import json

    from peft import LoraConfig, get_peft_model

    from ducktune.chat.engine import ChatEngine
    from ducktune.config import load_config
    from ducktune.data.template import ChatFormat
    from ducktune.models.device import choose_placement
    from ducktune.models.loading import load_model, load_tokenizer
    from ducktune.quickstart import persona_bleed

    monkeypatch.setenv("DUCKTUNE_HOME", str(tmp_path / "cache"))

    def no_second_load(*args, **kwargs):
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(ChatEngine, "from_run", no_second_load)
    tokenizer = load_tokenizer(tiny_qwen)
    model = get_peft_model(load_model(tiny_qwen, choose_placement("cpu", "float32", 1)),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    engine = ChatEngine(model, tokenizer, ChatFormat(tokenizer), has_adapter=True)
    config = load_config(None, ["eval.max_new_tokens=3"])
    config.eval.persona_terms = ["Duckling"]
    (tmp_path / "run").mkdir()
    bleed = persona_bleed(tmp_path / "run", config, ["I am Duckling, made by the ducktune team."], engine=engine)
    assert bleed["prompts"] >= 50 and len(bleed["rows"]) == bleed["prompts"] and bleed["mean_kl"] > 0
    written = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text(encoding="utf-8"))
    assert written["bleed"]["prompts"] == bleed["prompts"]


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "error: --epochs 0.0: Input should be greater than 0"),
    (["--replay", "5"], "error: --replay 5.0: Input should be less than or equal to 1"),
    (["--method", "dpo", "--adapter", "no-such-run"], "error: model.adapter: no-such-run: no LoRA adapter there"),
    (["--out", "a-file"], "error: a-file: is a file; pass --out with a folder"),
])
def test_quickstart_flags_are_checked_before_anything_is_written(tmp_path, monkeypatch, capsys, argv, message):
    from ducktune.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    # On a fresh machine resolving the built-in model builds it (minutes, a progress bar): never for a bad flag
    monkeypatch.setattr("ducktune.models.sources.resolve_model",
                        lambda *args, **kwargs: pytest.fail("the base model was resolved before the flags were checked"))
    assert main(["quickstart", "--no-export", *argv]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(message) and "Traceback" not in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no data file, no run folder
