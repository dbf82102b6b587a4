"""The CPU thread policy shared by tokenize, train and evaluate."""

import pytest
import torch

from sidrec import threads


@pytest.mark.parametrize("others, expected", [(0.0, 2), (1.0, 1), (2.0, 1), (5.0, 1)])
def test_auto_threads_use_the_cores_other_tasks_leave_free(monkeypatch, others, expected):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "other_runnable_tasks", lambda: others)
    try:
        assert threads.set_threads(0) == expected
        assert threads.set_threads(3) == 3  # an explicit count is used as given
    finally:
        torch.set_num_threads(before)


def test_other_runnable_tasks_excludes_the_reader(monkeypatch, tmp_path):
    real_open = open
    fake = tmp_path / "loadavg"
    fake.write_text("0.50 0.40 0.30 3/120 4242\n")
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(fake if p == "/proc/loadavg" else p, *a, **k))
    assert threads.other_runnable_tasks(samples=3) == 2.0
