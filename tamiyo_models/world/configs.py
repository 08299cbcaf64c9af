"""Reading configuration dataclasses back from dictionaries (specs, stored run headers)."""

from __future__ import annotations

from typing import Mapping


def known_fields(cls: type, d: Mapping, what: str) -> dict:
    """A copy of `d` once every key is checked to be a field of the dataclass `cls`: a typo in a spec or a
    stored configuration fails loudly, naming the key, instead of being silently ignored."""
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        known = ", ".join(sorted(cls.__dataclass_fields__))
        raise ValueError(f"unknown {what}: {', '.join(sorted(unknown))} (known: {known})")
    return dict(d)
