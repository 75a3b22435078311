"""Pure-Python clients: kafka-python and aiokafka produce and consume identical messages."""

import asyncio
import time

from conftest import need
from helpers import Msg, assert_same, make_messages

N = 2_000


def test_kafka_python_round_trip(jet, topic):
    kafka = need("kafka")
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    msgs = make_messages(N, prefix="kp")
    producer = KafkaProducer(
        bootstrap_servers=jet.bootstrap, acks="all", linger_ms=5, request_timeout_ms=30_000
    )
    try:
        futures = [
            producer.send(topic, value=m.value, key=m.key, headers=list(m.headers), partition=0)
            for m in msgs
        ]
        producer.flush(timeout=60)
        offsets = [f.get(timeout=60).offset for f in futures]
    finally:
        producer.close(timeout=10)
    assert offsets == list(range(N))
    sent = [Msg(m.key, m.value, m.headers, o) for m, o in zip(msgs, offsets)]

    consumer = KafkaConsumer(
        bootstrap_servers=jet.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 60
        while len(got) < N and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=1000).values():
                for r in records:
                    got.append(Msg(r.key, r.value, tuple(r.headers), r.offset))
        assert kafka.__name__ == "kafka"
    finally:
        consumer.close()
    assert_same(got, sent)


def test_aiokafka_round_trip(jet, topic):
    need("aiokafka")
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    msgs = make_messages(500, prefix="aio")

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=jet.bootstrap, acks="all")
        await asyncio.wait_for(producer.start(), 30)
        try:
            offsets = []
            for m in msgs:
                md = await asyncio.wait_for(
                    producer.send_and_wait(
                        topic, value=m.value, key=m.key, headers=list(m.headers), partition=0
                    ),
                    30,
                )
                offsets.append(md.offset)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=jet.bootstrap, enable_auto_commit=False, group_id=None
        )
        await asyncio.wait_for(consumer.start(), 30)
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek(tp, 0)
            got = []
            deadline = time.monotonic() + 60
            while len(got) < len(msgs) and time.monotonic() < deadline:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=1000)
                for r in batch.get(tp, []):
                    got.append(Msg(r.key, r.value, tuple(r.headers), r.offset))
        finally:
            await consumer.stop()
        return offsets, got

    offsets, got = asyncio.run(run())
    assert offsets == list(range(len(msgs)))
    sent = [Msg(m.key, m.value, m.headers, o) for m, o in zip(msgs, offsets)]
    assert_same(got, sent)
