"""Generate the Python gRPC code for proto/strata/v1/*.proto (run by `make proto`).

`python -m tools.gen_proto [--out DIR]` writes cache_pb2.py, cache_pb2.pyi and
cache_pb2_grpc.py next to the .proto (or under DIR, for the freshness test). The output
depends only on the .proto files and the pinned grpcio-tools version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    """The contract's .proto files, sorted for a stable output."""
    return sorted((PROTO_ROOT / "strata").rglob("*.proto"))


def generate(out: Path) -> None:
    """Run protoc (from grpcio-tools) over every .proto into `out` (same relative layout)."""
    from grpc_tools import protoc  # noqa: PLC0415 - a build-time dependency only

    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    ns = parser.parse_args(argv)
    generate(ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
