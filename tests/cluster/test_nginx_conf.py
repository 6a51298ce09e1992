"""The NGINX configuration `make cluster` generates: accepted by `nginx -t`, listening on
loopback only, passive failover on the conditions README names, and no replay of writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.cluster import Balancing, ChildError, Nginx
from tools.cluster.nginx import NGINX, render

NODES = ["127.0.0.1:18001", "127.0.0.1:18002"]


@pytest.fixture
def nginx(tmp_path: Path) -> Nginx:
    if not NGINX.exists():
        pytest.fail(f"{NGINX} is missing: `make install` installs Debian's nginx")
    return Nginx("127.0.0.1:18000", NODES, tmp_path, Balancing(max_fails=2, fail_timeout_s=7))


def test_the_generated_configuration_passes_nginx_t(nginx: Nginx) -> None:
    nginx.write()
    nginx.check()
    text = nginx.conf.read_text()
    assert "listen 127.0.0.1:18000;" in text
    for node in NODES:
        assert f"server {node} max_fails=2 fail_timeout=7s;" in text
    # the one condition list; no `non_idempotent`: a write that reached a node is not
    # passed to a second one
    conditions = [
        w.strip() for w in text.splitlines() if w.strip().startswith("proxy_next_upstream ")
    ]
    assert conditions == ["proxy_next_upstream error timeout http_502 http_503 http_504;"]
    assert "proxy_next_upstream_tries 2;" in text
    assert "keepalive 32;" in text
    # everything NGINX writes stays in the run's folder
    for line in text.splitlines():
        words = line.split()
        if words[:1] in (["pid"], ["error_log"], ["access_log"]) and words[1] != "off;":
            assert str(nginx.prefix) in line, line
        if "_temp_path" in line:
            assert str(nginx.prefix) in line, line


def test_workers_drop_root(tmp_path: Path) -> None:
    text = render("127.0.0.1:18000", NODES, tmp_path, Balancing())
    if os.geteuid() == 0:
        assert "\nuser nobody " in text
    else:
        assert "\nuser " not in text


def test_a_broken_configuration_is_refused_with_nginx_s_message(nginx: Nginx) -> None:
    nginx.write()
    nginx.conf.write_text(nginx.conf.read_text().replace("keepalive 32;", "keepalive x;"))
    with pytest.raises(ChildError, match="nginx -t refused"):
        nginx.check()
