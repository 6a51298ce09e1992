"""A fake plugin server (no kong-pdk) whose ``HandleEvent`` answers "no plugin instance"
``--fail N`` times before it works (``--fail -1``: always), as a restarted or confused
server would. ``--dump`` prints the plugin info; otherwise it serves msgpack-RPC on
``PREFIX/ks-flaky.socket``.
"""

import argparse
import json
import os
import socket
import sys
from typing import Any

import msgpack  # type: ignore[import-untyped]

NAME = "ks-flaky"
DUMP = [
    {
        "Name": NAME,
        "Version": "0.1.0",
        "Priority": 1000,
        "Phases": ["access"],
        "Schema": {"name": NAME, "fields": [{"config": {"type": "record", "fields": []}}]},
    }
]


def serve(path: str, fail: int) -> None:
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    state = {"failures": 0, "instances": 0}
    while True:
        conn, _ = server.accept()
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        while True:
            data = conn.recv(65536)
            if not data:
                break
            unpacker.feed(data)
            for _, msgid, method, params in unpacker:
                error, result = answer(method, params, fail, state)
                conn.sendall(msgpack.packb([1, msgid, error, result], use_bin_type=True))
        conn.close()


def answer(method: str, params: list[Any], fail: int, state: dict[str, int]) -> tuple[Any, Any]:
    if method == "plugin.StartInstance":
        state["instances"] += 1
        return None, {"Name": NAME, "Id": state["instances"], "Config": {}, "StartTime": 0}
    if method == "plugin.CloseInstance":
        return None, {"Name": NAME, "Id": params[0], "Config": {}}
    if method == "plugin.HandleEvent":
        if fail < 0 or state["failures"] < fail:
            state["failures"] += 1
            return f"no plugin instance #{params[0]['InstanceId']}", None
        body = f"recovered after {state['failures']}"
        data = {"Method": "kong.response.exit", "Args": [200, body, {"X-Flaky": "1"}]}
        return None, {"EventId": 1, "Data": data}
    return f"unexpected {method}", None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-p", dest="prefix", default="/tmp")
    parser.add_argument("--fail", type=int, default=3)
    parser.add_argument("--dump", action="store_true")
    args = parser.parse_args()
    if args.dump:
        sys.stdout.write(json.dumps(DUMP))
        return
    serve(os.path.join(args.prefix, f"{NAME}.socket"), args.fail)


if __name__ == "__main__":
    main()
