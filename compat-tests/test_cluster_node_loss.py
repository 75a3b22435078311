"""Node loss on a four-node cluster (replication factor 3, `--node-dead-after 4s`): a node is
killed with SIGKILL for longer than the dead-after time. The metadata leader re-places its
replicas on the spare node, the shard leaders seed the new replicas with a snapshot and move
them in (learner, then voter, then the dead replica removed), and Metadata shows every
partition with 3 replicas, none of them the dead node, and a full ISR again. Nothing
acknowledged is lost, nothing is duplicated, and the data is read back both through the
leaders and from the new replicas (client.rack). The dead node then comes back and the
cluster keeps serving."""

from __future__ import annotations

import time

from cluster import (Cluster, ProducerLoad, assert_clean, check_delivery, fetched_bytes,
                     read_back, read_from, wait_for)
from conftest import jet_binary, need

DEAD_AFTER = "4s"


def test_a_dead_nodes_replicas_are_re_placed(tmp_path):
    need("confluent_kafka")
    c = Cluster(
        jet_binary(), tmp_path / "cluster", 4, replication_factor=3,
        extra_args=["--node-dead-after", DEAD_AFTER],
        node_args={i: ["--rack", f"r{i}"] for i in (1, 2, 3, 4)},
    )
    try:
        c.start()
        topic, partitions = "node-loss", 6
        c.create_topic(topic, partitions, 3)
        load = ProducerLoad(c.bootstrap, topic, partitions, count=6000).start()
        load.join()
        load.assert_all_acked()
        before = c.metadata()
        print("before:\n" + before.describe(topic))

        # The node holding the most replicas goes, for good (for now).
        held = {n.id: 0 for n in c.nodes}
        for info in before.partitions(topic).values():
            for r in info.replicas:
                held[r] += 1
        victim = c.node(max(held, key=lambda i: (held[i], -i)))
        assert held[victim.id] > 0
        lost_at = time.monotonic()
        victim.kill9()
        print(f"killed node {victim.id} (replica of {held[victim.id]} partitions)")

        def re_placed():
            md = c.metadata(timeout_s=5)
            parts = md.partitions(topic)
            ok = len(parts) == partitions and all(
                info.error is None
                and len(info.replicas) == 3
                and victim.id not in info.replicas
                and info.leader in info.replicas
                and set(info.isr) == set(info.replicas)
                for info in parts.values()
            )
            return md if ok else None

        after = wait_for(
            f"node {victim.id}'s replicas re-placed with a full ISR", re_placed, timeout_s=120,
            diag=lambda: c.metadata(timeout_s=5).describe(topic) + "\n" + c.log_tails(30),
        )
        print(f"re-placed in {time.monotonic() - lost_at:.1f}s after the kill "
              f"(dead after {DEAD_AFTER}):\n" + after.describe(topic))
        moved = [p for p, info in after.partitions(topic).items()
                 if set(info.replicas) != set(before.partitions(topic)[p].replicas)]
        assert moved, "no partition changed replicas"

        records = read_back(c.live_bootstrap(), topic, partitions)
        assert_clean(check_delivery(load.acked, records), "after the node loss")

        # Each moved partition, read from a replica that was added (a follower where possible).
        for p in moved:
            info = after.partitions(topic)[p]
            added = [r for r in info.replicas if r not in before.partitions(topic)[p].replicas]
            reader = next((r for r in added if r != info.leader), added[0])
            want = [seq for _, seq in records[p]]
            served = fetched_bytes(c.node(reader), topic)
            got = read_from(c.live_bootstrap(), topic, p, f"r{reader}", len(want))
            assert got == want, (
                f"partition {p} read in rack r{reader} (added replica): {len(got)} of "
                f"{len(want)} values, first difference at "
                f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}"
            )
            # The added replica itself served them (as leader, or as the follower in the
            # consumer's rack).
            assert fetched_bytes(c.node(reader), topic) > served, f"node {reader} served nothing"

        # The dead node returns: the cluster keeps serving, everything is still there.
        victim.restart()
        wait_for(
            "Metadata to list 4 brokers again",
            lambda: len(c.metadata(timeout_s=5).brokers) == 4,
            timeout_s=60,
            diag=lambda: c.log_tails(20),
        )
        more = ProducerLoad(c.bootstrap, topic, partitions, count=600).start()
        more.join()
        more.assert_all_acked()
        high = read_back(c.bootstrap, topic, partitions)
        total = sum(len(v) for v in high.values())
        assert total == len(load.acked) + len(more.acked), (
            f"{total} records after the return, {len(load.acked)} + {len(more.acked)} acked"
        )
    finally:
        c.kill_all()
        print(f"--- cluster logs ({c.base_dir}) ---\n{c.log_tails()}")
