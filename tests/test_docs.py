"""The README cannot drift from the code: every setting, every command and every
command-line option is documented, and its figure tables are the ones the results
files make (Datasette's tests/test_docs.py does the same for its settings)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import Settings
from triage.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = README + "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


COMMANDS = list(_subcommands(build_parser()))


@pytest.mark.parametrize("setting", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme(setting: str):
    assert re.search(rf"`{setting.upper()}`", README), f"TRIAGE_{setting.upper()} is not in the README's settings table"


@pytest.mark.parametrize("command", sorted({" ".join(c) for c, _ in COMMANDS}))
def test_every_command_is_in_the_readme(command: str):
    words = command.split()
    pattern = r"triage\s+" + re.escape(words[0]) + "".join(r"\b.*?\b" + re.escape(w) for w in words[1:])
    assert re.search(pattern, README), f"`triage {command}` is not in the README"


@pytest.mark.parametrize("command, option", sorted({
    (" ".join(c), opt) for c, sub in COMMANDS for action in sub._actions for opt in action.option_strings
    if opt.startswith("--") and opt != "--help"}))
def test_every_option_is_documented(command: str, option: str):
    line = re.compile(r"triage\s+" + re.escape(command.split()[0]) + r"\b[^\n]*(\n\s{8,}[^\n]*)*")
    documented = any(option in m.group(0) for m in line.finditer(DOCS))
    assert documented, f"`triage {command} {option}` is in no usage line of the README or docs/"


def test_the_readme_tables_are_the_ones_the_results_make():
    checked = subprocess.run([sys.executable, "benchmarks/readme_tables.py", "--check"], cwd=ROOT,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_env_file_quoting_the_deployment_doc_advises_gives_sh_and_the_service_one_value(tmp_path: Path):
    # The doc said to double-quote a value with `$`: systemd took it as written, while the
    # admin commands, which read the file with sh, got `$...` replaced, e.g. another password.
    deployment = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    quote = {"single": "'", "double": '"'}[re.search(r"Put a value in (single|double) quotes", deployment)[1]]
    value = "pa$s w&o;rd"
    env = tmp_path / "env"
    env.write_text(f"TRIAGE_SESSION_SECRET={quote}{value}{quote}\n", encoding="utf-8")
    read_by_sh = subprocess.run(["sh", "-c", 'set -a; . "$1"; printf %s "$TRIAGE_SESSION_SECRET"', "sh", str(env)],
                                capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    assert read_by_sh == value
    assert Settings(_env_file=env).session_secret == value
