"""A tiny shipped-policy folder for tests: a real (untrained) policy file and a model card in the shipped format."""

from __future__ import annotations

from pathlib import Path

SECTIONS = "\n\n".join(f"{s}\n\ntext" for s in ("## What it is", "## What it learned from", "## Measured", "## Where it stops"))


def card_text(name: str, spec: str = "smoke", study: str = "studies/digits-schedule-vs-heuristic.toml", body: str = SECTIONS) -> str:
    return (f'+++\nname = "{name}"\nspec = "{spec}"\nstudy = "{study}"\nsummary = "a test policy"\n+++\n'
            f"# {name}\n\n{body}\n")  # fmt: skip


def shipped_folder(folder: Path, name: str = "tiny", spec: str = "smoke", seed: int = 0) -> Path:
    """`folder` holding `<name>.pt` (an MLP actor on the base+lifecycle+task features) and its card."""
    import torch

    from tamiyo_models.agents import MLPActor, save_policy
    from tamiyo_models.world.features import FEATURE_SETS

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    features = FEATURE_SETS["base+lifecycle+task"]
    save_policy(MLPActor(len(features), (16,)), features, folder / f"{name}.pt", algorithm="test", phase="phase1")
    (folder / f"{name}.md").write_text(card_text(name, spec), encoding="utf-8")
    return folder
