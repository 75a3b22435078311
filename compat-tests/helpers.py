"""Client helpers shared by the tests: produce with delivery confirmation, consume a known number
of messages, all with bounded waits."""

from __future__ import annotations

import time
from dataclasses import dataclass

from conftest import need


@dataclass(frozen=True)
class Msg:
    key: bytes | None
    value: bytes | None
    headers: tuple = ()
    offset: int = -1
    partition: int = 0


def make_messages(n: int, prefix: str = "m", value_bytes: int = 0) -> list[Msg]:
    """Keyed messages with per-message headers and distinct values."""
    out = []
    for i in range(n):
        pad = (f"{i:08d}" * (value_bytes // 8 + 1))[:value_bytes]
        out.append(
            Msg(
                key=f"{prefix}-key-{i}".encode(),
                value=f"{prefix}-value-{i}-{pad}".encode(),
                headers=(("seq", str(i).encode()), ("src", b"compat")),
            )
        )
    return out


def confluent_produce(bootstrap: str, topic: str, msgs, timeout_s: float = 120.0, **conf):
    """Produces `msgs` to partition 0 and returns them with the offsets the broker assigned;
    fails unless every delivery is confirmed without error."""
    ck = need("confluent_kafka")
    config = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    config.update(conf)
    producer = ck.Producer(config)
    results: dict[int, tuple] = {}

    def on_delivery(i):
        def cb(err, m):
            results[i] = (err, m.offset() if err is None else None, m.partition())

        return cb

    for i, m in enumerate(msgs):
        while True:
            try:
                producer.produce(
                    topic,
                    value=m.value,
                    key=m.key,
                    headers=list(m.headers),
                    partition=m.partition,
                    on_delivery=on_delivery(i),
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    assert remaining == 0, f"{remaining} messages not delivered within {timeout_s}s"
    errors = [(i, r[0]) for i, r in results.items() if r[0] is not None]
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    assert len(results) == len(msgs), f"{len(results)} delivery reports for {len(msgs)} messages"
    return [
        Msg(m.key, m.value, m.headers, results[i][1], results[i][2]) for i, m in enumerate(msgs)
    ]


def confluent_consume(
    bootstrap: str,
    topic: str,
    count: int,
    offset=None,
    partition: int = 0,
    group: str | None = None,
    timeout_s: float = 60.0,
    **conf,
) -> list[Msg]:
    """Assigns one partition (from `offset`; None means the group's stored offset) and reads
    until `count` messages arrived, then a little longer to catch extras."""
    ck = need("confluent_kafka")
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group or f"compat-{time.monotonic_ns()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
    }
    config.update(conf)
    consumer = ck.Consumer(config)
    try:
        start = ck.OFFSET_STORED if offset is None else offset
        consumer.assign([ck.TopicPartition(topic, partition, start)])
        got: list[Msg] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, f"consumer error: {m.error()}"
                got.append(
                    Msg(m.key(), m.value(), tuple(m.headers() or ()), m.offset(), m.partition())
                )
        # Anything past the expected end is a bug too.
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            if m.error() is None:
                got.append(Msg(m.key(), m.value(), tuple(m.headers() or ()), m.offset()))
        return got
    finally:
        consumer.close()


def assert_same(got: list[Msg], want: list[Msg], what: str = "messages"):
    assert len(got) == len(want), f"{what}: got {len(got)}, want {len(want)}"
    for g, w in zip(got, want):
        assert (g.offset, g.key, g.value, tuple(g.headers)) == (
            w.offset,
            w.key,
            w.value,
            tuple(w.headers),
        ), f"{what} differ at offset {w.offset}:\n got: {g}\nwant: {w}"
