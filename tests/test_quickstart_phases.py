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
