import os

import pytest
import torch

# One thread: the suite runs on 2-core CI machines, and single-threaded CPU math keeps runs reproducible.
torch.set_num_threads(1)
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def tiny_config():
    """A few-second episode on the synthetic source."""
    from tamiyo_models.datasets import DatasetConfig
    from tamiyo_models.episode import EpisodeConfig

    return EpisodeConfig(dataset=DatasetConfig(name="synthetic"), max_epochs=6, seed=3)


def pytest_terminal_summary(terminalreporter):
    """Say how many cases the hypothesis fuzz suite tried (tests/test_warehouse_fuzz.py), when it ran."""
    import sys

    module = sys.modules.get("test_warehouse_fuzz")
    line = module.fuzz_report() if module else None
    if line:
        terminalreporter.write_line(line)
