"""The built distribution (what both Docker images install) carries every product package.

`make install` installs the project in editable mode, which finds packages on disk and so
hides a package missing from pyproject.toml; this test compares the declared list with the
packages on disk instead of building a wheel.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return set(tomllib.load(f)["tool"]["setuptools"]["packages"])


def _on_disk(top: str, as_name: str | None = None) -> set[str]:
    base = ROOT / top
    found = set()
    for init in base.rglob("__init__.py"):
        if "__pycache__" in init.parts:
            continue
        parts = init.parent.relative_to(base).parts
        found.add(".".join((as_name or top, *parts)))
    return found


def test_every_product_package_is_in_the_distribution() -> None:
    on_disk = _on_disk("sidecar") | _on_disk("kong_plugin") | _on_disk("proto/strata", "strata")
    assert on_disk <= _declared(), sorted(on_disk - _declared())


def test_the_distribution_declares_no_package_that_does_not_exist() -> None:
    on_disk = _on_disk("sidecar") | _on_disk("kong_plugin") | _on_disk("proto/strata", "strata")
    assert _declared() <= on_disk, sorted(_declared() - on_disk)
