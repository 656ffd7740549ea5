"""The training progress bar shows the loss of the step it has just counted."""

from __future__ import annotations

from types import SimpleNamespace

from ducktune.train.callbacks import ProgressBar


def test_the_bar_shows_the_loss_logged_at_its_step(capsys):
    """The Trainer ends a step (the bar moves to 4/6) and then logs it: the postfix was set without
    a redraw, so the screen showed step 3's loss at 4/6 until the next step."""
    bar = ProgressBar()
    state = SimpleNamespace(is_world_process_zero=True, max_steps=6, global_step=3)
    bar.on_train_begin(None, state, None)
    bar.on_log(None, state, None, logs={"loss": 0.6341})
    state.global_step = 4
    bar.on_step_end(None, state, None)
    bar.on_log(None, state, None, logs={"loss": 0.4529})
    last = capsys.readouterr().err.split("\r")[-1]
    assert "4/6" in last and "loss=0.4529" in last
    bar.on_train_end(None, state, None)
