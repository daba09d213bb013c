"""The `scheduler` CLI in-process (click's runner) and the shape every user error must have."""

from __future__ import annotations

from click.testing import CliRunner, Result

from scheduler.cli import main


def invoke(*args: str, input: str | None = None) -> Result:
    """`scheduler *args`, exceptions raised (a traceback fails the test, never hides)."""
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def one_error_line(result: Result) -> str:
    """The error's only line: exit code 2, one non-blank line, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]
