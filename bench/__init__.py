"""End-to-end event throughput and latency benchmark for aiostack.

Run with ``python -m bench`` (``make bench``). It measures, in one process and one run:

- baselines: raw aio-pika publish-with-confirm + consume, and asyncpg batched inserts;
- the aiostack pipeline (emit in a transaction -> outbox -> relay -> bus -> consumer -> inbox commit)
  over ``InProcBus`` and ``AmqpBus``, sustained and at a paced rate,

and prints one aligned table plus the targets, each marked PASS or MISS.
"""
