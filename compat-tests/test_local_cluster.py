"""deploy/local-cluster.sh, as a user runs it: `start 1` (a cluster of one that others can join),
data in, `add` twice (nodes that join the running cluster), then every partition has 3
replicas in sync and the data is all there; `status` and `stop` answer as documented. Bounded:
every command has a timeout, and the nodes are stopped at the end whatever happened."""

from __future__ import annotations

import os
import random
import subprocess

from cluster import (Cluster, ProducerLoad, assert_clean, check_delivery, read_back,
                     wait_for)
from conftest import REPO, jet_binary, need

SCRIPT = REPO / "deploy" / "local-cluster.sh"


def run(env: dict, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_start_one_node_then_add_two(tmp_path):
    need("confluent_kafka")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JET_")}
    env["JET_BIN"] = str(jet_binary())
    env["JET_CLUSTER_DIR"] = str(tmp_path / "jc")
    started = None
    try:
        for _ in range(3):
            # Below Linux's ephemeral range (32768 on): a port the script found free must not
            # be taken by some connection's local end before the node binds it.
            base = random.randrange(20000, 32400, 10)
            started = run(env, "start", "1", "--base-port", str(base))
            if "in use" not in started.stderr:
                break
        assert started.returncode == 0, f"start 1 failed:\n{started.stdout}\n{started.stderr}"
        assert f"bootstrap.servers=127.0.0.1:{base}" in started.stdout, started.stdout
        first = f"127.0.0.1:{base}"

        # A Cluster view of the same nodes, for its Metadata helper only.
        view = Cluster(jet_binary(), tmp_path / "unused", 1)
        topic, partitions = "local", 3
        admin = need("confluent_kafka.admin")
        client = admin.AdminClient({"bootstrap.servers": first})
        for f in client.create_topics([admin.NewTopic(topic, partitions, 1)]).values():
            f.result(30)
        load = ProducerLoad(first, topic, partitions, count=2000).start()
        load.join()
        load.assert_all_acked()

        for n in (2, 3):
            added = run(env, "add")
            assert added.returncode == 0, f"add failed:\n{added.stdout}\n{added.stderr}"
            assert f"node {n} joined" in added.stdout, added.stdout
        servers = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        assert f"bootstrap.servers={servers}" in added.stdout, added.stdout

        md = wait_for(
            "3 brokers, every partition with 3 replicas in sync",
            lambda: (lambda m: m if len(m.brokers) == 3
                     and m.fully_replicated(topic, partitions, 3) else None)(
                view.metadata(timeout_s=5, bootstrap=servers)),
            timeout_s=120,
            diag=lambda: run(env, "status", timeout=60).stdout,
        )
        print(md.describe(topic))
        assert_clean(check_delivery(load.acked, read_back(servers, topic, partitions)),
                     "after adding two nodes")

        status = run(env, "status", timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count(" up (pid ") == 3, status.stdout
    finally:
        stopped = run(env, "stop", timeout=120)
        print(stopped.stdout, stopped.stderr)
    assert stopped.returncode == 0 and "stopped 3 node(s)" in stopped.stdout, stopped.stdout
