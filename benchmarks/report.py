"""The machine description, the printed table and the JSON form of a benchmark run."""

import dataclasses
import os
import platform
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.bench_commands import ThroughputResult
from benchmarks.bench_http import ReadResult, SystemResults
from benchmarks.bench_import import ImportResult
from benchmarks.stats import Summary, summarize

REPO = Path(__file__).resolve().parents[1]
# A log line of our processes: "2026-12-04 17:13:35,111 WARNING name [pid] message",
# or uvicorn's "WARNING:  message".
LOG_LEVEL = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b[: ]")
# Parts of a message that differ between repeats of the same problem.
VARIABLE_PARTS = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b\d+(\.\d+)?\b"
)
LOG_EXAMPLES = 5


def machine_info() -> dict[str, str]:
    """Return the CPU count, CPU model, RAM, Python version, OS, commit and date."""
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu_model": read_cpu_model(),
        "ram": read_ram(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "commit": read_commit(),
    }
    return info


def read_cpu_model() -> str:
    """Return the first "model name" of /proc/cpuinfo, or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def read_ram() -> str:
    """Return MemTotal of /proc/meminfo in GiB, or "unknown"."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024**2:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def read_commit() -> str:
    """Return the short commit hash, marked when the working tree has changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} plus uncommitted changes" if status.strip() else commit


@dataclass
class LogFinding:
    """Repeats of one warning or error in one process's log."""

    log: str
    level: str
    count: int
    example: str


def scan_logs(log_dir: Path) -> list[LogFinding]:
    """Group the WARNING, ERROR and CRITICAL lines and tracebacks of every log file.

    Lines that differ only in ids and numbers count as one finding.
    """
    findings = []
    for path in sorted(log_dir.glob("*.log")):
        counts: Counter[tuple[str, str]] = Counter()
        examples: dict[tuple[str, str], str] = {}
        for line in path.read_text(errors="replace").splitlines():
            match = LOG_LEVEL.search(line)
            if match:
                level = match.group(1)
            elif line.startswith("Traceback"):
                level = "TRACEBACK"
            else:
                continue
            message = line[match.end() :] if match else line
            key = (level, VARIABLE_PARTS.sub("#", message)[:160])
            counts[key] += 1
            examples.setdefault(key, line.strip()[:300])
        for key, count in counts.most_common(LOG_EXAMPLES):
            findings.append(LogFinding(path.name, key[0], count, examples[key]))
    return findings


@dataclass
class Report:
    """Everything one run measured, with the machine and the settings it ran with."""

    machine: dict[str, str]
    options: dict[str, Any]
    servers: dict[str, str]
    catalog_import: ImportResult
    throughput: list[ThroughputResult]
    system: SystemResults
    logs: list[LogFinding] = field(default_factory=list)
    duration_s: float = 0.0


def paired_ratio(numerator: Summary, denominator: Summary) -> Summary:
    """Return the ratios of samples taken in the same repetition, summarized."""
    pairs = zip(numerator.samples, denominator.samples, strict=True)
    return summarize([n / d for n, d in pairs if d])


def format_number(value: float) -> str:
    """Return ``value`` with thousands separators, and decimals only below 100."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def summary_cells(summary: Summary) -> list[str]:
    """Return the median, range and spread columns of one figure."""
    spread = f"{summary.spread_percent:.0f}%"
    value_range = f"{format_number(summary.low)}-{format_number(summary.high)}"
    return [format_number(summary.median), value_range, spread]


def format_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Return rows as aligned text columns, text left-aligned and numbers right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def figure_rows(report: Report) -> list[list[str]]:
    """Return one table row per measured figure."""
    rows: list[list[str]] = []

    def add(label: str, summary: Summary, unit: str) -> None:
        rows.append([label, *summary_cells(summary), unit])

    imported = report.catalog_import
    add(f"catalogue import ({imported.records:,} records)", imported.seconds, "s")
    add("catalogue import rate", imported.records_per_s, "records/s")
    for result in report.throughput:
        scenario = result.scenario
        label = (
            f"commands, {scenario.commands:,} over {scenario.showtimes} "
            f"showtime{'s' if scenario.showtimes > 1 else ''}"
        )
        add(label, result.commands_per_s, "commands/s")

    latency = report.system.latency
    add("booking POST ?wait, p50", latency.p50_ms, "ms")
    add("booking POST ?wait, p95", latency.p95_ms, "ms")
    add("booking POST ?wait, p99", latency.p99_ms, "ms")
    lag = report.system.lag
    add("202 to ticket decided, p50", lag.readable_p50_ms, "ms")
    add("202 to ticket decided, p95", lag.readable_p95_ms, "ms")
    add("  202 to decision stored, p50", lag.stored_p50_ms, "ms")
    add("  stored to ticket decided, p50", lag.stored_to_readable_p50_ms, "ms")

    for read in report.system.reads:
        add(f"GET {read.endpoint} ({read.client})", read.requests_per_s, "requests/s")
        add(f"  p50 latency ({read.client})", read.p50_ms, "ms")
        add(f"  p99 latency ({read.client})", read.p99_ms, "ms")
        add(f"  max latency ({read.client})", read.max_ms, "ms")
    return rows


def find_read(reads: list[ReadResult], endpoint: str, client: str) -> ReadResult | None:
    """Return the result of one endpoint and client, or None when it did not run."""
    for read in reads:
        if read.endpoint == endpoint and read.client == client:
            return read
    return None


def ratio_rows(report: Report) -> list[list[str]]:
    """Return ratios of figures measured in the same repetitions of this run."""
    rows: list[list[str]] = []
    by_name = {r.scenario.name: r for r in report.throughput}
    if "hot" in by_name and "many" in by_name:
        ratio = paired_ratio(
            by_name["many"].commands_per_s, by_name["hot"].commands_per_s
        )
        rows.append(["commands/s, many showtimes / one hot", *summary_cells(ratio)])

    reads = report.system.reads
    seats_minimal = find_read(reads, "seat map", "minimal")
    seats_httpx = find_read(reads, "seat map", "httpx")
    movies_minimal = find_read(reads, "movies page", "minimal")
    if seats_minimal and seats_httpx:
        ratio = paired_ratio(seats_minimal.requests_per_s, seats_httpx.requests_per_s)
        rows.append(["seat map requests/s, minimal / httpx", *summary_cells(ratio)])
    if seats_minimal and movies_minimal:
        ratio = paired_ratio(
            seats_minimal.requests_per_s, movies_minimal.requests_per_s
        )
        rows.append(
            ["requests/s, seat map / movies page (minimal)", *summary_cells(ratio)]
        )
    latency = report.system.latency
    lag = report.system.lag
    ratio = paired_ratio(latency.p50_ms, lag.readable_p50_ms)
    rows.append(["booking p50 with ?wait / 202-to-decided p50", *summary_cells(ratio)])
    return rows


def cpu_lines(report: Report) -> list[str]:
    """Return the median CPU share of each process during each measurement."""

    def shares(cpu: dict[str, float]) -> str:
        return ", ".join(f"{name} {share:.2f}" for name, share in sorted(cpu.items()))

    lines = []
    for result in report.throughput:
        lines.append(f"  commands ({result.scenario.name}): {shares(result.cpu)}")
    lines.append(f"  booking latency: {shares(report.system.latency.cpu)}")
    for read in report.system.reads:
        lines.append(f"  GET {read.endpoint} ({read.client}): {shares(read.cpu)}")
    return lines


def render(report: Report) -> str:
    """Return the printed report: machine, table, ratios, CPU shares and log check."""
    machine = report.machine
    options = report.options
    servers = ", ".join(f"{name} {source}" for name, source in report.servers.items())
    lines = [
        f"Boxoffice benchmark, {machine['date']}, commit {machine['commit']}",
        f"Machine: nproc {machine['nproc']}, {machine['cpu_model']}, "
        f"{machine['ram']} RAM, Python {machine['python']}, {machine['os']}",
        f"Servers: {servers}",
        f"Repetitions: {options['repetitions']}. Median, range (min-max) and spread "
        "(range / median) over the repetitions.",
        "",
    ]
    header = ["figure", "median", "range", "spread", "unit"]
    lines += format_table(header, figure_rows(report))

    lines += ["", "Ratios, per repetition then the median:"]
    lines += format_table(["ratio", "median", "range", "spread"], ratio_rows(report))

    system = report.system
    latency = system.latency
    projection = system.projection
    throughput_notes = [
        f"  {r.scenario.name}: {r.booked:,} booked and {r.rejected:,} rejected "
        f"per run; sending took {format_number(r.send_seconds.median)} s (median)"
        for r in report.throughput
    ]
    lines += [
        "",
        "Details:",
        f"  catalogue: per import {report.catalog_import.registered:,} movies "
        f"registered, records rejected: {report.catalog_import.rejected}",
        *throughput_notes,
        f"  booking latency: {latency.requests} requests per repetition, one at a "
        f"time; statuses {latency.statuses}",
        f"  202 to decided: {system.lag.requests} requests per repetition; "
        f"{system.lag.timeouts} not decided within 10 s",
        f"  catalogue projection (set-up, one run): {projection.movies:,} movies "
        f"readable through GET /movies {projection.until_all_s:.1f} s after the "
        f"workers started, {projection.first_to_all_s:.1f} s after the first one "
        f"({projection.movies_per_s:,.0f} movies/s)",
    ]
    for read in system.reads:
        lines.append(
            f"  GET {read.path} ({read.client}): statuses {read.statuses}, "
            f"{options['concurrency']} connections for {options['duration_s']} s"
        )

    lines += [
        "",
        "CPU share while measured, in cores (1.00 is one core busy the whole time;",
        "machine counts every process on the machine, also other users'):",
        *cpu_lines(report),
        "",
        "Log check (WARNING, ERROR, CRITICAL lines and tracebacks of our processes):",
    ]
    if report.logs:
        for finding in report.logs:
            lines.append(f"  {finding.log}: {finding.count} x {finding.level}")
            lines.append(f"    {finding.example}")
    else:
        lines.append("  none")
    lines.append("")
    lines.append(f"Run took {report.duration_s:.0f} s.")
    return "\n".join(lines)


def to_json(report: Report) -> dict[str, Any]:
    """Return the report as JSON-compatible data, with every sample."""
    data: dict[str, Any] = dataclasses.asdict(report)
    data["argv"] = sys.argv
    return data
