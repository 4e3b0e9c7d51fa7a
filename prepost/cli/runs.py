"""``prepost runs``: what the pipeline recorded, per run."""

from __future__ import annotations

import json

from prepost.cli.common import EXIT_OK, CliError, records, storage_options, tables_must_exist


def add_parser(commands) -> None:
    runs = commands.add_parser("runs", help="what the pipeline recorded")
    runs_commands = runs.add_subparsers(title="runs commands")
    runs_list = runs_commands.add_parser("list", help="recent runs")
    runs_list.add_argument("--limit", type=int, default=20, help="how many runs, newest first (default 20)")
    runs_list.add_argument("--json", action="store_true", help="print each run's full report as JSON")
    storage_options(runs_list)
    runs_list.set_defaults(handler=runs_list_command)
    runs_show = runs_commands.add_parser("show", help="one run: phases and every task")
    runs_show.add_argument("run", help="correlation id or run key")
    runs_show.add_argument("--json", action="store_true", help="print the report as JSON")
    storage_options(runs_show)
    runs_show.set_defaults(handler=runs_show_command)


def runs_list_command(args) -> int:
    with tables_must_exist():
        return _runs_list(args)


def _runs_list(args) -> int:
    run_records = records(args)
    runs = run_records.list_runs(limit=args.limit)
    if args.json:
        from shared.usecases.run_report import run_report

        print(json.dumps([run_report(run.run_key, run_records) for run in runs], indent=2))
        return EXIT_OK
    if not runs:
        print("no runs recorded")
        return EXIT_OK
    from shared.models.run import Phase

    print(f"{'START (UTC)':<20} {'CONFIGURATION':<24} {'PRE':<24} {'POST':<24} CANCELLED  RUN KEY")
    for run in runs:
        cells = []
        for phase in Phase:
            record = run_records.get_phase(run.run_key, phase)
            cells.append(f"{record.status.value} ({record.finished_tasks}/{record.expected_tasks})" if record else "-")
        # "needed" when prepost decided the run must be cancelled but no cancel call was made or taken.
        cancelled = "yes" if run.cancel_accepted else "needed" if run.cancel_requested_at else "no"
        print(
            f"{run.start:%Y-%m-%d %H:%M}     {run.configuration_name[:24]:<24} {cells[0]:<24} {cells[1]:<24} "
            f"{cancelled:<10} {run.run_key}"
        )
    return EXIT_OK


def runs_show_command(args) -> int:
    from shared.ports.records import RunNotFound
    from shared.usecases.run_report import resolve_run_key, run_report

    run_records = records(args)
    try:
        with tables_must_exist():
            report = run_report(resolve_run_key(args.run, run_records), run_records)
    except RunNotFound as error:
        raise CliError(str(error)) from error
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    from prepost.render import render_run

    print(render_run(report))
    return EXIT_OK
