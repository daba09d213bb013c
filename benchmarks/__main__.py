"""Side-by-side benchmarks: `make bench` (quick) or `make bench FULL=1`.

Every headline figure is a ratio against an anchor measured in the same run on the same
machine. Results are printed as tables and written to benchmarks/results/latest.json.
Services: embedded PostgreSQL + Redis in a temporary directory, unless BENCH_DATABASE_URL
and BENCH_BROKER_URL are set.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from typing import Any

from benchmarks.env import Env, console
from benchmarks.registry import BY_NAME, FAMILIES
from benchmarks.report import machine_info, write_results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="families:\n"
        + "\n".join(f"  {family.name:<14} {family.measures}" for family in FAMILIES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="Bigger sizes and more repeats.")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=list(BY_NAME),
        metavar="FAMILY",
        help="Run only these families (in the order below); default: all.",
    )
    args = parser.parse_args()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    only = set(args.only or BY_NAME)
    env = Env()
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "full": args.full}
    try:
        results["machine"] = machine_info(env)
        console.print(results["machine"])
        for family in FAMILIES:
            if family.name not in only:
                continue
            size = family.full if args.full else family.quick
            for key, figures in family.run(env, size):
                results[key] = figures
                family.show(key, figures, size)
    finally:
        env.close()
        write_results(results)


if __name__ == "__main__":
    main()
