"""The command-line reference, docs/cli.md, written from the `tamiyo` parser itself so that it cannot drift from
the code: every command and subcommand with its `--help`, options, defaults and choices.

    python -m tamiyo_models.cli_reference              # print it
    python -m tamiyo_models.cli_reference --write      # rewrite docs/cli.md (tests/test_cli_reference.py
                                                       # fails while the file differs from this output)

Hand-written rather than a Sphinx extension (sphinx-argparse): the project's docs are plain Markdown read on
the forge, and the output here is `--help` itself, fixed at 100 columns so it reads the same on every terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .cli import build_parser

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
WIDTH = "100"

HEADER = """# Command-line reference

Written by `python -m tamiyo_models.cli_reference --write` from the parser itself; do not edit by hand
(`tests/test_cli_reference.py` fails when this file and the code differ). What each command is for, with worked
examples, is in the README and the other docs; this page is every option of every command.

"""


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(the command's words, e.g. "curriculum run"; its one-line help; its parser), depth first, in the order
    they were registered. argparse keeps subparsers in a private action type; this is the one place that reads it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                words = sub.prog.split(" ", 1)[1] if " " in sub.prog else name
                yield words, helps.get(name, ""), sub
                yield from subcommands(sub)


@contextmanager
def _fixed_width():
    """argparse wraps help to the terminal's width (COLUMNS): fixed here, so the reference is the same everywhere."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def reference() -> str:
    with _fixed_width():
        parser = build_parser()
        commands = list(subcommands(parser))
        parts = [HEADER, "| command | what it does |\n|---|---|\n"]
        for words, one_line, _ in commands:
            parts.append(f"| [`tamiyo {words}`](#{_anchor(words)}) | {one_line.replace('|', '/')} |\n")
        parts.append(f"\n## `tamiyo`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        for words, _, sub in commands:
            parts.append(f"\n## `tamiyo {words}`\n\n```text\n{sub.format_help().rstrip()}\n```\n")
    return "".join(parts)


def _anchor(words: str) -> str:
    """The heading's anchor as GitHub and GitLab write it (backticks dropped, spaces to hyphens; the command words
    are lower case already)."""
    return "tamiyo-" + words.replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description="print or rewrite the command-line reference (docs/cli.md)")
    args.add_argument("--write", action="store_true", help=f"rewrite {DOC} instead of printing")
    write = args.parse_args(argv).write
    text = reference()
    if not write:
        sys.stdout.write(text)
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
