"""Run every Boxoffice benchmark once and print the table: ``python -m benchmarks.run``.

The run starts its own Kafka (Tansu) and MongoDB (SecantusDB) servers. It uses the
machine's PostgreSQL and Redis on 127.0.0.1 when they accept connections, and
embedded ones otherwise. It creates databases, topics and a Redis key prefix of its
own, and deletes them at the end. Server data and process logs go to a temporary folder
outside the repository, removed at the end unless ``--keep-logs`` is given.
Nothing is written into the repository unless ``--output`` names a file there.
"""

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_commands import Scenario, measure_command_throughput
from benchmarks.bench_http import HttpSizes, measure_system
from benchmarks.bench_import import measure_catalog_import
from benchmarks.report import Report, machine_info, render, scan_logs, to_json
from benchmarks.services import Servers, Workspace, start_servers

logger = logging.getLogger("benchmarks")

DEFAULT_CATALOG = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "movies.json"
)


def positive_int(text: str) -> int:
    """Parse a command-line integer that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """Parse a command-line number that must be above 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="./dev bench",
        description="Measure catalogue import, command throughput, booking latency "
        "and hot reads of Boxoffice on this machine, and print a table. All servers "
        "and processes listen on 127.0.0.1. The defaults take about 4 minutes on 2 "
        "cores.",
    )
    parser.add_argument(
        "--repetitions",
        metavar="N",
        type=positive_int,
        default=3,
        help="runs of each measurement; the table shows their median (default 3)",
    )
    parser.add_argument(
        "--catalog",
        metavar="PATH",
        type=Path,
        default=DEFAULT_CATALOG,
        help="catalogue JSON file to import (default: ../shared/data/movies.json "
        "next to the repository)",
    )

    # Sizes of the loads.
    parser.add_argument(
        "--commands",
        metavar="N",
        type=positive_int,
        default=2000,
        help="BookSeats commands per throughput run (default 2000)",
    )
    parser.add_argument(
        "--showtimes",
        metavar="N",
        type=positive_int,
        default=100,
        help="showtimes that share the commands in the many-showtimes run "
        "(default 100)",
    )
    parser.add_argument(
        "--bookings",
        metavar="N",
        type=positive_int,
        default=100,
        help="bookings per repetition of the latency run, sent one at a time "
        "(default 100)",
    )
    parser.add_argument(
        "--lag-bookings",
        metavar="N",
        type=positive_int,
        default=40,
        help="bookings per repetition of the 202-to-decided run (default 40)",
    )
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=positive_int,
        default=32,
        help="concurrent connections of the read load (default 32)",
    )
    parser.add_argument(
        "--duration",
        metavar="SECONDS",
        type=positive_float,
        default=5.0,
        help="seconds of each read load run (default 5)",
    )

    # Output.
    parser.add_argument(
        "--output",
        metavar="PATH",
        type=Path,
        help="also write every sample and the machine description as JSON to this file",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the temporary folder with process logs and server data, and "
        "print its path",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log each repetition to stderr"
    )
    return parser.parse_args(argv)


def progress(message: str) -> None:
    """Print a progress line to stderr, so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def run_benchmarks(
    args: argparse.Namespace, servers: Servers, workspace: Workspace
) -> Report:
    """Run the four measurements in order and return the report without log findings."""
    progress(f"[1/4] catalogue import of {args.catalog} ...")
    imported = measure_catalog_import(workspace, args.catalog, args.repetitions)

    progress("[2/4] command throughput with one processor ...")
    scenarios = [
        Scenario("hot", showtimes=1, commands=args.commands),
        Scenario("many", showtimes=args.showtimes, commands=args.commands),
    ]
    throughput = measure_command_throughput(
        workspace, args.catalog, scenarios, args.repetitions
    )

    progress("[3/4] starting a whole system with the catalogue ...")
    sizes = HttpSizes(
        repetitions=args.repetitions,
        booking_requests=args.bookings,
        lag_requests=args.lag_bookings,
        concurrency=args.concurrency,
        duration_s=args.duration,
    )
    step_numbers = iter(["[3/4]", "[4/4]"])

    def system_progress(step: str) -> None:
        progress(f"{next(step_numbers, '')} {step} ...")

    system = measure_system(workspace, args.catalog, sizes, system_progress)

    options = {
        "repetitions": args.repetitions,
        "catalog": str(args.catalog),
        "commands": args.commands,
        "showtimes": args.showtimes,
        "bookings": args.bookings,
        "lag_bookings": args.lag_bookings,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
    }
    return Report(
        machine=machine_info(),
        options=options,
        servers=servers.sources,
        catalog_import=imported,
        throughput=throughput,
        system=system,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the report and return the exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("aiokafka", "httpx", "infra.runtime.embedded"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.catalog.is_file():
        progress(f"error: catalogue file {args.catalog} not found; pass --catalog PATH")
        return 2

    started = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="boxoffice-bench-"))
    log_dir = work_dir / "logs"
    log_dir.mkdir()
    progress(f"Starting servers (data and logs in {work_dir}) ...")
    servers = start_servers(work_dir / "services")
    workspace = Workspace(servers, log_dir)
    succeeded = False
    try:
        report = run_benchmarks(args, servers, workspace)
        succeeded = True
    finally:
        progress("Stopping processes and deleting the benchmark's data ...")
        workspace.close()
        servers.stop()
        findings = scan_logs(log_dir)
        # A failed run keeps its logs, which usually show the cause.
        if args.keep_logs or not succeeded:
            progress(f"Logs and server data kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)

    report.logs = findings
    report.duration_s = time.monotonic() - started
    print(render(report))
    if args.output:
        args.output.write_text(json.dumps(to_json(report), indent=2, default=str))
        progress(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
