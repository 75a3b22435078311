"""Reads from followers (KIP-392) on a three-node cluster whose nodes sit in racks r1, r2, r3:
a consumer whose client.rack is a follower's rack is sent there by the leader
(preferred_read_replica) and reads every message from it, and the leader serves none of it."""

from __future__ import annotations

import time

from cluster import Cluster, fetched_bytes, read_from, wait_for
from conftest import jet_binary, need


def test_consumer_reads_from_the_follower_in_its_rack(tmp_path):
    ck = need("confluent_kafka")
    c = Cluster(
        jet_binary(), tmp_path / "cluster", 3, replication_factor=3,
        node_args={i: ["--rack", f"r{i}"] for i in (1, 2, 3)},
    )
    try:
        c.start()
        topic = "follower-reads"
        c.create_topic(topic, 1, 3)
        c.wait_fully_replicated(topic, 1, 3, timeout_s=60)
        n = 3000
        producer = ck.Producer({"bootstrap.servers": c.bootstrap, "acks": "all",
                                "enable.idempotence": True, "linger.ms": 5})
        for i in range(n):
            producer.produce(topic, value=str(i).encode(), partition=0)
            if i % 500 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
        leader = c.metadata().partitions(topic)[0].leader
        follower = next(node for node in c.nodes if node.id != leader)
        # The follower has applied everything before the consumer starts, so the test is about
        # where the reads go, not about replication lag.
        time.sleep(1)

        got = read_from(c.bootstrap, topic, 0, f"r{follower.id}", n)
        assert got == list(range(n)), f"read {len(got)} of {n} in order"
        from_follower = fetched_bytes(follower, topic)
        from_leader = fetched_bytes(c.node(leader), topic)
        print(f"leader {leader} served {from_leader:.0f} bytes, follower {follower.id} "
              f"served {from_follower:.0f}")
        assert from_follower > 0, "the follower in the client's rack served nothing"
        assert from_leader == 0, "the leader served records it should have redirected"
        wait_for("cluster still healthy", lambda: c.metadata().fully_replicated(topic, 1, 3),
                 timeout_s=30)

        # A manual assignment naming another node is refused with the reason, not as an
        # unknown broker: replicas are placed with the shard. (kafka-python: confluent-kafka's
        # NewTopic refuses replica assignments locally in the version pinned here.)
        kadmin = need("kafka.admin")
        kerrors = need("kafka.errors")
        admin = kadmin.KafkaAdminClient(bootstrap_servers=c.node(1).bootstrap)
        try:
            controller = c.metadata().controller
            other = next(node.id for node in c.nodes if node.id != controller)
            manual = kadmin.NewTopic("manual", num_partitions=-1, replication_factor=-1,
                                     replica_assignments={0: [other]})
            try:
                admin.create_topics([manual])
                raise AssertionError("a manual assignment naming another node was accepted")
            except kerrors.InvalidReplicationAssignmentError as e:
                assert "places a partition's replicas" in str(e), e
        finally:
            admin.close()
    finally:
        c.kill_all()
        print(f"--- cluster logs ({c.base_dir}) ---\n{c.log_tails()}")
