"""The deployment files (docker-compose.yml, deploy/) stay valid and in step with the code.

Static checks only: no Docker engine is needed and nothing is started or reached over the
network. The real tools check what they can: docker-compose 1.29 validates the compose file,
`nginx -t` the load balancer config, `promtool` the Prometheus config and the dashboard's
PromQL. The rest is checked against the code: sidecar settings (`sidecar.config`), metric
names (the sidecar's collectors and `kong_plugin.plugin_metrics.METRIC_NAMES`), the plugin's
config parser and the repository's `kong.yml`. The alert rules are tested in
`test_deploy_alerts.py`, the containers' command lines in `test_deploy_commands.py`.

nginx: `deploy/nginx/nginx.conf` names its upstreams by compose service (`server
kong-1:8000`), which only resolves on the compose network, and nginx resolves `server`
names when it reads its config. So `nginx -t` runs on a copy in a temporary prefix where
those names are replaced by 127.0.0.1; the rest of the file is checked as it is.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from kong_plugin.config import parse_config
from sidecar.analytics.metrics import AnalyticsCollector
from sidecar.analytics.service import AnalyticsStats
from sidecar.cluster.kafka_bus import BusStats
from sidecar.config import (
    CONFIG_FILE_ENV,
    ENV_PREFIX,
    FOREIGN_ENV_PREFIXES,
    SETTING_NAMES,
    load_config,
)
from sidecar.core.model import TierSnapshot
from sidecar.observability.event_metrics import BusCollector
from sidecar.observability.metrics import PrometheusObserver, TierCollector

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
PROMETHEUS_CONF = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "strata.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
KONG_YML = ROOT / "kong.yml"
DEPLOY_KONG_YML = DEPLOY / "kong" / "kong.yml"

#: One Kong node per sidecar, paired by number.
NODES = (("kong-1", "sidecar-1"), ("kong-2", "sidecar-2"))
SOCKET_DIR = "/run/strata"
SOCKET_ADDRESS = f"unix:{SOCKET_DIR}/sidecar.sock"
#: The sidecar image's user, which the plugin checks on the socket (sidecar.uid).
SIDECAR_UID = 10001
UPSTREAM_URL = "http://upstream:9000"
#: The plugin server's /metrics port on the compose network (--metrics-listen).
PLUGIN_METRICS_LISTEN = "0.0.0.0:9465"
#: The panels the dashboard must have, by the metric they show: every alert's signal
#: (deploy/prometheus/rules/strata.yml), bytes by tier, the plugin's decisions, analytics.
DASHBOARD_METRICS = {
    "strata_plugin_requests_total",
    "strata_plugin_bypass_total",
    "strata_plugin_hits_total",
    "strata_plugin_stores_total",
    "strata_plugin_pdk_seconds",
    "strata_plugin_phase_seconds",
    "strata_plugin_background_queue_jobs",
    "strata_plugin_background_jobs_total",
    "strata_plugin_near_cache_lookups_total",
    "strata_plugin_near_cache_bytes",
    "strata_plugin_workers",
    "strata_plugin_worker_restarts_total",
    "strata_plugin_analytics_events_total",
    "strata_plugin_analytics_dropped_total",
    "strata_lookups_total",
    "strata_tier_bytes",
    "strata_tier_max_bytes",
    "strata_rejected_requests_total",
    "strata_tier_circuit_state",
    "strata_invalidation_apply_lag_seconds",
    "strata_invalidation_outbox_events",
    "strata_invalidation_outbox_dropped_total",
    "strata_invalidation_consumer_ready",
    "strata_analytics_events_received_total",
    "strata_analytics_events_published_total",
    "strata_analytics_events_dropped_total",
    "strata_tier_logical_bytes",
    "strata_tier_body_bytes",
    "strata_tier_written_bytes_total",
    "strata_admission_refused_bytes_total",
    "strata_served_body_bytes_total",
}
#: Suffixes of the series a histogram exports.
_HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")

#: `$$`, `${NAME}`, `${NAME:-default}` or `${NAME-default}` in a compose value.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
)
_METRIC = re.compile(r"\bstrata_[a-z0-9_]+\b")


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _compose() -> dict[str, Any]:
    data = _load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _defaults(value: str) -> str:
    """`value` as Compose would interpolate it with none of the variables set."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        default = m.group("default")
        assert default is not None, f"${{{m.group('name')}}} has no default: {value!r}"
        return default

    return _INTERPOLATION.sub(sub, value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _volume_at(service: dict[str, Any], target: str) -> str:
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        if rest.split(":")[0] == target:
            return source
    raise AssertionError(f"no volume mounted at {target}")


def _run(argv: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _tool(name: str, *fallbacks: str) -> str:
    for candidate in (shutil.which(name), *fallbacks):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip(f"{name} is not installed (the Makefile's Debian packages provide it)")


# --- docker-compose.yml ---------------------------------------------------------------------


def test_compose_file_is_valid_for_docker_compose_1_29() -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip(
            "the docker-compose binary (1.29, Debian package docker-compose) is not installed"
        )
    result = _run([exe, "-f", str(COMPOSE_FILE), "config", "-q"])
    assert result.returncode == 0, result.stderr + result.stdout


def test_every_published_port_is_bound_to_loopback() -> None:
    published = []
    for name, service in _services().items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            assert host_ip == "127.0.0.1", f"{name} publishes {port!r} beyond 127.0.0.1"
            published.append(name)
    assert "nginx" in published
    for kong, sidecar in NODES:  # reached through nginx / the compose network only
        assert kong not in published and sidecar not in published


def test_sidecar_environment_is_known_settings_and_loads() -> None:
    services = _services()
    node_ids = set()
    for _, name in NODES:
        env = _environment(services[name])
        for key in env:
            assert key.startswith(ENV_PREFIX), f"{name}: {key} is not a sidecar setting"
            assert key != CONFIG_FILE_ENV and not key.startswith(FOREIGN_ENV_PREFIXES), key
            setting = key[len(ENV_PREFIX) :].lower()
            assert setting in SETTING_NAMES, f"{name}: {key} names no sidecar setting"
        # With the documented defaults, the sidecar accepts the whole environment.
        cfg = load_config({k: _defaults(v) for k, v in env.items()})
        assert cfg.listen == SOCKET_ADDRESS
        assert cfg.metrics_listen == "0.0.0.0:9464"
        assert cfg.redis_url.startswith("redis://") and "@redis:6379" in cfg.redis_url
        assert "@postgres:5432/strata" in cfg.postgres_dsn
        assert cfg.log_format == "ecs"
        assert cfg.memcached_servers == "memcached:11211"
        assert cfg.kafka_bootstrap == "kafka:9092"
        assert cfg.analytics_topic == "strata.access"
        # Offsets on the invalidation topic are per node id: stable and distinct per sidecar.
        assert cfg.node_id == name
        node_ids.add(cfg.node_id)
    assert len(node_ids) == len(NODES)


def test_no_secret_is_hard_coded_beyond_local_dev_defaults() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for variable in ("REDIS_PASSWORD", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert f"${{{variable}:-" in text, f"{variable} is not taken from the environment"
    for m in re.finditer(r"(?m)^\s*(\w*PASSWORD\w*):\s*(.+)$", text):
        assert m.group(2).startswith("${"), f"{m.group(1)} is hard-coded"
    for m in re.finditer(r"redis://[^@\s]*@|postgresql://[^@\s]*@", text):
        assert "${" in m.group(0), f"credentials hard-coded in {m.group(0)}"


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in _services().items():
        image = str(service["image"])
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        assert re.match(r"v?\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"


def test_memcached_is_memory_bound_and_on_the_compose_network_only() -> None:
    memcached = _services()["memcached"]
    assert re.fullmatch(r"memcached:1\.6\.\d+", memcached["image"])
    assert "ports" not in memcached
    command = memcached["command"]
    assert command[0] == "memcached"
    assert int(command[command.index("-m") + 1]) > 0  # megabytes of item memory
    port = _environment(_services()["sidecar-1"])["STRATA_MEMCACHED_SERVERS"].rpartition(":")[2]
    assert memcached["expose"] == [port] == ["11211"]


def test_kafka_is_one_kraft_node_on_the_compose_network_only() -> None:
    services = _services()
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", kafka["image"])
    assert "ports" not in kafka
    env = _environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    controller_host = listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]].rpartition(":")[0]
    assert controller_host == "127.0.0.1"  # the controller is not even on the compose network
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
        f"{env['KAFKA_NODE_ID']}@{listeners[env['KAFKA_CONTROLLER_LISTENER_NAMES']]}"
    )
    bootstrap = _environment(services["sidecar-1"])["STRATA_KAFKA_BOOTSTRAP"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{bootstrap}"
    assert listeners["PLAINTEXT"] == "0.0.0.0:" + bootstrap.rpartition(":")[2]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # kafka-init creates them
    # A KRaft cluster id: 16 bytes, URL-safe base64 without padding.
    cluster_id = _defaults(env["CLUSTER_ID"])
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert _volume_at(kafka, env["KAFKA_LOG_DIRS"]) in _compose()["volumes"]


def test_sidecars_start_after_the_topics_exist() -> None:
    services = _services()
    init = services["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init.get("restart") == "no"
    for _, sidecar in NODES:
        depends = services[sidecar]["depends_on"]
        assert depends["kafka-init"]["condition"] == "service_completed_successfully"
        for tier in ("redis", "memcached", "postgres"):
            assert depends[tier]["condition"] == "service_healthy"


def test_each_kong_node_shares_a_socket_volume_with_its_own_sidecar() -> None:
    services = _services()
    volumes = _compose()["volumes"]
    seen = set()
    for kong, sidecar in NODES:
        shared = _volume_at(services[sidecar], SOCKET_DIR)
        assert _volume_at(services[kong], SOCKET_DIR) == shared
        assert shared in volumes, f"{shared} is not a named volume"
        seen.add(shared)
        assert services[kong]["depends_on"][sidecar]["condition"] == "service_healthy"
        assert services[kong]["depends_on"]["upstream"]["condition"] == "service_healthy"
    assert len(seen) == len(NODES), "each node needs a socket volume of its own"
    for kong, _ in NODES:
        assert services["nginx"]["depends_on"][kong]["condition"] == "service_healthy"


def _readme_kong_conf() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## The plugin: `strata-cache`", 1)[1].split("```", 2)[1]
    return {
        key.strip(): value.strip()
        for key, sep, value in (line.partition("=") for line in block.strip().splitlines())
        if sep
    }


def test_kong_settings_are_the_readme_kong_conf() -> None:
    conf = _readme_kong_conf()
    dockerfile = (DEPLOY / "kong" / "Dockerfile").read_text(encoding="utf-8")
    for kong, _ in NODES:
        env = _environment(_services()[kong])
        assert env["KONG_DATABASE"] == "off"
        assert env["KONG_DECLARATIVE_CONFIG"] == "/kong/kong.yml"
        assert _volume_at(_services()[kong], "/kong/kong.yml") == "./deploy/kong/kong.yml"
        assert env["KONG_ADMIN_LISTEN"].startswith("127.0.0.1:")
        for key, value in conf.items():
            got = env[f"KONG_{key.upper()}"]
            if key.endswith(("_start_cmd", "_query_cmd")):
                # Same command; the interpreter is the image's virtualenv (PEP 668), and the
                # plugin server's /metrics listens on the compose network.
                python, _, args = got.partition(" ")
                assert _without_metrics_listen(args) == _without_metrics_listen(
                    value.partition(" ")[2]
                ), key
                venv = python.removesuffix("/bin/python3")
                assert f"python3 -m venv {venv}" in dockerfile, python
            else:
                assert got == value, key


def _without_metrics_listen(args: str) -> str:
    return re.sub(r"\s*--metrics-listen[ =]\S+", "", args)


def test_plugin_server_metrics_are_served_on_the_compose_network() -> None:
    for kong, _ in NODES:
        service = _services()[kong]
        start = _environment(service)["KONG_PLUGINSERVER_STRATA_CACHE_START_CMD"].split()
        assert start[start.index("--metrics-listen") + 1] == PLUGIN_METRICS_LISTEN
        assert PLUGIN_METRICS_LISTEN.rpartition(":")[2] in service["expose"]
        assert "ports" not in service


def test_build_files_and_bind_mounts_exist() -> None:
    for name, service in _services().items():
        build = service.get("build")
        if build:
            dockerfile = ROOT / build.get("context", ".") / build["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
            target = build.get("target")
            if target:
                text = dockerfile.read_text(encoding="utf-8")
                assert re.search(rf"(?im)^FROM\s+\S+\s+AS\s+{target}\s*$", text), name
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


@pytest.mark.parametrize("dockerfile", ["kong/Dockerfile", "sidecar/Dockerfile"])
def test_dockerfiles_copy_what_exists_and_run_unprivileged(dockerfile: str) -> None:
    text = (DEPLOY / dockerfile).read_text(encoding="utf-8")
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from=") for w in words):
            for source in words[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile}: COPY {source} is missing"
    users = re.findall(r"(?m)^USER\s+(\S+)\s*$", text)
    assert users and users[-1] not in {"root", "0"}, f"{dockerfile} runs as root"


# --- deploy/kong/kong.yml -------------------------------------------------------------------


def _strata_configs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("name") == "strata-cache":
            node.setdefault("config", {})
            yield node["config"]
        for value in node.values():
            yield from _strata_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strata_configs(value)


def _without_compose_fields(doc: Any) -> tuple[Any, list[str], list[str]]:
    """`doc` minus service URLs, sidecar addresses and uids, and the values taken out
    (address and uid joined by a space)."""
    doc = copy.deepcopy(doc)
    urls = [service.pop("url") for service in doc.get("services", [])]
    addresses = []
    for config in _strata_configs(doc):
        sidecar = config.get("sidecar", {})
        addresses.append(f"{sidecar.pop('address', None)} {sidecar.pop('uid', None)}")
        if not sidecar:
            config.pop("sidecar", None)
    return doc, urls, addresses


def test_deploy_kong_yml_is_the_repository_kong_yml_on_the_compose_network() -> None:
    repo, repo_urls, _ = _without_compose_fields(_load_yaml(KONG_YML))
    deploy, urls, addresses = _without_compose_fields(_load_yaml(DEPLOY_KONG_YML))
    assert deploy == repo, "deploy/kong/kong.yml differs from kong.yml in more than URLs/sockets"
    assert urls == [UPSTREAM_URL] * len(repo_urls)
    assert addresses and addresses == [f"{SOCKET_ADDRESS} {SIDECAR_UID}"] * len(addresses)


def test_deploy_kong_yml_plugin_configs_are_accepted_by_the_plugin() -> None:
    for config in _strata_configs(_load_yaml(DEPLOY_KONG_YML)):
        sidecar = parse_config(config, strict=True).sidecar
        assert (sidecar.address, sidecar.uid) == (SOCKET_ADDRESS, SIDECAR_UID)


def test_upstream_service_serves_the_url_kong_uses() -> None:
    upstream = _services()["upstream"]
    command = upstream["command"]
    assert command[:3] == ["python", "-m", "deploy.upstream.app"]
    assert command[command.index("--listen") + 1] == "0.0.0.0:9000"
    assert UPSTREAM_URL.endswith(":9000")


# --- deploy/nginx/nginx.conf ----------------------------------------------------------------


def test_nginx_conf_balances_both_kong_nodes(tmp_path: Path) -> None:
    text = NGINX_CONF.read_text(encoding="utf-8")
    servers = re.findall(r"(?m)^\s*server\s+([\w.-]+):(\d+)\b", text)
    assert servers == [(kong, "8000") for kong, _ in NODES]
    assert _environment(_services()["kong-1"])["KONG_PROXY_LISTEN"].endswith(":8000")
    assert re.search(r"(?m)^\s*listen\s+8000;", text)

    nginx = _tool("nginx", "/usr/sbin/nginx")
    resolvable = re.sub(r"\bkong-\d+:8000\b", "127.0.0.1:8000", text)
    (tmp_path / "nginx.conf").write_text(resolvable, encoding="utf-8")
    result = _run(
        [
            nginx,
            "-t",
            "-p",
            f"{tmp_path}/",
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            str(tmp_path / "error.log"),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr


# --- deploy/prometheus/prometheus.yml -------------------------------------------------------


def test_prometheus_config_is_valid_and_scrapes_sidecars_and_plugin_servers() -> None:
    promtool = _tool("promtool")
    result = _run([promtool, "check", "config", str(PROMETHEUS_CONF)])
    assert result.returncode == 0, result.stdout + result.stderr

    config = _load_yaml(PROMETHEUS_CONF)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    sidecar_port = _environment(_services()["sidecar-1"])["STRATA_METRICS_LISTEN"]
    plugin_port = PLUGIN_METRICS_LISTEN
    for job_name, port, target in (
        ("strata-sidecar", sidecar_port.rpartition(":")[2], 1),
        ("strata-plugin", plugin_port.rpartition(":")[2], 0),
    ):
        groups = jobs[job_name]["static_configs"]
        targets = [(t, group["labels"]["kong_node"]) for group in groups for t in group["targets"]]
        assert targets == [(f"{node[target]}:{port}", node[0]) for node in NODES], job_name


def test_prometheus_loads_the_mounted_alert_rules() -> None:
    """`rule_files` is relative to prometheus.yml: the same glob finds the rules here and in
    the container, where compose mounts deploy/prometheus/rules beside the config."""
    config = _load_yaml(PROMETHEUS_CONF)
    (pattern,) = config["rule_files"]
    assert list(PROMETHEUS_CONF.parent.glob(pattern)) == [DEPLOY / "prometheus/rules/strata.yml"]
    prometheus = _services()["prometheus"]
    conf_dir = Path(
        next(
            v for v in prometheus["volumes"] if v.startswith("./deploy/prometheus/prometheus.yml")
        ).split(":")[1]
    ).parent
    rules_dir = conf_dir / Path(pattern).parent
    assert _volume_at(prometheus, str(rules_dir)) == "./deploy/prometheus/rules"


# --- deploy/grafana -------------------------------------------------------------------------


def _sidecar_metrics() -> set[str]:
    """Every family a sidecar with Kafka and analytics exports, as queried (counters with
    `_total`; a histogram by its base name)."""
    registry = CollectorRegistry()
    PrometheusObserver(registry)
    registry.register(TierCollector(lambda: [TierSnapshot("memory", 0, 0, 1)]))
    registry.register(BusCollector(lambda: _zero(BusStats)))
    registry.register(AnalyticsCollector(lambda: _zero(AnalyticsStats)))
    return {m.name + "_total" if m.type == "counter" else m.name for m in registry.collect()}


def _zero(cls: Any) -> Any:
    """An instance of dataclass `cls` with every int field 0 and mappings empty."""
    fields: dict[str, object] = {
        f.name: ({} if "Mapping" in str(f.type) else 0) for f in dataclasses.fields(cls)
    }
    return cls(**fields)


def _exported_metrics() -> set[str]:
    """What the sidecars and the plugin servers export."""
    from kong_plugin.plugin_metrics import METRIC_NAMES  # noqa: PLC0415

    return _sidecar_metrics() | set(METRIC_NAMES)


def metric_names(query: str) -> set[str]:
    """The metric families `query` reads (a histogram's series by its base name)."""
    return {_HISTOGRAM_SERIES.sub("", name) for name in _METRIC.findall(query)}


def _queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "definition"} and isinstance(value, str):
                yield value
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for value in node:
            yield from _queries(value)


def _variables(dashboard: dict[str, Any]) -> dict[str, str]:
    """Grafana's variables, each given a plain value: textboxes their default, the rest a
    match-anything regex (they are only used with =~)."""
    values = {"__rate_interval": "1m", "__range": "1h"}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "textbox":
            values[variable["name"]] = variable["query"]
        else:
            values[variable["name"]] = ".*"
    return values


def test_dashboard_queries_only_metrics_the_stack_exports(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = list(_queries(dashboard))
    used = {name for query in queries for name in metric_names(query)}
    assert used >= DASHBOARD_METRICS, DASHBOARD_METRICS - used
    assert used <= _exported_metrics(), used - _exported_metrics()

    (datasource,) = _load_yaml(DATASOURCES)["datasources"]
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]

    # Every panel query is valid PromQL (Grafana's variables given plain values).
    values = _variables(dashboard)
    exprs = []
    for panel in panels:
        for target in panel["targets"]:
            expr = re.sub(r"\$(\w+)", lambda m: values[m.group(1)], target["expr"])
            assert "$" not in expr, target["expr"]
            exprs.append(expr)
    promtool = _tool("promtool")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"strata:dashboard_query_{i}",
                        "expr": expr,
                    }
                    for i, expr in enumerate(exprs)
                ],
            }
        ]
    }
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = _run([promtool, "check", "rules", str(tmp_path / "rules.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_cost_prices_are_numbers_with_a_default() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    prices = {
        v["name"]: float(v["query"])
        for v in dashboard["templating"]["list"]
        if v["type"] == "textbox"
    }
    assert set(prices) == {
        "ram_price_gb_month",
        "disk_price_gb_month",
        "origin_price_per_million",
        "egress_price_gb",
    }
    assert all(price > 0 for price in prices.values())
    (cost,) = (p for p in dashboard["panels"] if p["title"] == "Estimated monthly cost by tier")
    exprs = " ".join(t["expr"] for t in cost["targets"])
    assert "$ram_price_gb_month" in exprs and "$disk_price_gb_month" in exprs
    (report,) = (p for p in dashboard["panels"] if p["title"].startswith("Estimated monthly cost:"))
    exprs = " ".join(t["expr"] for t in report["targets"])
    assert all(f"${name}" in exprs for name in prices)


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    grafana = _services()["grafana"]
    provider = _load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "strata.yml")
    (entry,) = provider["providers"]
    assert _volume_at(grafana, entry["options"]["path"]) == "./deploy/grafana/dashboards"
    assert _volume_at(grafana, "/etc/grafana/provisioning") == "./deploy/grafana/provisioning"
    (datasource,) = _load_yaml(DATASOURCES)["datasources"]
    assert datasource["url"] == "http://prometheus:9090"


# --- deploy/filebeat/filebeat.yml -----------------------------------------------------------


def test_filebeat_decodes_json_lines_and_ships_to_elasticsearch() -> None:
    config = _load_yaml(DEPLOY / "filebeat" / "filebeat.yml")
    (container_input,) = config["filebeat.inputs"]
    assert container_input["paths"] == ["/var/lib/docker/containers/*/*.log"]
    decoders = [p["decode_json_fields"] for p in config["processors"] if "decode_json_fields" in p]
    assert decoders and decoders[0]["fields"] == ["message"] and decoders[0]["target"] == ""
    assert "elasticsearch" in config["output.elasticsearch"]["hosts"][0]
    filebeat = _services()["filebeat"]
    assert _volume_at(filebeat, "/usr/share/filebeat/filebeat.yml") == (
        "./deploy/filebeat/filebeat.yml"
    )


def _plugin_server_commands() -> tuple[list[str], list[str], str]:
    """(start argv, query argv, socket) of kong-1, the image's interpreter replaced by ours."""
    env = _environment(_services()["kong-1"])
    assert env["KONG_PLUGINSERVER_NAMES"] == "strata_cache"
    start = env["KONG_PLUGINSERVER_STRATA_CACHE_START_CMD"].split()
    query = env["KONG_PLUGINSERVER_STRATA_CACHE_QUERY_CMD"].split()
    for argv in (start, query):
        # nginx clears the environment: no PATH, so the interpreter must be an absolute path
        assert argv[0].startswith("/") and argv[0] == "/opt/strata/bin/python3", argv
        argv[0] = sys.executable
    return start, query, env["KONG_PLUGINSERVER_STRATA_CACHE_SOCKET"]


def test_plugin_server_query_works_as_kong_runs_it() -> None:
    """Kong runs the query command with the worker's cleared environment and only reads its
    stdout (kong/runloop/plugin_servers/process.lua): it must print the dump with no
    variable set, and name a plugin Kong is told to load."""
    _, query, _ = _plugin_server_commands()
    out = subprocess.run(
        query, env={}, cwd="/", capture_output=True, text=True, timeout=60, check=True
    )
    dump = json.loads(out.stdout)
    assert dump[0]["Name"] == "strata-cache"
    plugins = _environment(_services()["kong-1"])["KONG_PLUGINS"].split(",")
    assert "strata-cache" in plugins
    assert re.fullmatch(r"\d+\.\d+\.\d+", dump[0]["Version"])


def test_plugin_server_starts_with_an_empty_environment_on_kongs_socket(tmp_path: Path) -> None:
    start, _, socket = _plugin_server_commands()
    prefix = start[start.index("-p") + 1]
    name = start[start.index("--socket-name") + 1]
    assert f"{prefix.rstrip('/')}/{name}" == socket  # where Kong connects
    start[start.index("-p") + 1] = str(tmp_path)
    # Not the compose network's 0.0.0.0:9465 on this machine: a free loopback port.
    start[start.index("--metrics-listen") + 1] = "127.0.0.1:0"
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(start, env={}, cwd="/", stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not (tmp_path / name).exists():
                assert proc.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "the plugin server did not listen"
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(10)


def test_plugin_errors_are_visible_at_kongs_log_level() -> None:
    """The plugin server's own output is logged at info; the plugin's reports go through
    kong.log.err/warn, which the configured level must show."""
    visible = {"debug", "info", "notice", "warn"}
    for kong, _ in NODES:
        level = _environment(_services()[kong]).get("KONG_LOG_LEVEL", "notice")
        assert level in visible, (kong, level)
    levels = set(re.findall(r'reporter\.report\(\s*kong,\s*"(\w+)"', _plugin_source()))
    assert levels and levels <= {"err", "warn"}, levels


def _plugin_source() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8") for path in sorted((ROOT / "kong_plugin").glob("*.py"))
    )
