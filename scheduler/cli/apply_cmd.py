"""`scheduler apply FILE.yaml` and `scheduler export`: schedules as code.

The file holds only definitions (no ids, no run state), so export -> apply is a no-op and
export -> apply -> export gives the same bytes.

\b
schedules:
  - name: nightly-report
    task: demo.sleep
    cron: 30 1 * * *
    timezone: Europe/London
    kwargs: {seconds: 2}
  - name: heartbeat
    task: demo.noop
    every: 30s
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import click
import yaml

from scheduler import api
from scheduler.cli.common import json_option, print_json, run_db
from scheduler.core.bounds import plain
from scheduler.core.definitions import (
    ScheduleDefinition,
    broken_fields,
    from_mapping,
    from_row,
    registered_tasks,
    to_mapping,
    validate,
)
from scheduler.core.exceptions import InvalidScheduleError
from scheduler.runtime.db import get_runtime
from scheduler.store.schedules import ScheduleStore

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader when installed (tens of times faster on big files), else PyYAML's."""


def _refuse_aliases(root: yaml.Node) -> None:
    """Aliases (`*name`) are refused before anything is built: a few hundred bytes of nested
    aliases otherwise expand to gigabytes (a "billion laughs" file)."""
    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise InvalidScheduleError(
                f"aliases (*name) are not allowed; write the value out (line {node.start_mark.line + 1})"
            )
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def safe_load(stream: Any) -> Any:
    """YAML as plain data, without aliases."""
    loader = _Loader(stream)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_aliases(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_file(path: str) -> list[ScheduleDefinition]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = safe_load(handle)
    except InvalidScheduleError as exc:
        raise InvalidScheduleError(f"{path}: {exc}") from None
    except RecursionError:
        raise InvalidScheduleError(f"{path} is nested too deep") from None
    except OSError as exc:
        raise InvalidScheduleError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise InvalidScheduleError(f"{path} is not valid YAML{line}") from None
    items = (data or {}).get("schedules", []) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InvalidScheduleError(f"{path}: expected a top-level `schedules:` list")
    registered = registered_tasks()
    definitions = []
    for index, item in enumerate(items, start=1):
        try:
            definitions.append(validate(from_mapping(item), registered))
        except InvalidScheduleError as exc:
            raise InvalidScheduleError(f"{path}, schedule #{index}: {exc}") from None
    counts = Counter(d.name for d in definitions)
    duplicates = sorted(n for n, c in counts.items() if c > 1)
    if duplicates:
        raise InvalidScheduleError(f"{path}: duplicate names {', '.join(duplicates)}")
    return definitions


def dump(definitions: list[ScheduleDefinition]) -> str:
    data = {"schedules": [to_mapping(d) for d in sorted(definitions, key=lambda d: d.name)]}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


@click.command("apply")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--prune", is_flag=True, help="Delete schedules that are not in the file.")
@click.option("--dry-run", is_flag=True, help="Print the changes, write nothing.")
@json_option
def apply(path: str, prune: bool, dry_run: bool, as_json: bool) -> None:
    """Make the database's schedules match FILE (create, update, leave, delete with --prune).

    Everything happens in one transaction: an invalid file changes nothing.
    """
    definitions = load_file(path)
    changes = run_db(lambda: api.areconcile(definitions, prune=prune, dry_run=dry_run))
    changes.pop("existing")
    if as_json:
        print_json({**changes, "dry_run": dry_run})
        return
    marks = {"create": "+", "update": "~", "delete": "-"}
    for kind, mark in marks.items():
        for name in changes[kind]:
            click.echo(f"{mark} {plain(name)}")
    summary = ", ".join(
        f"{len(changes[k])} {k}" for k in ("create", "update", "unchanged", "delete")
    )
    click.echo(f"{'dry run: ' if dry_run else ''}{summary}")


@click.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here, not stdout.")
def export(output: str | None) -> None:
    """Print every schedule's definition as YAML (the format `scheduler apply` reads)."""

    async def rows() -> list[dict[str, Any]]:
        async with get_runtime().sessions() as session:
            return await ScheduleStore.list_schedules(session)

    definitions = [from_row(r) for r in run_db(rows)]
    broken = {d.name: broken_fields(d) for d in definitions if broken_fields(d)}
    text = dump([d for d in definitions if d.name not in broken])
    for name, problems in sorted(broken.items()):
        line = f"schedule {name!r} cannot be exported: {'; '.join(problems)}"
        text += f"# {plain(line)}\n"
        click.echo(f"warning: {plain(line)}", err=True)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
