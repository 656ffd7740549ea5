"""The CI guard: a suite whose real component is missing fails in CI and skips (with the hint) locally."""

from __future__ import annotations

import pytest

import conftest


class FakeItem:
    def __init__(self, *markers):
        self.markers = set(markers)

    def get_closest_marker(self, name):
        return name if name in self.markers else None


@pytest.fixture
def absent_go(monkeypatch):
    what, hint, _ = conftest.REAL_COMPONENTS["requires_go"]
    monkeypatch.setitem(conftest.REAL_COMPONENTS, "requires_go", (what, hint, lambda: False))


def test_missing_component_fails_in_ci(absent_go, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Go is missing .*required in CI"):
        conftest.pytest_runtest_setup(FakeItem("requires_go"))


def test_missing_component_skips_locally_with_the_hint(absent_go, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install golang-go"):
        conftest.pytest_runtest_setup(FakeItem("requires_go"))


def test_unmarked_tests_and_present_components_run(monkeypatch):
    monkeypatch.setenv("CI", "1")
    monkeypatch.setitem(conftest.REAL_COMPONENTS, "requires_go", ("Go", "hint", lambda: True))
    conftest.pytest_runtest_setup(FakeItem("requires_go"))  # present: nothing raised
    conftest.pytest_runtest_setup(FakeItem("slow"))         # not a real-component test
