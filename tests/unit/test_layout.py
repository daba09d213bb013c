"""The layout docs/ARCHITECTURE.md promises: public import paths that keep working, packages
that import only the packages below them, a pure core."""

from __future__ import annotations

import ast
from pathlib import Path

from celery.utils.imports import symbol_by_name

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("core", "store", "runtime", "broker", "observability", "worker", "beat", "api")
"""Bottom to top: a package may import those before it, never one after it."""
FRONT_ENDS = ("web", "cli")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _package_imports(package: str) -> dict[str, set[str]]:
    """Module path -> the scheduler packages it imports (besides its own)."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "scheduler" / package).rglob("*.py")):
        names = {
            name.split(".")[1]
            for name in _imports(path)
            if name.startswith("scheduler.") and name.split(".")[1] in LAYERS + FRONT_ENDS
        }
        out[str(path.relative_to(ROOT))] = names - {package}
    return out


def test_public_import_paths_name_the_moved_objects() -> None:
    from scheduler.beat.celery_scheduler import DatabaseScheduler
    from scheduler.runtime.db import get_runtime
    from scheduler.store.runs import RunStore
    from scheduler.worker.tracked import TrackedTask, tracked_task

    assert symbol_by_name("scheduler.beat:DatabaseScheduler") is DatabaseScheduler
    assert symbol_by_name("scheduler.tracking:tracked_task") is tracked_task
    assert symbol_by_name("scheduler.tracking:TrackedTask") is TrackedTask
    assert symbol_by_name("scheduler.db:get_runtime") is get_runtime
    repository = symbol_by_name("scheduler.repository:SchedulerRepository")
    for seed_name in ("get_execution_status_by_code", "update_execution"):
        assert getattr(repository, seed_name) is getattr(RunStore, seed_name)
        assert getattr(repository(), seed_name) is getattr(RunStore, seed_name)
    assert symbol_by_name("config.celery:app").main == "scheduler"
    assert callable(symbol_by_name("scheduler.api:history"))


def test_each_package_imports_only_the_packages_below_it() -> None:
    wrong = []
    for level, package in enumerate(LAYERS):
        allowed = set(LAYERS[:level])
        for module, names in _package_imports(package).items():
            wrong += [f"{module} imports scheduler.{name}" for name in names - allowed]
    for package in FRONT_ENDS:
        allowed = set(LAYERS) | {"web"} if package == "cli" else set(LAYERS)
        for module, names in _package_imports(package).items():
            wrong += [f"{module} imports scheduler.{name}" for name in names - allowed]
    assert wrong == []


def test_the_core_imports_nothing_of_the_project_but_itself_and_the_settings() -> None:
    wrong = []
    for path in sorted((ROOT / "scheduler" / "core").rglob("*.py")):
        for name in _imports(path):
            project = name.split(".")[0] in ("scheduler", "config", "tasks")
            if project and not name.startswith(("scheduler.core", "config.settings")):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []
