"""The supervisor's run-dir files: env file and state file round trips, the run dir's choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.services import ENV_FILE, Record, ServiceError, load_env, resolve_run_dir
from tools.services.state import (
    DEFAULT_RUN_DIR,
    RUN_DIR_ENV,
    STATE_FILE,
    format_env,
    parse_env,
    read_state,
    save_record,
    write_env_file,
    write_state,
)


def test_env_text_round_trips_in_order() -> None:
    env = {"STRATA_TEST_REDIS_URL": "redis://127.0.0.1:1/0", "B": "x=y"}
    text = format_env(env)
    assert text == "STRATA_TEST_REDIS_URL=redis://127.0.0.1:1/0\nB=x=y\n"
    assert list(parse_env(text).items()) == list(env.items())


def test_parse_env_skips_comments_blank_lines_and_lines_without_equals() -> None:
    text = "# header\n\n  A = 1 \nnot a pair\nB=\n"
    assert parse_env(text) == {"A": "1", "B": ""}


def test_load_env_reads_the_env_file_of_the_run_dir(tmp_path: Path) -> None:
    assert load_env(tmp_path) == {}
    path = write_env_file(tmp_path, {"K": "v"})
    assert path == tmp_path / ENV_FILE
    assert load_env(tmp_path) == {"K": "v"}
    write_env_file(tmp_path, {})
    assert not path.exists()
    assert load_env(tmp_path) == {}


def test_state_round_trips_and_an_empty_state_removes_the_file(tmp_path: Path) -> None:
    state = {
        "redis": Record(pid=10, port=2000, start_ticks=5),
        "postgres": Record(pid=11, port=2001, start_ticks=6, pg_root="/tmp/strata-pg-x"),
    }
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    save_record(tmp_path, "redis", Record(pid=12, port=2000, start_ticks=7))
    assert read_state(tmp_path)["redis"].pid == 12
    assert read_state(tmp_path)["postgres"] == state["postgres"]
    write_state(tmp_path, {})
    assert not (tmp_path / STATE_FILE).exists()
    assert read_state(tmp_path) == {}


def test_an_unreadable_state_file_is_a_service_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text('{"redis": {"pid": 1}}')  # fields missing
    with pytest.raises(ServiceError, match=STATE_FILE):
        read_state(tmp_path)
    (tmp_path / STATE_FILE).write_text("not json")
    with pytest.raises(ServiceError, match="unreadable"):
        read_state(tmp_path)


def test_run_dir_is_the_argument_else_the_environment_else_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    assert resolve_run_dir() == DEFAULT_RUN_DIR.resolve()
    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path / "from-env"))
    assert resolve_run_dir() == tmp_path / "from-env"
    assert resolve_run_dir(tmp_path / "given") == tmp_path / "given"
