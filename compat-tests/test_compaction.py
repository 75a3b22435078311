"""Compacted topics (cleanup.policy=compact) with a real client against a real `jet`.

100,000 updates over 1,000 keys from confluent-kafka, with tombstones: keys 0-99 end deleted,
and every 37th update in between is a tombstone that a later update revives. Once the broker
has compacted, a consumer from the earliest offset must see exactly the newest value of every
live key, at the offset its producer was acknowledged with (offsets never change), none of the
deleted keys, and the final sentinel record (the newest batch is never compacted). The same
after kill -9 and a restart, which replays the compaction from the Raft log. A client cannot
fake this: the expected set is computed from the acknowledged offsets, and a broker that did
not compact would return 100,001 records.
"""

from __future__ import annotations

import time

import pytest

from conftest import need

KEYS = 1_000
UPDATES = 100_000


def _create_compacted(bootstrap: str, topic: str):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "0",
    }
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(30)


def _read_everything(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    ck = need("confluent_kafka")
    c = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"c-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    out = []
    try:
        tp = ck.TopicPartition(topic, 0)
        _, high = c.get_watermark_offsets(tp, timeout=10)
        c.assign([ck.TopicPartition(topic, 0, ck.OFFSET_BEGINNING)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out or out[-1][0] < high - 1):
            for m in c.consume(num_messages=5000, timeout=0.5):
                assert m.error() is None, m.error()
                out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


@pytest.mark.jet_args("--retention-check-interval-ms", "300")
def test_compacted_topic_keeps_the_newest_value_of_every_key(jet, topic):
    ck = need("confluent_kafka")
    _create_compacted(jet.bootstrap, topic)
    producer = ck.Producer(
        {"bootstrap.servers": jet.bootstrap, "acks": "all", "enable.idempotence": True,
         "linger.ms": 5}
    )
    acked: dict[bytes, tuple[int, bytes | None]] = {}
    errors = []

    def cb(err, m):
        if err is not None:
            errors.append(err)
        else:
            # Callbacks for one partition arrive in offset order.
            acked[m.key()] = (m.offset(), m.value())

    for i in range(UPDATES):
        k = i % KEYS
        if i >= UPDATES - KEYS and k < 100:
            value = None  # keys 0-99 end deleted
        elif i % 37 == 0:
            value = None  # a tombstone a later update revives (or not, in the last round)
        else:
            value = f"value-{i}".encode()
        while True:
            try:
                producer.produce(topic, key=f"key-{k}".encode(), value=value, on_delivery=cb)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors[:3]
    # The newest batch is never compacted: make it one the test expects to see whole.
    producer.produce(topic, key=b"sentinel", value=b"end", on_delivery=cb)
    assert producer.flush(30) == 0 and not errors, errors[:3]

    live = {k: v for k, v in acked.items() if v[1] is not None}
    deleted = {k for k, v in acked.items() if v[1] is None}
    assert len(deleted) >= 100 and len(live) + len(deleted) == KEYS + 1
    want = sorted((off, k, v) for k, (off, v) in live.items())

    def compacted_view():
        got = _read_everything(jet.bootstrap, topic)
        return got, got == want

    deadline = time.monotonic() + 90
    got, ok = compacted_view()
    while not ok and time.monotonic() < deadline:
        time.sleep(1)
        got, ok = compacted_view()
    assert ok, (
        f"after compaction: {len(got)} records, want {len(want)}; "
        f"deleted keys seen: {sum(1 for _, k, _ in got if k in deleted)}"
    )

    # Compaction survives kill -9: the replay rebuilds the same index from the Raft log.
    jet.kill9()
    jet.start()
    assert _read_everything(jet.bootstrap, topic) == want

    # New updates after the restart are compacted too, and the old offsets stay where they were.
    producer = ck.Producer({"bootstrap.servers": jet.bootstrap, "acks": "all", "linger.ms": 5})
    for k in range(200, 300):
        producer.produce(topic, key=f"key-{k}".encode(), value=b"again", on_delivery=cb)
    producer.flush(30)
    # A new key: the newest batch is not in the cleaner's key map (Kafka's active segment
    # is not either), so a newer "sentinel" there would not yet drop the older one.
    producer.produce(topic, key=b"sentinel2", value=b"end", on_delivery=cb)
    producer.flush(30)
    live = {k: v for k, v in acked.items() if v[1] is not None}
    want = sorted((off, k, v) for k, (off, v) in live.items())
    deadline = time.monotonic() + 60
    got, ok = compacted_view()
    while not ok and time.monotonic() < deadline:
        time.sleep(1)
        got, ok = compacted_view()
    assert ok, f"after the second round: {len(got)} records, want {len(want)}"


def test_compacted_topic_refuses_records_without_a_key(jet, topic):
    ck = need("confluent_kafka")
    _create_compacted(jet.bootstrap, topic)
    producer = ck.Producer({"bootstrap.servers": jet.bootstrap, "acks": "all", "retries": 0})
    results = []
    producer.produce(topic, key=b"k", value=b"keyed", on_delivery=lambda e, m: results.append(e))
    producer.flush(30)
    producer.produce(topic, value=b"no key", on_delivery=lambda e, m: results.append(e))
    producer.flush(30)
    assert results[0] is None
    assert results[1] is not None and results[1].code() == ck.KafkaError.INVALID_RECORD, results[1]
    got = _read_everything(jet.bootstrap, topic)
    assert [(k, v) for _, k, v in got] == [(b"k", b"keyed")], "the keyless record was stored"
