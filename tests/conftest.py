import os

import pytest
import torch

# One thread: the suite runs on 2-core CI machines, and single-threaded CPU math keeps runs reproducible.
torch.set_num_threads(1)
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def tiny_config():
    """A few-second episode on the synthetic source."""
    from tamiyo_models.episodes.episode import EpisodeConfig
    from tamiyo_models.world.datasets import DatasetConfig

    return EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=6, seed=3)


def _fuzz_report() -> str | None:
    import sys

    module = sys.modules.get("test_warehouse_fuzz")
    return module.fuzz_report() if module else None


_WORKER_REPORTS: list[str] = []


def pytest_sessionfinish(session):
    """Under pytest-xdist (`pytest -n 2` on the whole suite) the fuzz suite ran in a worker: hand its line to the
    controller. (`make test` runs it in a process of its own, Makefile.)"""
    line = _fuzz_report()
    if line and hasattr(session.config, "workeroutput"):
        session.config.workeroutput["fuzz_report"] = line


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    line = getattr(node, "workeroutput", {}).get("fuzz_report")
    if line:
        _WORKER_REPORTS.append(line)


def pytest_terminal_summary(terminalreporter):
    """Say how many cases the hypothesis fuzz suite tried (tests/test_warehouse_fuzz.py), when it ran."""
    for line in [*_WORKER_REPORTS, _fuzz_report()]:
        if line:
            terminalreporter.write_line(line)
