"""`strata VERB`: dispatch to the verb's module, clear errors for anything else."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sidecar.commands import VERBS, main


def test_no_verb_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: strata VERB" in capsys.readouterr().err


def test_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert f"  {verb} " in out


def test_unknown_verb_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["purgee", "--tag", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown verb 'purgee'" in err
    assert "purge" in err


def test_sidecar_verb_runs_the_sidecar_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sidecar", "--print-config", "--namespace", "viaverb"]) == 0
    assert json.loads(capsys.readouterr().out)["namespace"] == "viaverb"


def test_every_verb_module_has_a_main() -> None:
    """Each verb imports and answers --help in a process of its own (exit 0)."""
    for verb in VERBS:
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from sidecar.commands import entry; entry()",
             verb, "--help"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, (verb, done.stderr[-500:])
        assert "usage" in done.stdout.lower(), verb
