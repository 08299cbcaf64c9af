"""docs/cli.md is the `tamiyo` parser's own help, so a new option cannot go undocumented: the file must equal
what `python -m tamiyo_models.cli_reference` writes, and every option must say what it does."""

from __future__ import annotations

import argparse
import subprocess
import sys

from tamiyo_models.cli import build_parser
from tamiyo_models.cli_reference import DOC, reference, subcommands


def test_the_reference_in_docs_is_the_parsers_own_help():
    assert DOC.read_text() == reference(), (
        f"{DOC} differs from the parser: run `python -m tamiyo_models.cli_reference --write` and commit the file"
    )


def test_every_command_and_option_is_in_the_reference_with_a_help_text():
    text = DOC.read_text()
    missing_help, missing_doc = [], []
    commands = list(subcommands(build_parser()))
    assert {"generate", "train", "coverage", "curriculum run"} <= {words for words, _, _ in commands}
    for words, one_line, parser in commands:
        if f"## `tamiyo {words}`" not in text or not one_line:
            missing_doc.append(words)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            if not action.help:
                missing_help.append(f"tamiyo {words} {name}")
    assert not missing_doc, f"commands without a section or a one-line help: {missing_doc}"
    assert not missing_help, f"options without a help text: {missing_help}"


def test_the_reference_is_the_same_whatever_the_terminal_width():
    """argparse wraps to COLUMNS: the reference fixes it, so a narrow terminal writes the same file."""
    code = "from tamiyo_models.cli_reference import reference; import sys; sys.stdout.write(reference())"
    narrow = subprocess.run([sys.executable, "-c", code], env={"COLUMNS": "40", "PATH": ""}, capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert narrow.stdout == DOC.read_text()
