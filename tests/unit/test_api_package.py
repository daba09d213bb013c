"""The shape of `scheduler.api`: a package that only re-exports, one sync twin per coroutine,
and a CLI that reaches the database through it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from scheduler import api

CLI = Path(__file__).resolve().parents[2] / "scheduler" / "cli"
PLUMBING = {"services_cmd.py", "metrics_cmd.py", "common.py"}
"""Process plumbing (`db roles`, the metrics server, the runtime runner), not use cases."""


def test_every_exported_name_resolves_and_none_is_defined_in_the_package_itself() -> None:
    for name in api.__all__:
        value = getattr(api, name)
        assert getattr(value, "__module__", "") != "scheduler.api", name
    defined = [
        node.name
        for node in ast.parse(inspect.getsource(api)).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    assert defined == []


def test_each_sync_form_runs_its_coroutine_and_carries_its_name_and_doc() -> None:
    twins = [n for n in api.__all__ if f"a{n}" in api.__all__]
    assert {"upsert_schedule", "history", "trigger", "prune_runs", "add_user"} <= set(twins)
    for name in twins:
        sync, coroutine = getattr(api, name), getattr(api, f"a{name}")
        assert sync.__name__ == name
        assert sync.__wrapped__ is coroutine
        assert sync.__doc__ == coroutine.__doc__
        assert inspect.signature(sync) == inspect.signature(coroutine)


def test_cli_commands_import_no_store_module() -> None:
    for path in sorted(CLI.glob("*.py")):
        if path.name in PLUMBING:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("scheduler.store"), (path.name, node.module)
