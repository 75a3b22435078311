"""confluent-kafka (librdkafka 2.x): produce with acks=all, consume by assignment from offset 0 and
from a committed offset; admin calls; idempotent producer."""

from pathlib import Path

from conftest import need
from helpers import assert_same, confluent_consume, confluent_produce, make_messages

N = 5_000


def test_produce_acks_all_consume_from_zero(jet, topic):
    sent = confluent_produce(jet.bootstrap, topic, make_messages(N))
    assert [m.offset for m in sent] == list(range(N)), "offsets are not 0..N-1 in order"
    got = confluent_consume(jet.bootstrap, topic, N, offset=0)
    assert_same(got, sent)


def test_consume_from_stored_offset(jet, topic):
    ck = need("confluent_kafka")
    sent = confluent_produce(jet.bootstrap, topic, make_messages(N))
    group = f"g-{topic}"
    committer = ck.Consumer(
        {"bootstrap.servers": jet.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        done = committer.commit(
            offsets=[ck.TopicPartition(topic, 0, 2_500)], asynchronous=False
        )
        assert [(p.topic, p.partition, p.offset, p.error) for p in done] == [
            (topic, 0, 2_500, None)
        ]
        stored = committer.committed([ck.TopicPartition(topic, 0)], timeout=30)
        assert [(p.offset, p.error) for p in stored] == [(2_500, None)]
    finally:
        committer.close()

    got = confluent_consume(jet.bootstrap, topic, N - 2_500, offset=None, group=group)
    assert_same(got, sent[2_500:], "messages from the stored offset")


def test_assign_from_middle_offset(jet, topic):
    sent = confluent_produce(jet.bootstrap, topic, make_messages(1_000))
    got = confluent_consume(jet.bootstrap, topic, 1, offset=999)
    assert_same(got, sent[999:])
    got = confluent_consume(jet.bootstrap, topic, 500, offset=500)
    assert_same(got, sent[500:])


def test_idempotent_producer(jet, topic):
    sent = confluent_produce(
        jet.bootstrap, topic, make_messages(2_000), **{"enable.idempotence": True}
    )
    assert [m.offset for m in sent] == list(range(2_000))
    got = confluent_consume(jet.bootstrap, topic, 2_000, offset=0)
    assert_same(got, sent)


def test_admin_create_describe_and_cluster_id(jet, topic):
    ck = need("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": jet.bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    futures[topic].result(timeout=30)

    md = admin.list_topics(timeout=30)
    cluster_id = (Path(jet.data_dir) / "cluster_id").read_text().strip()
    assert md.cluster_id == cluster_id
    assert len(cluster_id) == 22
    assert md.controller_id == 1
    assert sorted(md.brokers) == [1]
    assert f"{md.brokers[1].host}:{md.brokers[1].port}" == jet.bootstrap
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2, 3]
    for p in t.partitions.values():
        assert (p.leader, p.replicas, p.isrs) == (1, [1], [1])

    # Creating it again is TOPIC_ALREADY_EXISTS.
    again = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    try:
        again[topic].result(timeout=30)
        raise AssertionError("creating an existing topic succeeded")
    except ck.KafkaException as e:
        assert e.args[0].code() == ck.KafkaError.TOPIC_ALREADY_EXISTS, e

    # Messages sent to each partition come back from that partition.
    for p in range(4):
        msgs = make_messages(10, prefix=f"p{p}")
        msgs = [m.__class__(m.key, m.value, m.headers, -1, p) for m in msgs]
        sent = confluent_produce(jet.bootstrap, topic, msgs)
        assert {m.partition for m in sent} == {p}
        got = confluent_consume(jet.bootstrap, topic, 10, offset=0, partition=p)
        assert_same(got, sent, f"partition {p}")


def test_cluster_id_survives_restart(jet):
    path = Path(jet.data_dir) / "cluster_id"
    before = path.read_text()
    assert jet.restart().bootstrap
    assert path.read_text() == before
