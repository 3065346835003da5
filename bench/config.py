"""Command-line flags and environment variables, turned into one ``Settings``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cloud.runtime.consumer import ConsumerOptions
from cloud.runtime.supervisor import RuntimeOptions

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"

GROUPS = (
    "baseline-amqp",
    "baseline-pg",
    "inproc-throughput",
    "inproc-paced",
    "amqp-throughput",
    "amqp-paced",
)
ALIASES = {
    "baselines": ("baseline-amqp", "baseline-pg"),
    "inproc": ("inproc-throughput", "inproc-paced"),
    "amqp": ("amqp-throughput", "amqp-paced"),
}

_CONSUMER = ConsumerOptions()
_RUNTIME = RuntimeOptions(host="bench")


@dataclass(frozen=True)
class Settings:
    """Everything a run needs. ``database_url`` is an admin DSN: a fresh database is made beside it."""

    database_url: str
    amqp_url: str
    events: int
    batch: int
    producers: int
    streams: int
    rate: float
    seconds: float
    pace_batch: int
    naive_events: int
    window: int
    pg_batch: int
    warmup: int
    prefetch: int
    max_batch: int
    outbox_batch: int
    outbox_partitions: int
    groups: tuple[str, ...]
    timeout_s: float

    @property
    def paced_events(self) -> int:
        return max(1, round(self.rate * self.seconds))


def _env(*names: str, default: str) -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


def _expand(names: Sequence[str]) -> tuple[str, ...]:
    wanted = {g for name in names for g in ALIASES.get(name, (name,))}
    return tuple(g for g in GROUPS if g in wanted)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="aiostack end-to-end event throughput and latency benchmark.",
    )
    p.add_argument(
        "--events",
        type=int,
        default=None,
        help="events per sustained-throughput path (default 20000; 2000 with --quick)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="events/s of the paced latency runs (default 1000)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="duration of the paced latency runs (default 10; 2 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument(
        "--batch",
        type=int,
        default=100,
        help="events emitted per transaction in throughput runs (default 100)",
    )
    p.add_argument(
        "--producers",
        type=int,
        default=1,
        help="concurrent emitting tasks in throughput runs (default 1)",
    )
    p.add_argument(
        "--streams",
        type=int,
        default=16,
        help="distinct event streams (spread over outbox partitions, default 16)",
    )
    p.add_argument(
        "--pace-batch",
        type=int,
        default=1,
        help="events per transaction in paced runs (default 1: one per request)",
    )
    p.add_argument(
        "--naive-events",
        type=int,
        default=None,
        help="messages of the naive one-by-one AMQP baseline (default: min(events, 5000))",
    )
    p.add_argument(
        "--window",
        type=int,
        default=1000,
        help="outstanding confirms of the pipelined AMQP baseline (default 1000)",
    )
    p.add_argument(
        "--pg-batch",
        type=int,
        default=500,
        help="rows per transaction of the asyncpg baselines (default 500)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="events pushed through each pipeline before measuring (default 500)",
    )
    p.add_argument(
        "--prefetch",
        type=int,
        default=_CONSUMER.prefetch,
        help=f"consumer prefetch (runtime default {_CONSUMER.prefetch})",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=_CONSUMER.max_batch,
        help=f"consumer deliveries per transaction (runtime default {_CONSUMER.max_batch})",
    )
    p.add_argument(
        "--outbox-batch",
        type=int,
        default=_RUNTIME.outbox_batch,
        help=f"relay rows per publish (runtime default {_RUNTIME.outbox_batch})",
    )
    p.add_argument(
        "--outbox-partitions",
        type=int,
        default=_RUNTIME.outbox_partitions,
        help=f"outbox partitions (runtime default {_RUNTIME.outbox_partitions})",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=GROUPS,
        default=None,
        help="run only these paths (repeatable); default: all",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="give up on a path that has not finished after this many seconds",
    )
    p.add_argument(
        "--database-url", default=None, help="admin DSN (env AIOSTACK_BENCH_DATABASE_URL)"
    )
    p.add_argument("--amqp-url", default=None, help="broker URL (env AIOSTACK_BENCH_AMQP_URL)")
    return p


def parse(argv: Sequence[str] | None = None) -> Settings:
    args = parser().parse_args(argv)
    events = args.events if args.events is not None else (2000 if args.quick else 20_000)
    seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 10.0)
    naive = args.naive_events if args.naive_events is not None else min(events, 5000)
    database_url = args.database_url or _env(
        "AIOSTACK_BENCH_DATABASE_URL", "AIOSTACK_TEST_DATABASE_URL", default=DEFAULT_DATABASE_URL
    )
    amqp_url = args.amqp_url or _env(
        "AIOSTACK_BENCH_AMQP_URL", "AIOSTACK_TEST_AMQP_URL", default=DEFAULT_AMQP_URL
    )
    for name in ("events", "batch", "producers", "streams", "pace_batch", "window", "pg_batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser().error(f"--{name.replace('_', '-')} must be at least 1")
    if args.rate <= 0 or seconds <= 0:
        parser().error("--rate and --seconds must be positive")
    return Settings(
        database_url=database_url,
        amqp_url=amqp_url,
        events=events,
        batch=args.batch,
        producers=args.producers,
        streams=args.streams,
        rate=args.rate,
        seconds=seconds,
        pace_batch=args.pace_batch,
        naive_events=naive,
        window=args.window,
        pg_batch=args.pg_batch,
        warmup=min(args.warmup, 200) if args.quick else args.warmup,
        prefetch=args.prefetch,
        max_batch=args.max_batch,
        outbox_batch=args.outbox_batch,
        outbox_partitions=args.outbox_partitions,
        groups=_expand(args.only) if args.only else GROUPS,
        timeout_s=args.timeout,
    )
