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


def from_mapping(cls: type, data: Mapping, where: str, base=None):
    """A (nested) configuration dataclass from a mapping such as a TOML table: a field left out keeps its default,
    a field that is itself a dataclass is read from a sub-table, lists become tuples. `where` names the source
    (a file and its table) in every error, with the dotted key: "study.toml: train.settings: unknown key iql.tua".

    Defaults come from `base` (else `cls()`), so a nested table changes only the keys it names: a parent whose
    default for a nested config is not that config's own default (OnlineRunConfig's PPO has a KL penalty, a bare
    PPOConfig none) keeps the parent's."""
    import dataclasses
    import typing

    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a table of {cls.__name__} settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} of {cls.__name__} (known: {', '.join(sorted(fields))})")
    if base is None:
        try:
            base = cls()
        except TypeError:  # a config with required fields: only what the mapping gives
            base = None
    values = {}
    for name, value in data.items():
        kind = hints[name]
        nested = next((t for t in (kind, *typing.get_args(kind)) if dataclasses.is_dataclass(t)), None)
        if nested is not None and isinstance(value, Mapping):
            inner = getattr(base, name, None) if base is not None else None
            values[name] = from_mapping(nested, value, f"{where}.{name}", inner if isinstance(inner, nested) else None)
        elif isinstance(value, list):
            values[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
        else:
            values[name] = value
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
