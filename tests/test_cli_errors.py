"""Command-line errors: each is one line on stderr that names the thing, no traceback, a non-zero exit; and
the options listed in issue 15 have help text."""

from __future__ import annotations


import pytest

import legacy_fixtures as L
from tamiyo_models.cli import build_parser, main


def _fails(argv: list[str], capsys, *expected: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0, (argv, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_sql_with_a_missing_query_file(tmp_path, capsys):
    _fails(["sql", "--warehouse", str(tmp_path / "w.duckdb"), "--file", str(tmp_path / "missing.sql")], capsys,
           "tamiyo sql", "missing.sql")  # fmt: skip


@pytest.mark.parametrize("episodes", ["0", "-3"])
def test_generate_refuses_no_episodes(episodes, tmp_path, capsys):
    _fails(["generate", "--episodes", episodes, "--out", str(tmp_path / "raw")], capsys, "--episodes", episodes)
    assert not (tmp_path / "raw").exists()


def test_an_unknown_dataset_is_reported_once_before_starting(tmp_path, capsys):
    _fails(["generate", "--dataset", "nosuch", "--episodes", "3", "--out", str(tmp_path / "raw"), "--quiet"], capsys,
           "unknown dataset 'nosuch'")  # fmt: skip
    assert not (tmp_path / "raw").exists()


def test_a_spec_key_typo_in_a_variation_names_the_key(tmp_path, capsys):
    spec = tmp_path / "typo.toml"
    spec.write_text('name = "typo"\n[base]\nmax_epochs = 3\n[vary]\n"host.width" = [[2, 4, 8]]\n')
    _fails(["generate", "--spec", str(spec), "--out", str(tmp_path / "raw")], capsys, "typo.toml", "vary.host.width", "width")


def test_a_controller_settings_typo_is_caught_even_if_never_sampled(tmp_path, capsys):
    spec = tmp_path / "rare.toml"
    spec.write_text('name = "rare"\n[base]\nmax_epochs = 3\n'
                    '[[controllers]]\nkind = "heuristic"\nweight = 0.999\n'
                    '[[controllers]]\nkind = "epsilon-heuristic"\nepsilonn = 0.2\nweight = 0.001\n')  # fmt: skip
    _fails(["generate", "--spec", str(spec), "--episodes", "1", "--out", str(tmp_path / "raw")], capsys,
           "rare.toml", "controllers[1]", "epsilonn")  # fmt: skip


def test_story_on_a_legacy_file_says_what_it_is(tmp_path, capsys):
    path = L.write(tmp_path / "episode_0001.json", L.episode(1, [40.0, 50.0]))
    _fails(["story", str(path)], capsys, "episode_0001.json", "not a raw run", "tamiyo ingest")
    _fails(["story", str(tmp_path / "nope.jsonl")], capsys, "nope.jsonl")


def test_lineage_in_an_empty_folder_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails(["lineage", "tamiyo-phase1-imitation@candidate"], capsys, "tamiyo lineage", "var/mlflow/mlflow.db")
    _fails(["evaluate", "tamiyo-phase1-imitation@candidate"], capsys, "tamiyo evaluate", "var/mlflow/mlflow.db")
    assert list(tmp_path.iterdir()) == []


def test_every_option_of_every_command_has_help_text():
    from tamiyo_models.cli_reference import subcommands

    missing = [(words, o) for words, _, parser in subcommands(build_parser()) for a in parser._actions
               for o in a.option_strings[:1] if not a.help]  # fmt: skip
    assert missing == []