"""Docs that cannot drift: the CLI reference, the README's two commands, CI's test command."""

from __future__ import annotations

import argparse
from pathlib import Path

from seawatch.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _commands(p: argparse.ArgumentParser, path: str) -> list[tuple[str, list[str]]]:
    out = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out.extend(_commands(child, f"{path} {name}"))
    if not out:
        options = [o for a in p._actions for o in a.option_strings if o.startswith("--")]
        out.append((path, options))
    return out


def test_cli_reference_documents_every_command_and_option() -> None:
    """Exact help text varies between Python versions; commands and options must not."""
    doc = (ROOT / "docs" / "cli.md").read_text()
    commands = _commands(build_parser(), "seawatch")
    assert len(commands) >= 4
    for path, options in commands:
        section = doc.split(f"## `{path}`", 1)
        assert len(section) == 2, f"{path} is missing from docs/cli.md: regenerate it"
        body = section[1].split("\n## ", 1)[0]
        for option in options:
            assert option in body, f"{path} {option} is missing from docs/cli.md"


def test_readme_quick_start_has_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("## ", 1)[0]
    block = quick.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./run demo", "./run test"]
    assert "./run test" in (ROOT / ".ci" / "run").read_text()
