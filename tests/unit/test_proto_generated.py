"""The committed generated code matches what `make proto` produces from the .proto."""

from __future__ import annotations

from pathlib import Path

from tools.gen_proto import GENERATED_SUFFIXES, PROTO_ROOT, generate, proto_files


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    generate(tmp_path)
    produced = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert produced, "protoc produced nothing"
    committed = sorted(
        p.relative_to(PROTO_ROOT)
        for p in PROTO_ROOT.rglob("*")
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    )
    assert committed == produced, "generated files differ in name: run `make proto`"
    for rel in produced:
        assert (PROTO_ROOT / rel).read_bytes() == (tmp_path / rel).read_bytes(), (
            f"{rel} is out of date with its .proto: run `make proto`"
        )


def test_every_proto_has_generated_code() -> None:
    for proto in proto_files():
        stem = proto.with_suffix("")
        for suffix in GENERATED_SUFFIXES:
            assert Path(f"{stem}{suffix}").exists(), f"missing {stem}{suffix}: run `make proto`"
