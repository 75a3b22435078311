#!/usr/bin/env python3
"""Failover time of a 3-node jet cluster: from `kill -9` of a partition's leader to the first
successful acks=all produce to that partition, measured RUNS times (default 3) on one cluster of
three local processes; prints each figure, the median, and every node's peak RSS.

    JET_BIN=.../release/jet python3 crates/bench/scripts/failover.py [RUNS]

An idempotent confluent-kafka producer (acks=all, linger 0) sends one message every 2 ms to a
one-partition, replication-factor-3 topic. Each run kills the partition's leader, waits for the
first delivery report after the kill, restarts the node, and waits until the partition is back to
3 in-sync replicas and 5 s have passed (so leadership may move back) before the next run. Bounded:
every wait has a timeout, and the cluster is stopped at the end whatever happens.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient, NewTopic

BASE_PORT = int(os.environ.get("FAILOVER_BASE_PORT", "29092"))
TOPIC = "failover"
BIN = os.environ.get("JET_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/jet-target")) / "release/jet")


class Node:
    """One jet process: node i on Kafka port BASE+i, peer/gossip port BASE+100+i."""

    def __init__(self, work: Path, i: int):
        self.i, self.dir = i, work / f"node-{i}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def args(self) -> list[str]:
        seeds = ",".join(f"127.0.0.1:{BASE_PORT + 100 + k}" for k in (1, 2, 3))
        return [BIN, "--node-id", str(self.i), "--listen", f"127.0.0.1:{BASE_PORT + self.i}",
                "--peer-listen", f"127.0.0.1:{BASE_PORT + 100 + self.i}",
                "--http-listen", "off", "--data-dir", str(self.dir / "data"),
                "--seeds", seeds, "--bootstrap-expect", "3", "--replication-factor", "3"]

    def start(self) -> None:
        log = open(self.dir / "jet.log", "ab")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=log)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def wait(what: str, pred, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception:  # noqa: BLE001 - a node may be down while we poll
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout_s}s")


def partition(admin: AdminClient):
    return admin.list_topics(TOPIC, timeout=5).topics[TOPIC].partitions[0]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    work = Path(tempfile.mkdtemp(prefix="jet-failover-"))
    nodes = {i: Node(work, i) for i in (1, 2, 3)}
    bootstrap = ",".join(f"127.0.0.1:{BASE_PORT + i}" for i in nodes)
    stop = threading.Event()
    try:
        for n in nodes.values():
            n.start()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        wait("the cluster", lambda: len(admin.list_topics(timeout=2).brokers) == 3, 60)
        admin.create_topics([NewTopic(TOPIC, 1, 3)])[TOPIC].result(30)
        wait("3 in-sync replicas", lambda: len(partition(admin).isrs) == 3, 30)
        # (produced at, delivered at) of every acknowledged message: a failover ends with the
        # first message *produced after the kill* that is acknowledged (a reply already in the
        # client's socket buffer at the kill must not count).
        delivered: list[tuple[float, float]] = []
        errors: list[str] = []
        producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                "enable.idempotence": True, "linger.ms": 0,
                                "message.timeout.ms": 60000})

        def on_delivery(produced_at):
            def cb(err, _msg):
                if err is None:
                    delivered.append((produced_at, time.monotonic()))
                else:
                    errors.append(str(err))
            return cb

        def produce():
            i = 0
            while not stop.is_set():
                try:
                    producer.produce(TOPIC, value=str(i).encode(), partition=0,
                                     on_delivery=on_delivery(time.monotonic()))
                    i += 1
                except BufferError:
                    pass
                producer.poll(0.002)

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        time.sleep(3)
        figures = []
        for r in range(runs):
            leader = partition(admin).leader
            killed_at = time.monotonic()
            nodes[leader].kill9()
            first = wait("a delivery after the kill",
                         lambda: next((d for p, d in list(delivered) if p > killed_at), None), 60)
            figures.append(first - killed_at)
            print(f"run {r + 1}: killed leader {leader}; first acks=all produce after "
                  f"{figures[-1]:.2f} s (new leader {partition(admin).leader})", flush=True)
            nodes[leader].start()
            wait("3 in-sync replicas again", lambda: len(partition(admin).isrs) == 3, 60)
            time.sleep(6)
        stop.set()
        t.join(10)
        producer.flush(30)
        print(f"failover, kill -9 of the leader to the first acks=all produce: "
              f"{', '.join(f'{f:.2f}' for f in figures)} s; median {statistics.median(figures):.2f} s")
        print(f"delivery errors: {len(errors)} {errors[:3]}")
        rss = {i: peak_rss_mib(n.proc.pid) for i, n in nodes.items()}
        print("peak RSS per node (MiB, since each node's last start): "
              + ", ".join(f"node {i} {v:.0f}" for i, v in rss.items()))
        return 0
    finally:
        stop.set()
        for n in nodes.values():
            n.kill9()


if __name__ == "__main__":
    sys.exit(main())
