"""A cluster adds data shards as it grows: 3 nodes with `--shards 3` (3 data shard replicas
per node: 3 shards of 3 replicas) and data, then a 4th node joins while an idempotent producer
writes. The 4th starts with the same flags as the first three (`--bootstrap-expect 3`, every
node a seed), as a pod added to a StatefulSet does, and with the lowest node id: it finds the
running cluster in gossip and joins it rather than forming one. The metadata leader admits it and adds a 4th data shard (3 × 4 nodes ÷ 3), and the
replicas spread until every node holds 3. A topic created afterwards puts its first partition
on the new shard (the least loaded); its data is written and read back with replication
factor 3. Consumer groups stay where they were: offsets committed before the growth are there
after it. Nothing acknowledged is lost or written twice."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from cluster import (Cluster, ProducerLoad, assert_clean, check_delivery, read_back,
                     wait_for)
from conftest import jet_binary, need


def shards(node) -> list[dict]:
    """The shards `node` holds, from its /ready (shard, leader, replicas, isr)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/ready", timeout=5) as r:
        return json.loads(r.read())["shards"]


def ready_shards(node) -> list[dict]:
    try:
        return shards(node)
    except urllib.error.HTTPError as e:  # 503 while a shard has no leader: same body
        return json.loads(e.read())["shards"]
    except OSError:
        return []


def commit_all(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """A group member reads `topic` to its end and commits: partition -> committed offset."""
    ck = need("confluent_kafka")
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        tps = [ck.TopicPartition(topic, p) for p in range(partitions)]
        high = {p: c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
        c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(partitions)])
        pos = {p: 0 for p in range(partitions)}
        deadline = time.monotonic() + 60
        while any(pos[p] < high[p] for p in pos):
            assert time.monotonic() < deadline, f"read only {pos} of {high}"
            for m in c.consume(num_messages=5000, timeout=0.5):
                if m.error() is None:
                    pos[m.partition()] = m.offset() + 1
        c.commit(offsets=[ck.TopicPartition(topic, p, pos[p]) for p in pos], asynchronous=False)
        return {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    ck = need("confluent_kafka")
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [ck.TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in c.committed(tps, timeout=30)}
    finally:
        c.close()


def write_acked(c: Cluster, nodes, topic: str, partitions: int, count: int):
    """Creates `topic` (replication factor 3) and writes `count` acknowledged messages through
    `nodes`: their bootstrap list and the finished load."""
    bootstrap = ",".join(c.node(i).bootstrap for i in nodes)
    c.create_topic(topic, partitions, 3)
    load = ProducerLoad(bootstrap, topic, partitions, count=count).start()
    load.join()
    load.assert_all_acked()
    return bootstrap, load


def test_a_joining_node_adds_a_data_shard(tmp_path):
    need("confluent_kafka")
    c = Cluster(
        jet_binary(), tmp_path / "cluster", 4, replication_factor=3,
        extra_args=["--shards", "3"],
        expect={1: 3, 2: 3, 3: 3, 4: 3},
    )
    formers, joiner = (2, 3, 4), 1
    try:
        for i in formers:
            c.node(i).spawn()
        for i in formers:
            c.node(i).wait_ready()
        formed = wait_for(
            "3 data shards with leaders on node 2",
            lambda: (lambda s: s if len(s) == 4 and all(x["has_leader"] for x in s) else None)(
                ready_shards(c.node(2))),
            timeout_s=60,
        )
        assert sorted(s["shard"] for s in formed) == [0, 1, 2, 3], formed

        before, partitions = "before", 3
        bootstrap3, load = write_acked(c, formers, before, partitions, 3000)
        offsets = commit_all(bootstrap3, "grow-group", before, partitions)
        assert sum(offsets.values()) == 3000, offsets

        # Node 1 joins while writes go on.
        during = ProducerLoad(bootstrap3, before, partitions, count=6000, rate=1500,
                              max_s=60).start()
        started = time.monotonic()
        c.node(joiner).spawn()
        c.node(joiner).wait_ready(timeout_s=120)
        wait_for("node 1 to log that it joins a running cluster",
                 lambda: "joining it" in c.node(joiner).log_path.read_text(errors="replace"),
                 timeout_s=10)

        def spread():
            per_node = {i: ready_shards(c.node(i)) for i in (1, 2, 3, 4)}
            data = {i: [s for s in v if s["shard"] != 0] for i, v in per_node.items()}
            # Every node holds 3 data shards, shard 4 among them somewhere, each with a leader
            # and 3 replicas in sync.
            ok = all(len(d) == 3 for d in data.values()) and all(
                s["has_leader"] and len(s["replicas"]) == 3 and len(s["isr"]) == 3
                for d in data.values() for s in d)
            ids = {s["shard"] for d in data.values() for s in d}
            return data if ok and ids == {1, 2, 3, 4} else None

        data = wait_for("a 4th data shard, and 3 data shard replicas on every node", spread,
                        timeout_s=180,
                        diag=lambda: json.dumps({i: ready_shards(c.node(i)) for i in (1, 2, 3, 4)})
                        + "\n" + c.log_tails(30))
        print(f"grown and spread {time.monotonic() - started:.1f}s after node 1 started")
        for i, d in data.items():
            print(f"node {i}: " + ", ".join(f"shard {s['shard']} {s['replicas']}" for s in d))
        new_shard = next(s for d in data.values() for s in d if s["shard"] == 4)

        during.join()
        during.assert_all_acked()
        print(during.stall_report())

        # A topic made now fills the new shard first: partition 0 has its replicas.
        after = "after"
        c.create_topic(after, 4, 3)
        c.wait_fully_replicated(after, 4, 3)
        md = c.metadata(timeout_s=10)
        assert sorted(md.partitions(after)[0].replicas) == sorted(new_shard["replicas"]), (
            md.describe(after), new_shard)
        more = ProducerLoad(c.bootstrap, after, 4, count=4000).start()
        more.join()
        more.assert_all_acked()
        assert_clean(check_delivery(more.acked, read_back(c.bootstrap, after, 4)),
                     "written to the grown cluster")

        # Both loads on `before` wrote sequence numbers from 0: check the second one's.
        records = read_back(c.bootstrap, before, partitions)
        end = {p: 0 for p in range(partitions)}
        for _, (p, offset) in load.acked.items():
            end[p] = max(end[p], offset + 1)
        second = {p: [(o, v) for o, v in recs if o >= end[p]] for p, recs in records.items()}
        first = {p: [(o, v) for o, v in recs if o < end[p]] for p, recs in records.items()}
        assert_clean(check_delivery(load.acked, first), "written before the join")
        assert_clean(check_delivery(during.acked, second), "written while node 1 joined")

        # The group's coordinator did not move: its offsets are there.
        assert committed(c.bootstrap, "grow-group", before, partitions) == offsets
    finally:
        c.kill_all()
        print(f"--- cluster logs ({c.base_dir}) ---\n{c.log_tails()}")


def test_a_joiner_killed_before_its_first_snapshot_joins_again(tmp_path):
    """A node that joins with `--bootstrap-expect` (as a pod added to a StatefulSet does) and is
    killed after it made its store but before the cluster's state reached it restarts with a
    data directory and no cluster in it. It joins again: it never forms a cluster of one."""
    need("confluent_kafka")
    c = Cluster(jet_binary(), tmp_path / "cluster", 4, replication_factor=3,
                expect={1: 3, 2: 3, 3: 3, 4: 3})
    formers, joiner = (2, 3, 4), c.node(1)
    try:
        for i in formers:
            c.node(i).spawn()
        for i in formers:
            c.node(i).wait_ready()
        topic, partitions = "kept", 3
        _, load = write_acked(c, formers, topic, partitions, 1000)

        # The formers stop the moment node 1 starts its node, so no snapshot reaches it.
        joiner.spawn()
        wait_for("node 1 to decide to join",
                 lambda: "joining a running cluster"
                 in joiner.log_path.read_text(errors="replace"),
                 timeout_s=60, interval_s=0.005)
        for i in formers:
            c.node(i).sigstop()
        wait_for("node 1 to create its store", lambda: (joiner.data_dir / "CURRENT").exists(),
                 timeout_s=20, interval_s=0.05)
        time.sleep(1)
        got_state = "installed a snapshot shard=0" in joiner.log_path.read_text(errors="replace")
        print(f"node 1 had the metadata before its kill: {got_state}")
        joiner.kill9()
        for i in formers:
            c.node(i).sigcont()

        joiner.spawn()
        joiner.wait_ready(timeout_s=120)

        def joined():
            md = c.metadata(timeout_s=5, bootstrap=joiner.bootstrap)
            parts = md.partitions(topic)
            return md if sorted(md.brokers) == [1, 2, 3, 4] and len(parts) == partitions else None

        md = wait_for("node 1 to serve the cluster's metadata: 4 brokers and the topic", joined,
                      timeout_s=60, diag=lambda: c.log_tails(30))
        log = joiner.log_path.read_text(errors="replace")
        assert "forming a new cluster" not in log, joiner.log_tail(60)
        assert md.controller in (2, 3, 4), md.describe(topic)
        assert_clean(check_delivery(load.acked, read_back(joiner.bootstrap, topic, partitions)),
                     "written before node 1 joined, read through it")
    finally:
        c.kill_all()
        print(f"--- cluster logs ({c.base_dir}) ---\n{c.log_tails()}")
