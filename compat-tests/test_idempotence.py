"""Idempotent producers against the real broker: retries never duplicate, gaps are refused.

The broker's fault injector (`--fault-drop-produce-responses N --fault-drop-every K`) closes the
connection after a produce request was applied but before its response is written, for N
requests (one in every K). The client cannot know the write happened, so it retries the same
batch on a new connection; the broker must answer with the original offsets and store nothing
twice. Each test prints produced, stored, duplicates, gaps and reorders and fails on any of them.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

from conftest import need

import pytest

FAULTS = 20


def create_topic(bootstrap: str, topic: str, partitions: int):
    ck_admin = need("confluent_kafka.admin")
    admin = ck_admin.AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([ck_admin.NewTopic(topic, num_partitions=partitions)])
    futures[topic].result(timeout=30)


def consume_all(bootstrap: str, topic: str, partitions: int, timeout_s: float = 120.0):
    """Reads every partition from offset 0 up to its high watermark; returns values per
    partition in offset order."""
    ck = need("confluent_kafka")
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"idem-check-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        ends = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(
                ck.TopicPartition(topic, p), timeout=10
            )
            assert low == 0, f"partition {p} starts at {low}"
            ends[p] = high
        consumer.assign([ck.TopicPartition(topic, p, 0) for p in range(partitions)])
        got = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + timeout_s
        while sum(len(v) for v in got.values()) < sum(ends.values()):
            assert time.monotonic() < deadline, "timed out reading back"
            for m in consumer.consume(num_messages=5000, timeout=0.5):
                assert m.error() is None, f"consumer error: {m.error()}"
                got[m.partition()].append(m.value())
        return got
    finally:
        consumer.close()


def verify(produced: dict[int, list[bytes]], stored: dict[int, list[bytes]], label: str):
    """Every partition must hold exactly what was produced to it, in produce order."""
    total_produced = sum(len(v) for v in produced.values())
    total_stored = sum(len(v) for v in stored.values())
    duplicates = gaps = reorders = 0
    for p, want in produced.items():
        got = stored.get(p, [])
        seen = set()
        for v in got:
            if v in seen:
                duplicates += 1
            seen.add(v)
        wanted = set(want)
        gaps += len(wanted - seen)
        if [v for v in got if v in wanted] != [v for v in want if v in seen]:
            reorders += 1
    print(
        f"{label}: produced={total_produced} stored={total_stored} "
        f"duplicates={duplicates} gaps={gaps} reordered_partitions={reorders}"
    )
    assert (total_stored, duplicates, gaps, reorders) == (total_produced, 0, 0, 0)


def dropped_responses(jet) -> int:
    return len(re.findall(r"fault injection: dropped produce response", jet.log_tail(100000)))


def produce_confluent(bootstrap, topic, partitions, count, on_progress=None):
    ck = need("confluent_kafka")
    producer = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "max.in.flight.requests.per.connection": 5,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120000,
            "retry.backoff.ms": 50,
            # Small batches: hundreds of produce requests, so the injector has many to drop.
            "batch.num.messages": 200,
            # Each dropped response is a disconnect; librdkafka's reconnect backoff otherwise
            # grows to 10 s per reconnect.
            "reconnect.backoff.max.ms": 200,
        }
    )
    errors = []
    delivered = [0]

    def cb(err, _msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[0] += 1

    produced = {p: [] for p in range(partitions)}
    for i in range(count):
        p = i % partitions
        value = f"{p}:{len(produced[p]):09d}".encode()
        produced[p].append(value)
        while True:
            try:
                producer.produce(topic, value=value, partition=p, on_delivery=cb)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
            if on_progress:
                on_progress(i)
    remaining = producer.flush(180)
    assert remaining == 0, f"{remaining} messages undelivered"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    assert delivered[0] == count
    return produced


@pytest.mark.jet_args(
    "--fault-drop-produce-responses", str(FAULTS), "--fault-drop-every", "7"
)
def test_librdkafka_retries_do_not_duplicate(jet, topic):
    partitions = 3
    create_topic(jet.bootstrap, topic, partitions)
    produced = produce_confluent(jet.bootstrap, topic, partitions, 200_000)
    assert dropped_responses(jet) == FAULTS, "the fault injector did not fire as configured"
    verify(produced, consume_all(jet.bootstrap, topic, partitions), "librdkafka")


@pytest.mark.jet_args("--fault-drop-produce-responses", "10", "--fault-drop-every", "3")
def test_aiokafka_idempotent_retries_do_not_duplicate(jet, topic):
    aiokafka = need("aiokafka")
    partitions = 2
    create_topic(jet.bootstrap, topic, partitions)
    count = 20_000
    produced = {p: [] for p in range(partitions)}

    async def run():
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=jet.bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=1024,
            request_timeout_ms=30000,
            retry_backoff_ms=50,
        )
        await producer.start()
        try:
            futures = []
            for i in range(count):
                p = i % partitions
                value = f"{p}:{len(produced[p]):09d}".encode()
                produced[p].append(value)
                futures.append(await producer.send(topic, value=value, partition=p))
            await asyncio.wait_for(asyncio.gather(*futures), timeout=180)
        finally:
            await producer.stop()

    asyncio.run(run())
    assert dropped_responses(jet) == 10
    verify(produced, consume_all(jet.bootstrap, topic, partitions), "aiokafka")


def test_restart_mid_run_does_not_duplicate(jet, topic):
    """kill -9 the broker while an idempotent producer is mid-run; the client reconnects,
    resends what was in flight, and the persisted producer state recognises what was already
    written."""
    partitions = 2
    create_topic(jet.bootstrap, topic, partitions)
    restarted = threading.Event()

    def on_progress(i):
        if i >= 40_000 and not restarted.is_set():
            restarted.set()
            threading.Thread(target=lambda: jet.restart(hard=True), daemon=True).start()

    produced = produce_confluent(jet.bootstrap, topic, partitions, 100_000, on_progress)
    assert restarted.is_set()
    verify(produced, consume_all(jet.bootstrap, topic, partitions), "restart mid-run")
