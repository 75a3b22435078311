"""Joining a running cluster: one node holds data (a cluster of one, `--bootstrap-expect 1`,
replication factor 3 as the cluster's aim); two nodes with empty data directories start with
`--seeds` alone. The metadata leader admits them, every shard grows to 3 voters (each new
replica seeded by a snapshot that carries the batches), and Metadata shows 3 brokers and every
partition with 3 replicas and a full ISR. Every message is then read from a follower that
joined (client.rack, KIP-392), and through the leaders: nothing lost, nothing twice."""

from __future__ import annotations

import time

from cluster import (Cluster, ProducerLoad, assert_clean, check_delivery, fetched_bytes,
                     read_back, read_from, wait_for)
from conftest import jet_binary, need


def test_two_nodes_join_a_node_with_data(tmp_path):
    need("confluent_kafka")
    c = Cluster(
        jet_binary(), tmp_path / "cluster", 3, replication_factor=3,
        node_args={i: ["--rack", f"r{i}"] for i in (1, 2, 3)},
        expect={1: 1, 2: None, 3: None},
    )
    try:
        first = c.node(1)
        first.spawn()
        first.wait_ready()
        topic, partitions = "joined", 4
        c.create_topic(topic, partitions, 1)
        load = ProducerLoad(first.bootstrap, topic, partitions, count=4000).start()
        load.join()
        load.assert_all_acked()
        load_end = {p: 0 for p in range(partitions)}
        for _, (p, offset) in load.acked.items():
            load_end[p] = max(load_end[p], offset + 1)

        # Writes go on while the nodes join and the replicas move.
        during = ProducerLoad(first.bootstrap, topic, partitions, count=20000, rate=2000,
                              max_s=120).start()
        started = time.monotonic()
        for n in (c.node(2), c.node(3)):
            n.spawn()
        for n in (c.node(2), c.node(3)):
            n.wait_ready(timeout_s=120)
        md = wait_for(
            "3 brokers, every partition with 3 replicas and a full ISR",
            lambda: (lambda m: m if len(m.brokers) == 3
                     and m.fully_replicated(topic, partitions, 3) else None)(c.metadata(timeout_s=5)),
            timeout_s=180,
            diag=lambda: c.metadata(timeout_s=5).describe(topic) + "\n" + c.log_tails(30),
        )
        print(f"replicated 3 ways {time.monotonic() - started:.1f}s after the joins:\n"
              + md.describe(topic))

        during.join()
        during.assert_all_acked()
        print(during.stall_report())
        # Both loads wrote sequence numbers from 0: check each against its own records.
        records = read_back(c.bootstrap, topic, partitions)
        first_load = {p: [(o, v) for o, v in recs if o < load_end[p]] for p, recs in records.items()}
        second = {p: [(o, v) for o, v in recs if o >= load_end[p]] for p, recs in records.items()}
        assert_clean(check_delivery(load.acked, first_load), "written before the joins")
        assert_clean(check_delivery(during.acked, second), "written while the nodes joined")
        for p, info in md.partitions(topic).items():
            others = [r for r in info.replicas if r != info.leader]
            follower = next((r for r in others if r != 1), others[0])  # a joined node if any
            want = [seq for _, seq in records[p]]  # both loads, in offset order
            served = fetched_bytes(c.node(follower), topic)
            led = fetched_bytes(c.node(info.leader), topic)
            got = read_from(c.bootstrap, topic, p, f"r{follower}", len(want))
            assert got == want, (
                f"partition {p} read from follower {follower}: {len(got)} of {len(want)} values"
            )
            # The joined follower served the records, not the leader (KIP-392).
            assert fetched_bytes(c.node(follower), topic) > served, f"follower {follower} served nothing"
            assert fetched_bytes(c.node(info.leader), topic) == led, "the leader served records"

        # The grown cluster takes writes with replication factor 3.
        more = ProducerLoad(c.bootstrap, topic, partitions, count=600).start()
        more.join()
        more.assert_all_acked()
    finally:
        c.kill_all()
        print(f"--- cluster logs ({c.base_dir}) ---\n{c.log_tails()}")
