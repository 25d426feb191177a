"""HTTP measurements on a whole system: booking latency, projection lag, hot reads.

The system is the API and the three workers (processor, relay, projector) as child
processes on one database and namespace, with the whole catalogue imported and
Hall 1 showtimes scheduled. The client is this process, with httpx.
"""

import asyncio
import logging
import math
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from benchmarks.bench_commands import EVENTS_TABLE
from benchmarks.load import LoadLimits, LoadRun, httpx_load, minimal_load
from benchmarks.services import WORKERS, CpuMeter, Stack, Workspace
from benchmarks.showtimes import SEAT_IDS, ShowtimeScheduler, import_movies
from benchmarks.stats import Summary, percentile, summarize
from commands.catalog_import import read_feed
from infra.runtime.stack import initialise

logger = logging.getLogger(__name__)

WAIT_MS = 10_000
READY_TIMEOUT_S = 120.0
WARM_UP_BOOKINGS = 10
LAG_POLL_INTERVAL_S = 0.005
LAG_TIMEOUT_S = 10.0
READ_WARM_UP_S = 1.0
HTTP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.1
MAX_VERSION = (
    f"SELECT max(originator_version) FROM {EVENTS_TABLE} WHERE originator_id = %s"
)


class SystemNotReadyError(RuntimeError):
    """The system did not reach the state a measurement needs in time."""


@dataclass
class HttpSizes:
    """How much load each measurement applies."""

    repetitions: int
    booking_requests: int
    lag_requests: int
    concurrency: int
    duration_s: float
    # Upper bound on the requests of one read run, whatever its duration.
    max_read_requests: int = 500_000


@dataclass
class LatencyResult:
    """Booking latency with ``?wait=``, per repetition percentiles in milliseconds."""

    requests: int
    p50_ms: Summary
    p95_ms: Summary
    p99_ms: Summary
    statuses: dict[str, int]
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class LagResult:
    """Times after the 202 response, per repetition medians and p95s in milliseconds."""

    requests: int
    readable_p50_ms: Summary
    readable_p95_ms: Summary
    stored_p50_ms: Summary
    stored_to_readable_p50_ms: Summary
    timeouts: int


@dataclass
class ReadResult:
    """One endpoint under a bounded concurrent load from one client."""

    endpoint: str
    client: str
    path: str
    requests_per_s: Summary
    p50_ms: Summary
    p99_ms: Summary
    max_ms: Summary
    statuses: dict[str, int]
    cpu: dict[str, float] = field(default_factory=dict)


@dataclass
class ProjectionTiming:
    """Times at which the imported catalogue became readable through GET /movies.

    Measured once, during set-up, by polling GET /movies every POLL_INTERVAL_S.
    """

    movies: int
    # From the start of the worker processes, so including consumer-group joins.
    until_all_s: float
    # From the first movie readable to the last one.
    first_to_all_s: float

    @property
    def movies_per_s(self) -> float:
        """Return the projection rate between the first and the last movie."""
        return self.movies / self.first_to_all_s if self.first_to_all_s else 0.0


@dataclass
class SystemResults:
    """Everything measured on the whole system, and how its catalogue was projected."""

    projection: ProjectionTiming
    latency: LatencyResult
    lag: LagResult
    reads: list[ReadResult]


class SeatPool:
    """Free Hall 1 seats of scheduled showtimes, handed out one at a time."""

    def __init__(self, showtime_ids: list[str]) -> None:
        self.pairs = [(s, seat) for s in showtime_ids for seat in SEAT_IDS]
        self.next = 0

    def take(self) -> tuple[str, str]:
        """Return a showtime id and one of its seats that no earlier call returned."""
        if self.next >= len(self.pairs):
            raise RuntimeError("the seat pool is exhausted: schedule more showtimes")
        pair = self.pairs[self.next]
        self.next += 1
        return pair


def booking_body(showtime_id: str, seat: str) -> dict[str, object]:
    """Return the JSON body of a one-seat booking."""
    return {"showtimeId": showtime_id, "seats": [seat], "paymentMethod": "card"}


def idempotency_headers() -> dict[str, str]:
    """Return a header with an Idempotency-Key no other request uses."""
    return {"Idempotency-Key": f"bench-{uuid.uuid4().hex}"}


class SystemBench:
    """A whole Boxoffice system and the HTTP measurements against it."""

    def __init__(
        self, workspace: Workspace, catalog_path: Path, sizes: HttpSizes
    ) -> None:
        self.workspace = workspace
        self.catalog_path = catalog_path
        self.sizes = sizes
        self.settings = workspace.new_settings()
        self.stack: Stack = workspace.new_stack(self.settings, "system")
        self.movie_count = 0
        self.pool = SeatPool([])
        self.lag_pool = SeatPool([])

    def prepare(self) -> ProjectionTiming:
        """Set up data, start every process and wait for the read models."""
        url = self.settings.require("POSTGRES_URL")
        initialise(self.settings)
        movie_ids = import_movies(url, read_feed(self.catalog_path))
        self.movie_count = len(set(movie_ids))

        seats_needed = WARM_UP_BOOKINGS + self.sizes.repetitions * (
            self.sizes.booking_requests
        )
        lag_needed = self.sizes.repetitions * self.sizes.lag_requests
        scheduler = ShowtimeScheduler(url, movie_ids[0])
        try:
            showtime_ids = scheduler.schedule(math.ceil(seats_needed / len(SEAT_IDS)))
            # The lag measurement books showtimes of its own, one booking at a
            # time, so that each decision raises its showtime's version by one.
            lag_ids = scheduler.schedule(math.ceil(lag_needed / len(SEAT_IDS)))
        finally:
            scheduler.close()
        self.pool = SeatPool(showtime_ids)
        self.lag_pool = SeatPool(lag_ids)

        started = time.monotonic()
        for name in WORKERS:
            self.stack.start(name)
        self.stack.start("api")
        self.stack.wait_for_api(READY_TIMEOUT_S)
        projection = self.wait_for_movies(started)
        for showtime_id in [*showtime_ids, *lag_ids]:
            self.wait_until(
                lambda s=showtime_id: self.seat_map_readable(s),
                f"seat map of showtime {showtime_id} readable",
            )
        return projection

    def wait_for_movies(self, workers_started: float) -> ProjectionTiming:
        """Poll GET /movies until it counts every imported movie, timing the rise."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        first_seen = None
        total = 0
        while time.monotonic() < deadline:
            self.stack.check_running()
            total = self.movies_total()
            now = time.monotonic()
            if total and first_seen is None:
                first_seen = now
            if total == self.movie_count and first_seen is not None:
                return ProjectionTiming(
                    movies=total,
                    until_all_s=now - workers_started,
                    first_to_all_s=now - first_seen,
                )
            time.sleep(POLL_INTERVAL_S)
        raise SystemNotReadyError(
            f"GET /movies counted {total} of {self.movie_count} movies after "
            f"{READY_TIMEOUT_S:.0f} s; see {self.stack.log_path('projector')}"
        )

    def movies_total(self) -> int:
        """Return the total that GET /movies reports, 0 when it fails."""
        try:
            response = httpx.get(
                f"{self.stack.api}/movies", params={"limit": 1}, timeout=5.0
            )
        except httpx.HTTPError:
            return 0
        if response.status_code != 200:
            return 0
        return int(response.json().get("total", 0))

    def wait_until(self, condition: Callable[[], bool], description: str) -> None:
        """Poll ``condition`` until it is true; raise SystemNotReadyError on timeout."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.stack.check_running()
            if condition():
                return
            time.sleep(0.2)
        raise SystemNotReadyError(
            f"{description} did not happen within {READY_TIMEOUT_S} s"
        )

    def seat_map_readable(self, showtime_id: str) -> bool:
        """Return whether GET /showtimes/{id}/seats returns 200."""
        try:
            response = httpx.get(
                f"{self.stack.api}/showtimes/{showtime_id}/seats", timeout=5.0
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def run(
        self, projection: ProjectionTiming, progress: Callable[[str], None]
    ) -> SystemResults:
        """Run the three measurements in turn, reporting each start to ``progress``."""
        async with httpx.AsyncClient(
            base_url=self.stack.api, timeout=HTTP_TIMEOUT_S
        ) as client:
            await self.warm_up_bookings(client)
            progress("booking latency and 202-to-decided")
            latency = await self.measure_latency(client)
            lag = await self.measure_lag(client)
        progress("hot reads")
        reads = await self.measure_reads()
        return SystemResults(projection, latency, lag, reads)

    async def warm_up_bookings(self, client: httpx.AsyncClient) -> None:
        """Book until the processor has joined its group and bookings are confirmed."""
        confirmed = 0
        deadline = time.monotonic() + READY_TIMEOUT_S
        while confirmed < WARM_UP_BOOKINGS:
            if time.monotonic() > deadline:
                raise SystemNotReadyError(
                    f"only {confirmed} of {WARM_UP_BOOKINGS} warm-up bookings were "
                    f"confirmed within {READY_TIMEOUT_S:.0f} s"
                )
            self.stack.check_running()
            showtime_id, seat = self.pool.take()
            response = await client.post(
                "/book-tickets",
                params={"wait": WAIT_MS},
                json=booking_body(showtime_id, seat),
                headers=idempotency_headers(),
            )
            if response.status_code == 201:
                confirmed += 1

    async def measure_latency(self, client: httpx.AsyncClient) -> LatencyResult:
        """Send bookings one at a time with ``?wait=`` and time each response."""
        p50, p95, p99 = [], [], []
        statuses: Counter[str] = Counter()
        cpu_runs = []
        for repetition in range(1, self.sizes.repetitions + 1):
            meter = CpuMeter(self.stack)
            meter.start()
            latencies = await self.booking_latencies(client, statuses)
            cpu_runs.append(meter.shares())
            p50.append(percentile(latencies, 50))
            p95.append(percentile(latencies, 95))
            p99.append(percentile(latencies, 99))
            logger.info(
                "latency %d/%d: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms",
                repetition,
                self.sizes.repetitions,
                p50[-1],
                p95[-1],
                p99[-1],
            )
        return LatencyResult(
            requests=self.sizes.booking_requests,
            p50_ms=summarize(p50),
            p95_ms=summarize(p95),
            p99_ms=summarize(p99),
            statuses=dict(statuses),
            cpu=median_shares(cpu_runs),
        )

    async def booking_latencies(
        self, client: httpx.AsyncClient, statuses: Counter[str]
    ) -> list[float]:
        """Return the milliseconds of each booking that got a 201 or 409 response."""
        latencies = []
        for _ in range(self.sizes.booking_requests):
            showtime_id, seat = self.pool.take()
            started = time.perf_counter()
            response = await client.post(
                "/book-tickets",
                params={"wait": WAIT_MS},
                json=booking_body(showtime_id, seat),
                headers=idempotency_headers(),
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            statuses[str(response.status_code)] += 1
            if response.status_code in (201, 409):
                latencies.append(elapsed_ms)
        if not latencies:
            raise SystemNotReadyError(
                f"no booking was decided within its wait; statuses: {dict(statuses)}"
            )
        return latencies

    async def measure_lag(self, client: httpx.AsyncClient) -> LagResult:
        """Book without waiting, then time when the decision is stored and readable."""
        readable_p50, readable_p95, stored_p50, between_p50 = [], [], [], []
        timeouts = 0
        conn = await psycopg.AsyncConnection.connect(
            self.settings.require("POSTGRES_URL"), autocommit=True
        )
        try:
            for repetition in range(1, self.sizes.repetitions + 1):
                stored, readable = [], []
                for _ in range(self.sizes.lag_requests):
                    timing = await self.lag_once(client, conn)
                    if timing is None:
                        timeouts += 1
                        continue
                    stored.append(timing[0])
                    readable.append(timing[1])
                if not readable:
                    raise SystemNotReadyError("no booking became readable as decided")
                readable_p50.append(percentile(readable, 50))
                readable_p95.append(percentile(readable, 95))
                stored_p50.append(percentile(stored, 50))
                between = [r - s for s, r in zip(stored, readable, strict=True)]
                between_p50.append(percentile(between, 50))
                logger.info(
                    "lag %d/%d: stored p50 %.1f ms, readable p50 %.1f ms",
                    repetition,
                    self.sizes.repetitions,
                    stored_p50[-1],
                    readable_p50[-1],
                )
        finally:
            await conn.close()
        return LagResult(
            requests=self.sizes.lag_requests,
            readable_p50_ms=summarize(readable_p50),
            readable_p95_ms=summarize(readable_p95),
            stored_p50_ms=summarize(stored_p50),
            stored_to_readable_p50_ms=summarize(between_p50),
            timeouts=timeouts,
        )

    async def lag_once(
        self, client: httpx.AsyncClient, conn: psycopg.AsyncConnection
    ) -> tuple[float, float] | None:
        """Book one seat and return the ms from the 202 to stored and to readable.

        Returns None when either did not happen within LAG_TIMEOUT_S.
        """
        showtime_id, seat = self.lag_pool.take()
        version_before = await max_version(conn, showtime_id)
        response = await client.post(
            "/book-tickets",
            json=booking_body(showtime_id, seat),
            headers=idempotency_headers(),
        )
        accepted = time.perf_counter()
        if response.status_code != 202:
            raise SystemNotReadyError(
                f"POST /book-tickets returned {response.status_code}, expected 202: "
                f"{response.text[:300]}"
            )
        booking_id = response.json()["bookingId"]
        deadline = accepted + LAG_TIMEOUT_S
        stored_at, readable_at = await asyncio.gather(
            poll_stored(conn, showtime_id, version_before, deadline),
            poll_decided(client, booking_id, deadline),
        )
        if stored_at is None or readable_at is None:
            return None
        return (stored_at - accepted) * 1000, (readable_at - accepted) * 1000

    async def measure_reads(self) -> list[ReadResult]:
        """Load each hot read endpoint with each client, ``repetitions`` times.

        The runs are interleaved (every endpoint and client once per repetition),
        so that a noisy neighbour on the machine affects them alike.
        """
        endpoints = {
            "seat map": f"/showtimes/{self.pool.pairs[0][0]}/seats",
            "movies page": "/movies?page=1&limit=20",
        }
        limits = LoadLimits(
            self.sizes.concurrency, self.sizes.duration_s, self.sizes.max_read_requests
        )
        warm_up = LoadLimits(self.sizes.concurrency, READ_WARM_UP_S, 10_000)
        clients = {"httpx": httpx_load, "minimal": minimal_load}
        if shutil.which("wrk"):
            clients["wrk"] = self.wrk_load
        runs: dict[tuple[str, str], list[LoadRun]] = {}
        cpu_runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for path in endpoints.values():
            await minimal_load(self.stack.api, path, warm_up)
        for repetition in range(1, self.sizes.repetitions + 1):
            for endpoint, path in endpoints.items():
                for client, load in clients.items():
                    meter = CpuMeter(self.stack)
                    meter.start()
                    run = await load(self.stack.api, path, limits)
                    cpu_runs.setdefault((endpoint, client), []).append(meter.shares())
                    runs.setdefault((endpoint, client), []).append(run)
                    logger.info(
                        "reads %s with %s %d/%d: %.0f requests/s, statuses %s",
                        endpoint,
                        client,
                        repetition,
                        self.sizes.repetitions,
                        run.ok / run.seconds,
                        dict(run.statuses),
                    )
        results = []
        for (endpoint, client), load_runs in runs.items():
            cpu = cpu_runs[(endpoint, client)]
            path = endpoints[endpoint]
            results.append(summarize_reads(endpoint, client, path, load_runs, cpu))
        return results

    async def wrk_load(self, base_url: str, path: str, limits: LoadLimits) -> LoadRun:
        """Run wrk in a thread, so that the event loop stays free meanwhile.

        wrk's CPU time is not part of the harness's share.
        """
        return await asyncio.to_thread(run_wrk, base_url + path, limits)


async def max_version(conn: psycopg.AsyncConnection, showtime_id: str) -> int:
    """Return the version of the showtime's last stored event."""
    cursor = await conn.execute(MAX_VERSION, (uuid.UUID(showtime_id),))
    row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def poll_stored(
    conn: psycopg.AsyncConnection, showtime_id: str, version: int, deadline: float
) -> float | None:
    """Return the perf_counter() time when the showtime has an event past ``version``.

    Returns None when the deadline passes first.
    """
    while time.perf_counter() < deadline:
        if await max_version(conn, showtime_id) > version:
            return time.perf_counter()
        await asyncio.sleep(LAG_POLL_INTERVAL_S)
    return None


async def poll_decided(
    client: httpx.AsyncClient, booking_id: str, deadline: float
) -> float | None:
    """Return the perf_counter() time when GET /tickets/{id} shows a decision.

    Returns None when the deadline passes first.
    """
    while time.perf_counter() < deadline:
        response = await client.get(f"/tickets/{booking_id}")
        if response.status_code == 200 and response.json()["status"] != "pending":
            return time.perf_counter()
        await asyncio.sleep(LAG_POLL_INTERVAL_S)
    return None


def median_shares(runs: list[dict[str, float]]) -> dict[str, float]:
    """Return each process's median CPU share over the runs that measured it."""
    names = sorted(set().union(*runs)) if runs else []
    return {
        name: summarize([run[name] for run in runs if name in run]).median
        for name in names
    }


def summarize_reads(
    endpoint: str,
    client: str,
    path: str,
    runs: list[LoadRun],
    cpu_runs: list[dict[str, float]],
) -> ReadResult:
    """Return the medians and ranges of one endpoint's runs with one client."""
    statuses: Counter[str] = Counter()
    for run in runs:
        statuses.update(run.statuses)

    def latencies(q: int) -> Summary:
        values = [run.latency_ms(q) for run in runs]
        return summarize([v for v in values if v is not None] or [float("nan")])

    return ReadResult(
        endpoint=endpoint,
        client=client,
        path=path,
        requests_per_s=summarize([run.ok / run.seconds for run in runs]),
        p50_ms=latencies(50),
        p99_ms=latencies(99),
        max_ms=latencies(100),
        statuses=dict(statuses),
        cpu=median_shares(cpu_runs),
    )


WRK_REQUESTS = re.compile(r"([0-9]+) requests in ([0-9.]+)(us|ms|s|m)")
WRK_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$", re.MULTILINE)
# The thread statistics line: "Latency  <avg> <stdev> <max> <+/- stdev>".
WRK_MAX = re.compile(
    r"^\s+Latency\s+\S+?(?:us|ms|s|m)\s+\S+?(?:us|ms|s|m)\s+([0-9.]+)(us|ms|s|m)",
    re.MULTILINE,
)
MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def run_wrk(url: str, limits: LoadLimits) -> LoadRun:
    """Load ``url`` with wrk (2 threads, same connections and duration as the others).

    The run's statuses count every response as 200 unless wrk reports non-2xx
    responses or socket errors. Its latencies are wrk's p50, p99 and maximum.
    """
    # NOTE: no machine this was written on has wrk, so this parser was checked
    # only against sample wrk 4 output, never against a real run.
    wrk = shutil.which("wrk") or "wrk"
    duration = max(1, round(limits.duration_s))
    command = [
        wrk, "-t2", f"-c{limits.concurrency}", f"-d{duration}s", "--latency", url
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 30, check=False
        )
    except subprocess.TimeoutExpired:
        return LoadRun(float(duration), [], Counter({"wrk timed out": 1}))
    requests = WRK_REQUESTS.search(result.stdout)
    if result.returncode != 0 or requests is None:
        return LoadRun(float(duration), [], Counter({"wrk failed": 1}))

    seconds = float(requests.group(2)) * MS_PER_UNIT[requests.group(3)] / 1000
    statuses: Counter[str] = Counter({"200": int(requests.group(1))})
    non_2xx = re.search(r"Non-2xx or 3xx responses: ([0-9]+)", result.stdout)
    if non_2xx:
        statuses["200"] -= int(non_2xx.group(1))
        statuses["non-2xx"] = int(non_2xx.group(1))
    if "Socket errors" in result.stdout:
        statuses["socket errors"] = 1
    reported = {
        int(q): float(value) * MS_PER_UNIT[unit]
        for q, value, unit in WRK_PERCENTILE.findall(result.stdout)
    }
    maximum = WRK_MAX.search(result.stdout)
    if maximum:
        reported[100] = float(maximum.group(1)) * MS_PER_UNIT[maximum.group(2)]
    return LoadRun(seconds, [], statuses, reported)


def measure_system(
    workspace: Workspace,
    catalog_path: Path,
    sizes: HttpSizes,
    progress: Callable[[str], None],
) -> SystemResults:
    """Start a whole system and run the HTTP measurements against it."""
    bench = SystemBench(workspace, catalog_path, sizes)
    try:
        projection = bench.prepare()
        return asyncio.run(bench.run(projection, progress))
    finally:
        bench.stack.stop_all()
