"""The seed registry: one place that hands out configuration seeds, so that no controller is ever graded on a
configuration it (or the data it learned from) trained on, on any night.

Two guarantees, one structural and one recorded:
- **Training seeds are even, evaluation seeds odd.** A configuration drawn for training has its seed moved into
  the even class, one drawn for evaluation into the odd class, so the two purposes can never meet, whatever
  was drawn on which night, even without the table.
- **Evaluation seeds are used once.** Every seed handed out is a row of `seed_registry` in the warehouse
  (seed, purpose, night, what asked for it). An evaluation seed that any earlier night or study registered, or
  that any run in the warehouse carries (runs ingested before the registry existed had seeds of both classes),
  moves up by 2 until it is new. Asking again for the same night and source gives the same seeds: a killed
  night resumes on the very configurations it started.

The registry lives in the warehouse file (`seed_registry`, published in its snapshot like every table), so
`tamiyo sql` can answer "which seeds did night X train on".
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

TRAINING, EVALUATION = "training", "evaluation"
PURPOSES = (TRAINING, EVALUATION)

SCHEMA = """
CREATE TABLE IF NOT EXISTS seed_registry (
    seed          BIGINT PRIMARY KEY,
    purpose       VARCHAR NOT NULL,
    night         VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    registered_at TIMESTAMP DEFAULT current_timestamp
);
COMMENT ON TABLE seed_registry IS 'every configuration seed the nightly loop and the studies handed out: training seeds are even, evaluation seeds odd and used once (tamiyo_models/warehouse/seeds.py)';
COMMENT ON COLUMN seed_registry.seed IS 'the configuration seed (runs.seed of the episodes run on it, fresh data orders included)';
COMMENT ON COLUMN seed_registry.purpose IS 'training (episodes that learners may read) or evaluation (held-out configurations, scored on test)';
COMMENT ON COLUMN seed_registry.night IS 'the night (YYYY-MM-DD) or study that asked for it';
COMMENT ON COLUMN seed_registry.source IS 'what asked for it within the night: generation, evaluation, a study name';
COMMENT ON COLUMN seed_registry.registered_at IS 'when it was first handed out';
"""


class SeedRegistryError(RuntimeError):
    """A seed would serve both purposes, or a stored registry contradicts its own rules."""


def seed_class(seed: int, purpose: str) -> int:
    """`seed` moved into `purpose`'s class: even for training, odd for evaluation (never below 0)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown seed purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    base = int(seed) - int(seed) % 2
    return base if purpose == TRAINING else base + 1


def ensure_registry(con) -> None:
    con.execute(SCHEMA)


def claim_seeds(con, configs: Sequence, purpose: str, night: str, source: str) -> list:
    """The configurations with seeds of `purpose`, registered for (`night`, `source`), in the same order.

    `con` is a write connection to the warehouse. Training seeds may repeat across nights (the same
    configuration trained on twice is harmless); evaluation seeds never do (see the module docstring).
    """
    ensure_registry(con)
    registered = {int(s): (p, n, src) for s, p, n, src in
                  con.execute("SELECT seed, purpose, night, source FROM seed_registry").fetchall()}  # fmt: skip
    mine = {s for s, (p, n, src) in registered.items() if p == purpose and n == night and src == source}
    used_by_runs: set[int] = set()
    if purpose == EVALUATION and has_table(con, "runs"):
        used_by_runs = {int(s) for (s,) in con.execute("SELECT DISTINCT seed FROM runs WHERE seed IS NOT NULL").fetchall()}
    out, rows, taken_now = [], [], set()
    for config in configs:
        seed = seed_class(config.seed, purpose)
        if purpose == EVALUATION:
            while seed in taken_now or (seed not in mine and (seed in registered or seed in used_by_runs)):
                seed += 2
        elif seed in registered and registered[seed][0] != TRAINING:
            raise SeedRegistryError(f"seed {seed} is registered as {registered[seed][0]} ({registered[seed][1]}), "
                                    "but training seeds are even: the registry was written by another rule")  # fmt: skip
        taken_now.add(seed)
        if seed not in registered:
            rows.append((seed, purpose, night, source))
            registered[seed] = (purpose, night, source)
        out.append(dataclasses.replace(config, seed=seed))
    if rows:
        con.executemany("INSERT INTO seed_registry (seed, purpose, night, source) VALUES (?, ?, ?, ?)", rows)
    return out


def overlapping_seeds(con) -> list[int]:
    """Evaluation seeds that any training run in the warehouse also carries: what must always be empty."""
    if not has_table(con, "runs") or not has_table(con, "seed_registry"):
        return []
    return [int(s) for (s,) in con.execute(
        "SELECT DISTINCT r.seed FROM runs r JOIN seed_registry g ON r.seed = g.seed "
        "WHERE g.purpose = 'evaluation' ORDER BY 1").fetchall()]  # fmt: skip


def has_table(con, name: str) -> bool:
    """Whether the connection's database has this table (readers of an older or empty warehouse ask first)."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'",
                            [name]).fetchall()[0][0])  # fmt: skip
