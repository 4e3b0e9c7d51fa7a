"""Run the benchmarks, print a table of ratios, write the results as JSON.

    python -m bench                  # everything, a few minutes
    python -m bench --quick          # fewer rounds and a smaller fan-out, about a minute or two
    python -m bench --only intake --only fanout
    python -m bench --json out.json  # default: bench/results.json

Exits 0 when every benchmark ran (whatever the numbers), 1 when one could not run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench import BENCHMARKS
from bench.measure import Result

DEFAULT_JSON = Path("bench") / "results.json"


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    _quiet_logging(verbose=options.verbose)
    names = _selected(options.only)
    mode = "quick" if options.quick else "full"
    print(f"prepost bench ({mode}): {', '.join(names)}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    results: list[Result] = []
    for name in names:
        module = BENCHMARKS[name]
        print(f"[{name}] {module.TITLE}", file=sys.stderr, flush=True)
        began = time.perf_counter()
        try:
            result = module.run(quick=options.quick)
        except Exception as error:  # report it and go on with the other benchmarks
            result = Result(name, module.TITLE, error=f"{type(error).__name__}: {error}")
            traceback.print_exc(file=sys.stderr)
        result.seconds = time.perf_counter() - began
        print(f"[{name}] done in {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
    total = time.perf_counter() - started

    print(render(results, mode=mode, total=total))
    path = Path(options.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(results, mode=mode, total=total), indent=2) + "\n")
    print(f"\nresults written to {path}")
    return 1 if any(result.error for result in results) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Speed and memory of the pipeline, as ratios to baselines measured in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and a smaller fan-out")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        default=[],
        help=f"run only this benchmark (repeatable, or comma-separated): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--json",
        default=str(DEFAULT_JSON),
        metavar="PATH",
        help=f"where to write the results (default: {DEFAULT_JSON})",
    )
    parser.add_argument("--verbose", action="store_true", help="show the app's and the SDKs' warnings")
    return parser


def _selected(only: list[str]) -> list[str]:
    wanted = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in BENCHMARKS]
    if unknown:
        _parser().error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if not wanted or name in wanted]


def _quiet_logging(*, verbose: bool) -> None:
    """Errors only on the console (warnings with ``--verbose``).

    The app logs every task at INFO, and urllib3 warns whenever a burst of sends outgrows a
    connection pool: useful in a service, noise around a table of numbers. The level is set on
    the one console handler, so loggers that set their own level (werkzeug) are quiet too.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING if verbose else logging.ERROR)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.WARNING, force=True)
    # werkzeug adds a console handler of its own for its access lines unless its level is set.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


# -- output --------------------------------------------------------------------------------


def render(results: list[Result], *, mode: str, total: float) -> str:
    header = ("benchmark", "measure", "pipeline", "baseline", "ratio", "")
    lines = [
        "",
        f"prepost bench ({mode}) on {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "ratio = pipeline cost / baseline cost, both measured in this run (1.00x: as cheap as the baseline)",
        "",
    ]
    table = [header]
    for result in results:
        if result.error:
            table.append((result.name, "could not run", "", "", "", result.error[:60]))
            continue
        for index, row in enumerate(result.rows):
            table.append(
                (
                    result.name if index == 0 else "",
                    row.measure,
                    f"{_number(row.pipeline)} {row.unit}",
                    f"{_number(row.baseline)} {row.unit}",
                    f"{row.ratio:.2f}x",
                    row.note,
                )
            )
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    for position, row in enumerate(table):
        cells = [
            cell.rjust(width) if column in (2, 3, 4) else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if position == 0:
            lines.append("  ".join("-" * width for width in widths[:-1]))
    notes = [f"  {result.name}: {result.details['summary']}" for result in results if result.details.get("summary")]
    if notes:
        lines += ["", "notes:", *notes]
    timings = ", ".join(f"{result.name} {result.seconds:.0f} s" for result in results)
    lines += ["", f"total {total:.0f} s ({timings})"]
    return "\n".join(lines)


def _number(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def to_json(results: list[Result], *, mode: str, total: float) -> dict:
    return {
        "generatedAt": datetime.now(timezone.utc).isoformat(),
        "mode": mode,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "totalSeconds": round(total, 1),
        "benchmarks": {result.name: result.to_json() for result in results},
    }


if __name__ == "__main__":
    sys.exit(main())
