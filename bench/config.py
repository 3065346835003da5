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

# Paths in the order they run; ``--only`` selects some (or a group: an alias).
GROUPS = (
    "baseline-amqp",
    "baseline-pg",
    "inproc-throughput",
    "inproc-paced",
    "amqp-throughput",
    "amqp-paced",
    "api",  # the identity API beside a bare aiohttp handler (bench/api.py)
    "image",  # image data through the gateway beside a raw file copy (bench/image.py)
    "compute",  # 1,000 fake hosts: boots, deletes, detail list, scheduling (bench/compute.py)
    "libvirt",  # real guests: aiostack's boot beside plain libvirt-python (bench/libvirt_boot.py)
)
# Run only when asked for with --only: they need root and libvirtd, and boot real guests.
OPT_IN = ("libvirt",)
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
    pace_batches: tuple[int, ...]
    naive_events: int
    window: int
    pg_batch: int
    warmup: int
    prefetch: int
    max_batch: int
    outbox_batch: int
    outbox_partitions: int
    pool_size: int
    groups: tuple[str, ...]
    timeout_s: float
    # The "api" group (bench/api.py): seconds measured and of warm-up per cell, concurrencies.
    api_seconds: float = 5.0
    api_warmup: float = 1.0
    api_concurrency: tuple[int, ...] = (1, 8, 32)
    # The "image" group (bench/image.py): MiB uploaded and downloaded.
    image_mib: int = 1024
    # The "compute" group (bench/compute.py): --quick runs it at a smoke-test scale.
    quick: bool = False
    # The "libvirt" group (bench/libvirt_boot.py): timed boots of each kind.
    boots: int = 3

    @property
    def paced_events(self) -> int:
        return max(1, round(self.rate * self.seconds))


def _env(*names: str, default: str) -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("each value must be at least 1")
    return tuple(sorted(set(values)))


def _expand(names: Sequence[str]) -> tuple[str, ...]:
    wanted = {group for name in names for group in ALIASES.get(name, (name,))}
    return tuple(group for group in GROUPS if group in wanted)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="aiostack end-to-end event throughput and latency benchmark.",
    )
    add = p.add_argument
    add("--events", type=int, help="events per sustained path (default 20000; 2000 with --quick)")
    add("--rate", type=float, default=1000.0, help="events/s of the paced runs (default 1000)")
    add("--seconds", type=float, help="length of the paced runs (default 10; 2 with --quick)")
    add("--quick", action="store_true", help="a short smoke run")
    add("--batch", type=int, default=100, help="events per transaction, sustained (default 100)")
    add("--producers", type=int, default=1, help="concurrent emitting tasks, sustained (default 1)")
    add("--streams", type=int, default=16, help="distinct event streams (default 16)")
    add(
        "--pace-batch",
        type=_positive_ints,
        default=(1, 10),
        metavar="N[,N...]",
        help="events per transaction in paced runs, one run each (default 1,10)",
    )
    add(
        "--naive-events", type=int, help="messages, naive AMQP baseline (default min(events, 5000))"
    )
    add("--window", type=int, default=1000, help="confirms in flight, pipelined AMQP baseline")
    add("--pg-batch", type=int, default=500, help="rows per transaction, asyncpg baselines")
    add("--warmup", type=int, default=500, help="events through each pipeline before measuring")
    add(
        "--prefetch",
        type=int,
        default=_CONSUMER.prefetch,
        help=f"consumer prefetch (runtime default {_CONSUMER.prefetch})",
    )
    add(
        "--max-batch",
        type=int,
        default=_CONSUMER.max_batch,
        help=f"consumer deliveries per transaction (runtime default {_CONSUMER.max_batch})",
    )
    add(
        "--outbox-batch",
        type=int,
        default=_RUNTIME.outbox_batch,
        help=f"relay rows per publish (runtime default {_RUNTIME.outbox_batch})",
    )
    add(
        "--outbox-partitions",
        type=int,
        default=_RUNTIME.outbox_partitions,
        help=f"outbox partitions (runtime default {_RUNTIME.outbox_partitions})",
    )
    add("--pool-size", type=int, default=10, help="store pool connections (Store.open default 10)")
    add(
        "--only",
        action="append",
        choices=(*GROUPS, *ALIASES),
        metavar="PATH",
        help=f"run only these paths (repeatable): {', '.join((*GROUPS, *ALIASES))}",
    )
    add("--timeout", type=float, default=300.0, help="give up on a path after this many seconds")
    add(
        "--api-seconds",
        type=float,
        help="api: seconds measured per cell (default 5; 1.5 with --quick)",
    )
    add(
        "--api-concurrency",
        type=_positive_ints,
        default=(1, 8, 32),
        metavar="N[,N...]",
        help="api: concurrent connections, one cell each (default 1,8,32)",
    )
    add("--image-mib", type=int, help="image: MiB moved each way (default 1024; 256 with --quick)")
    add("--boots", type=int, default=3, help="libvirt: timed boots of each kind (default 3)")
    add("--database-url", help="admin DSN (default: env AIOSTACK_BENCH_DATABASE_URL, local)")
    add("--amqp-url", help="broker URL (default: env AIOSTACK_BENCH_AMQP_URL, local)")
    return p


def parse(argv: Sequence[str] | None = None) -> Settings:
    p = parser()
    args = p.parse_args(argv)
    events = args.events if args.events is not None else (2000 if args.quick else 20_000)
    seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 10.0)
    naive = args.naive_events if args.naive_events is not None else min(events, 5000)
    counts = {
        "events": events,
        "batch": args.batch,
        "producers": args.producers,
        "streams": args.streams,
        "naive-events": naive,
        "window": args.window,
        "pg-batch": args.pg_batch,
        "prefetch": args.prefetch,
        "max-batch": args.max_batch,
        "outbox-batch": args.outbox_batch,
        "outbox-partitions": args.outbox_partitions,
        "pool-size": args.pool_size,
    }
    for flag, value in counts.items():
        if value < 1:
            p.error(f"--{flag} must be at least 1")
    if args.boots < 1:
        p.error("--boots must be at least 1")
    if args.rate <= 0 or seconds <= 0:
        p.error("--rate and --seconds must be positive")
    api_seconds = args.api_seconds if args.api_seconds is not None else (1.5 if args.quick else 5.0)
    if api_seconds <= 0:
        p.error("--api-seconds must be positive")
    return Settings(
        database_url=args.database_url
        or _env(
            "AIOSTACK_BENCH_DATABASE_URL",
            "AIOSTACK_TEST_DATABASE_URL",
            default=DEFAULT_DATABASE_URL,
        ),
        amqp_url=args.amqp_url
        or _env("AIOSTACK_BENCH_AMQP_URL", "AIOSTACK_TEST_AMQP_URL", default=DEFAULT_AMQP_URL),
        events=events,
        batch=args.batch,
        producers=args.producers,
        streams=args.streams,
        rate=args.rate,
        seconds=seconds,
        pace_batches=args.pace_batch,
        naive_events=naive,
        window=args.window,
        pg_batch=args.pg_batch,
        warmup=min(args.warmup, 200) if args.quick else max(0, args.warmup),
        prefetch=args.prefetch,
        max_batch=args.max_batch,
        outbox_batch=args.outbox_batch,
        outbox_partitions=args.outbox_partitions,
        pool_size=args.pool_size,
        groups=_expand(args.only) if args.only else tuple(g for g in GROUPS if g not in OPT_IN),
        timeout_s=args.timeout,
        api_seconds=api_seconds,
        api_warmup=0.5 if args.quick else 1.0,
        api_concurrency=args.api_concurrency,
        image_mib=args.image_mib or (256 if args.quick else 1024),
        quick=args.quick,
        boots=args.boots,
    )
