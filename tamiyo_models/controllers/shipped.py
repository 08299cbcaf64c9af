"""Policies that ship with the package: the best ones found so far, each a small policy file with a model card.

`tamiyo_models/shipped/<name>.pt` is a saved policy (agents.saved format); `<name>.md` beside it is its card,
which opens with a TOML block between `+++` lines and then says, under fixed headings, what the policy is, what
it learned from, what was measured (numbers from a study file, never typed from memory) and where it stops:

    +++
    name = "vine-region-arena"
    spec = "arena"                       # the spec whose action space and task it was trained for
    study = "studies/phase4-vine-region-arena.toml"
    summary = "one line"
    +++
    # ...
    ## What it is / ## What it learned from / ## Measured / ## Where it stops

A shipped policy is named `shipped:<name>` everywhere a controller or policy is: `tamiyo evaluate shipped:NAME`,
`--references shipped:NAME`, reference grids, and the first night of a warehouse, which takes every policy
shipped for its spec as a challenger (nightly.night). Nothing is retrained: the file is the policy.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "shipped"
PREFIX = "shipped:"
CARD_SECTIONS = ("## What it is", "## What it learned from", "## Measured", "## Where it stops")
_CARD_KEYS = {"name", "spec", "study", "summary"}


class ShippedPolicyError(ValueError):
    """A shipped policy that is unknown, or whose card is missing or malformed (names the file)."""


@dataclass(frozen=True)
class ShippedPolicy:
    name: str
    path: Path  # the policy file
    card: Path  # its model card
    spec: str
    study: str
    summary: str

    @property
    def label(self) -> str:
        return PREFIX + self.name


def read_card(card: Path, name: str | None = None) -> dict:
    """The card's TOML block, checked: its keys, its name matching the file's (or `name`), its required sections."""
    text = card.read_text(encoding="utf-8")
    if not text.startswith("+++\n") or "\n+++\n" not in text[3:]:
        raise ShippedPolicyError(f"{card}: a model card opens with a TOML block between '+++' lines")
    block, _, body = text[4:].partition("\n+++\n")
    try:
        meta = tomllib.loads(block)
    except tomllib.TOMLDecodeError as exc:
        raise ShippedPolicyError(f"{card}: the card's TOML block: {exc}") from None
    missing, unknown = _CARD_KEYS - set(meta), set(meta) - _CARD_KEYS
    if missing or unknown:
        raise ShippedPolicyError(f"{card}: card keys {', '.join(sorted(missing))} missing" if missing
                                 else f"{card}: unknown card key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_CARD_KEYS))}")  # fmt: skip
    if meta["name"] != (name or card.stem):
        raise ShippedPolicyError(f"{card}: name = {meta['name']!r}, but the card is for {name or card.stem} (they must match)")
    absent = [s for s in CARD_SECTIONS if f"\n{s}\n" not in f"\n{body}"]
    if absent:
        raise ShippedPolicyError(f"{card}: the card lacks the section(s) {', '.join(repr(s) for s in absent)}")
    return meta


def valid_name(name: str) -> bool:
    """A shipped name is a file stem: letters, digits, '-' and '_' (never a path)."""
    return bool(name) and all(ch.isalnum() or ch in "-_" for ch in name)


def read_shipped(path: Path) -> ShippedPolicy:
    """The shipped policy of a policy file, from its card beside it."""
    card = path.with_suffix(".md")
    if not card.exists():
        raise ShippedPolicyError(f"{path}: a shipped policy needs its model card {card.name} beside it")
    meta = read_card(card)
    return ShippedPolicy(meta["name"], path, card, meta["spec"], meta["study"], meta["summary"])


def shipped_policies(spec: str | None = None, folder: Path | None = None) -> list[ShippedPolicy]:
    """Every policy shipped (for the spec named `spec`, when given), by name; a policy file without a card is refused."""
    folder = SHIPPED_DIR if folder is None else Path(folder)
    found = [read_shipped(path) for path in sorted(folder.glob("*.pt"))] if folder.is_dir() else []
    return [p for p in found if spec is None or p.spec == spec]


def shipped_policy(name: str, folder: Path | None = None) -> ShippedPolicy:
    """`name` or `shipped:name` -> the shipped policy (only its own card is read); ShippedPolicyError listing the
    shipped names when there is none of that name."""
    folder = SHIPPED_DIR if folder is None else Path(folder)
    name = name.removeprefix(PREFIX)
    if not valid_name(name):
        raise ShippedPolicyError(f"shipped policy name {name!r}: letters, digits, '-' and '_' only")
    path = folder / f"{name}.pt"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []
        raise ShippedPolicyError(f"no shipped policy {name!r}; shipped: {', '.join(known) or 'none'} (in {folder})")
    return read_shipped(path)
