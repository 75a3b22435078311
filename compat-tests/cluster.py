"""A jet cluster on this machine for the replication tests: N `jet` processes on free loopback
ports, started together with `--bootstrap-expect N`, each with its own data dir and log.

    @pytest.fixture cluster3      3 nodes, --replication-factor 3, in tmp_path; always killed
    Cluster.bootstrap             every node's Kafka address, comma-separated
    Cluster.node(i)               Node i (ids 1..N): kill9(), sigstop(), sigcont(),
                                  sigterm_and_wait(), restart(), log_tail()
    Cluster.metadata()            brokers, controller, per-partition leader/replicas/isr
    wait_for(what, predicate)     polls until predicate() is truthy, bounded

Built like `Jet` in conftest.py and reusing its pieces (`jet_binary`, `free_port`,
`api_versions_ok`); every wait is bounded and every process is SIGKILLed at the end. Nodes
started from the main thread also get PR_SET_PDEATHSIG, so even a test run that dies (say by
faulthandler's exit) leaves no jet behind.

The client helpers at the end (ProducerLoad, read_back, check_delivery) produce sequence numbers
and check them back: no acknowledged message lost, none twice, each partition in order.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import api_versions_ok, free_port, jet_binary, need

START_TIMEOUT_S = float(os.environ.get("JET_CLUSTER_START_TIMEOUT_S", "90"))
STOP_TIMEOUT_S = 30.0
HOST = "127.0.0.1"


def _pdeathsig():
    """In the child before exec: die with the parent (pytest), so nothing outlives the run."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_peer_port(taken: set[int]) -> int:
    """A port free for TCP (Raft) and UDP (gossip) alike, not in `taken`."""
    for _ in range(100):
        port = free_port()
        if port in taken:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((HOST, port))
        except OSError:
            continue
        taken.add(port)
        return port
    raise RuntimeError("no port free for both TCP and UDP")


def free_tcp_port(taken: set[int]) -> int:
    for _ in range(100):
        port = free_port()
        if port not in taken:
            taken.add(port)
            return port
    raise RuntimeError("no free TCP port")


def wait_for(what: str, predicate, timeout_s: float = 60.0, interval_s: float = 0.2,
             diag=lambda: ""):
    """Calls `predicate` until it returns something truthy (returned) or `timeout_s` passes
    (AssertionError naming `what`, the last value or exception, and `diag()`). Exceptions from
    the predicate count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - a failing probe is "not yet"
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})\n{diag()}"
            )
        time.sleep(interval_s)


# ------------------------------------------------------------------------------------------
# Metadata as the clients see it.
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionInfo:
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error: str | None


@dataclass
class Metadata:
    brokers: dict[int, tuple[str, int]]
    controller: int
    topics: dict[str, dict[int, PartitionInfo]] = field(default_factory=dict)

    def partitions(self, topic: str) -> dict[int, PartitionInfo]:
        return self.topics.get(topic, {})

    def leaders(self, topic: str) -> dict[int, int]:
        return {p: info.leader for p, info in sorted(self.partitions(topic).items())}

    def fully_replicated(self, topic: str, partitions: int, rf: int) -> bool:
        """Every partition has a leader among `rf` replicas and an ISR of all of them."""
        parts = self.partitions(topic)
        return len(parts) == partitions and all(
            info.error is None
            and len(info.replicas) == rf
            and info.leader in info.replicas
            and set(info.isr) == set(info.replicas)
            for info in parts.values()
        )

    def describe(self, topic: str | None = None) -> str:
        lines = [f"brokers={sorted(self.brokers)} controller={self.controller}"]
        for t in [topic] if topic else sorted(self.topics):
            for p, info in sorted(self.partitions(t).items()):
                lines.append(
                    f"  {t}[{p}] leader={info.leader} replicas={list(info.replicas)} "
                    f"isr={list(info.isr)}" + (f" error={info.error}" if info.error else "")
                )
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Nodes and the cluster.
# ------------------------------------------------------------------------------------------


class Node:
    """One jet process of a cluster, restartable with the same flags, ports and data dir."""

    def __init__(self, cluster: "Cluster", node_id: int, kafka_port: int, peer_port: int,
                 http_port: int):
        self.cluster = cluster
        self.id = node_id
        self.kafka_port = kafka_port
        self.peer_port = peer_port
        self.http_port = http_port
        self.dir = cluster.base_dir / f"node-{node_id}"
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "jet.log"
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self.exit_codes: list[int] = []  # of the stops this helper made
        self._stopped_by_us = False

    def __repr__(self) -> str:
        return f"Node({self.id}, kafka={self.kafka_port}, {self.state()})"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    @property
    def gossip(self) -> str:
        return f"{HOST}:{self.peer_port}"

    def args(self) -> list[str]:
        c = self.cluster
        return [
            str(c.binary),
            "--node-id", str(self.id),
            "--listen", self.bootstrap,
            "--http-listen", f"{HOST}:{self.http_port}",
            "--data-dir", str(self.data_dir),
            "--peer-listen", self.gossip,
            "--gossip-listen", self.gossip,
            "--seeds", ",".join(n.gossip for n in c.nodes),
            *self.expect_args(),
            "--replication-factor", str(c.replication_factor),
            "--log-level", os.environ.get("JET_TEST_LOG_LEVEL", "info"),
            *c.extra_args,
            *c.node_args.get(self.id, []),
        ]

    def expect_args(self) -> list[str]:
        """`--bootstrap-expect N` (all nodes together), unless the cluster says otherwise for this
        node: a number of its own, or None for a node that joins the running cluster."""
        c = self.cluster
        expect = c.expect.get(self.id, len(c.nodes)) if c.expect is not None else len(c.nodes)
        return [] if expect is None else ["--bootstrap-expect", str(expect)]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self) -> str:
        if not self.running():
            return "down"
        return "paused" if self.paused else "up"

    def unexpected_exit(self) -> int | None:
        """The exit code if the process ended without this helper stopping it (a crash, or a
        signal from outside the test), else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return None if self._stopped_by_us else self.proc.returncode

    def spawn(self) -> None:
        """Starts the process and returns at once (see wait_ready)."""
        assert not self.running(), f"node {self.id} is already running"
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JET_")}
        on_main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%H:%M:%S')} start {' '.join(self.args())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env,
                # PDEATHSIG fires when the spawning *thread* ends: only the main thread lives
                # as long as the run.
                preexec_fn=_pdeathsig if on_main else None,
            )
        self.paused = False
        self._stopped_by_us = False

    def answers(self) -> bool:
        return self.running() and api_versions_ok(HOST, self.kafka_port, timeout_s=2.0)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> "Node":
        """Until the node answers ApiVersions; raises (with the log tail) if it exits or times
        out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.proc.poll() if self.proc else None
            if self.proc is None or code is not None:
                raise NodeExited(self, code)
            if api_versions_ok(HOST, self.kafka_port, timeout_s=2.0):
                return self
            time.sleep(0.1)
        raise RuntimeError(
            f"node {self.id} did not answer ApiVersions on {self.bootstrap} within "
            f"{timeout_s:.0f}s:\n{self.log_tail()}"
        )

    def kill9(self) -> None:
        if self.running():
            self._stopped_by_us = True
            self.proc.send_signal(signal.SIGKILL)
            self.exit_codes.append(self.proc.wait(timeout=10))
        self.paused = False

    def sigstop(self) -> None:
        assert self.running(), f"node {self.id} is not running"
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def sigcont(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def sigterm_and_wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait for the exit; a node that ignores it for `timeout_s` is SIGKILLed and
        the call fails. Returns the exit code."""
        if not self.running():
            return self.proc.returncode if self.proc else 0
        self._stopped_by_us = True
        self.proc.send_signal(signal.SIGTERM)
        if self.paused:
            self.sigcont()
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(
                f"node {self.id} did not exit within {timeout_s:.0f}s of SIGTERM (killed):\n"
                + self.log_tail()
            )
        self.exit_codes.append(code)
        return code

    def restart(self, hard: bool = False, timeout_s: float = START_TIMEOUT_S) -> "Node":
        """Stops the node if it runs (SIGKILL when `hard`, else SIGTERM) and starts it again
        with the same flags, ports and data dir; waits until it answers."""
        if hard:
            self.kill9()
        else:
            self.sigterm_and_wait()
        self.spawn()
        return self.wait_ready(timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class NodeExited(RuntimeError):
    def __init__(self, node: Node, code):
        self.node = node
        self.code = code
        super().__init__(f"node {node.id} exited with {code} while starting:\n{node.log_tail()}")


class Cluster:
    """N nodes on free loopback ports under `base_dir`, each `--bootstrap-expect N` with every
    node's gossip address as `--seeds`."""

    def __init__(self, binary: Path, base_dir: Path, n: int, replication_factor: int | None = None,
                 extra_args=(), node_args=None, expect=None):
        self.binary = binary
        self.base_dir = base_dir
        self.replication_factor = replication_factor or min(n, 3)
        self.extra_args = list(extra_args)
        # node id -> flags for that node only (e.g. its --rack).
        self.node_args = dict(node_args or {})
        # node id -> its --bootstrap-expect (None: it joins with --seeds alone); default N.
        self.expect = dict(expect) if expect is not None else None
        self.n = n
        self.nodes: list[Node] = []
        self._assign_ports()

    def _assign_ports(self) -> None:
        taken: set[int] = set()
        self.nodes = [
            Node(self, i, free_tcp_port(taken), free_peer_port(taken), free_tcp_port(taken))
            for i in range(1, self.n + 1)
        ]

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def live_bootstrap(self) -> str:
        """The nodes that run and are not paused (all of them if none is)."""
        live = [n.bootstrap for n in self.nodes if n.state() == "up"]
        return ",".join(live) or self.bootstrap

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "Cluster":
        """Starts every node at once and waits until each answers ApiVersions and Metadata lists
        all of them. A lost race for a port starts all over on new ports (3 tries)."""
        for attempt in range(3):
            for n in self.nodes:
                n.spawn()
            try:
                deadline = time.monotonic() + timeout_s
                for n in self.nodes:
                    n.wait_ready(max(1.0, deadline - time.monotonic()))
                break
            except NodeExited as e:
                self.kill_all()
                tail = e.node.log_tail()
                if attempt < 2 and ("cannot listen" in tail or "in use" in tail):
                    for n in self.nodes:
                        shutil.rmtree(n.dir, ignore_errors=True)
                    self._assign_ports()
                    continue
                raise RuntimeError(f"{e}\n{self.log_tails()}") from None
            except BaseException:
                self.kill_all()
                raise
        ids = set(range(1, self.n + 1))
        wait_for(
            f"Metadata to list brokers {sorted(ids)}",
            lambda: set(self.metadata(timeout_s=5).brokers) == ids,
            timeout_s=30,
            diag=self.log_tails,
        )
        return self

    def kill_all(self) -> None:
        for n in self.nodes:
            try:
                n.kill9()
            except Exception as e:  # noqa: BLE001 - clean up the others whatever happens
                sys.stderr.write(f"could not kill node {n.id}: {e}\n")

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- node {n.id} ({n.state()}"
            + (f", EXITED BY ITSELF with {n.unexpected_exit()}"
               if n.unexpected_exit() is not None else "")
            + f") {n.log_path} ---\n"
            f"{n.log_tail(lines)}"
            for n in self.nodes
        )

    def metadata(self, timeout_s: float = 10.0, bootstrap: str | None = None) -> Metadata:
        """One fresh Metadata request (all topics) to a node that is up, as librdkafka sees it."""
        admin = need("confluent_kafka.admin")
        client = admin.AdminClient({
            "bootstrap.servers": bootstrap or self.live_bootstrap(),
            "socket.connection.setup.timeout.ms": 3000,
        })
        md = client.list_topics(timeout=timeout_s)
        topics = {
            name: {
                p: PartitionInfo(
                    pm.leader, tuple(pm.replicas), tuple(pm.isrs),
                    None if pm.error is None else str(pm.error),
                )
                for p, pm in t.partitions.items()
            }
            for name, t in md.topics.items()
        }
        brokers = {b.id: (b.host, b.port) for b in md.brokers.values()}
        return Metadata(brokers, md.controller_id, topics)

    def create_topic(self, topic: str, partitions: int, rf: int | None = None,
                     timeout_s: float = 60.0, **config) -> Metadata:
        """CreateTopics, then waits until every partition has a leader and a full ISR."""
        admin = need("confluent_kafka.admin")
        rf = rf or self.replication_factor
        client = admin.AdminClient({"bootstrap.servers": self.bootstrap})
        new = admin.NewTopic(topic, partitions, rf, config={k: str(v) for k, v in config.items()})
        for _, f in client.create_topics([new], operation_timeout=30).items():
            f.result(timeout_s)
        return self.wait_fully_replicated(topic, partitions, rf, timeout_s)

    def wait_fully_replicated(self, topic: str, partitions: int, rf: int | None = None,
                              timeout_s: float = 60.0) -> Metadata:
        rf = rf or self.replication_factor
        last: list[Metadata] = []

        def check():
            md = self.metadata(timeout_s=5)
            last[:] = [md]
            return md if md.fully_replicated(topic, partitions, rf) else None

        return wait_for(
            f"{topic}: {partitions} partitions with leaders and ISR {rf}",
            check,
            timeout_s=timeout_s,
            diag=lambda: (last[0].describe(topic) if last else "(no metadata)") + "\n"
            + self.log_tails(20),
        )


@pytest.fixture
def cluster3(tmp_path):
    """Three nodes, --replication-factor 3, started together; all SIGKILLed afterwards, even when
    the test fails or times out. The nodes' log tails are printed (pytest shows them on
    failure)."""
    need("confluent_kafka")
    c = Cluster(jet_binary(), tmp_path / "cluster", 3, replication_factor=3)
    try:
        c.start()
        yield c
    finally:
        for n in c.nodes:
            if n.paused:
                n.sigcont()
        c.kill_all()
        print(f"--- cluster logs ({c.base_dir}) ---\n{c.log_tails()}")


# ------------------------------------------------------------------------------------------
# Clients: a producer of sequence numbers and the checks on reading them back.
# ------------------------------------------------------------------------------------------


class ProducerLoad:
    """An idempotent acks=all producer on its own thread. Message `seq` goes to partition
    seq % partitions with key "p<partition>" and value str(seq), so each partition's values must
    read back in increasing order. Records every delivery report and the longest gap between
    two successful ones.

    `count` messages (None: until stop()); `rate` messages per second at most (None: as fast
    as the producer takes them)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, count: int | None = None,
                 rate: float | None = None, max_s: float = 400.0, **conf):
        ck = need("confluent_kafka")
        self.topic = topic
        self.partitions = partitions
        self.count = count
        self.rate = rate
        self.max_s = max_s
        config = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120_000,
            "error_cb": self._on_error,
        }
        config.update(conf)
        self.producer = ck.Producer(config)
        self.acked: dict[int, tuple[int, int]] = {}  # seq -> (partition, offset)
        self.failed: dict[int, str] = {}  # seq -> error
        self.client_errors: list[str] = []
        self.fatal: str | None = None
        self.sent = 0
        self.started = time.monotonic()
        self.last_ok: float | None = None
        self.longest_stall = 0.0
        self.longest_stall_at = 0.0  # seconds since start, when it ended
        self._last_ok_in: dict[int, float] = {}
        self.partition_stalls: dict[int, float] = {}  # partition -> its longest gap
        self.acked_in: Counter = Counter()  # partition -> acknowledged messages
        self.finished_at: float | None = None
        self.unflushed = 0
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._exc: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)

    def _on_error(self, err) -> None:
        self.client_errors.append(str(err))
        if err.fatal():
            self.fatal = str(err)

    def _on_delivery(self, err, msg) -> None:
        now = time.monotonic()
        seq = int(msg.value())
        if err is not None:
            self.failed[seq] = str(err)
            return
        self.acked[seq] = (msg.partition(), msg.offset())
        p = msg.partition()
        self.acked_in[p] += 1
        if p in self._last_ok_in:
            gap = now - self._last_ok_in[p]
            self.partition_stalls[p] = max(self.partition_stalls.get(p, 0.0), gap)
        self._last_ok_in[p] = now
        if self.last_ok is not None and now - self.last_ok > self.longest_stall:
            self.longest_stall = now - self.last_ok
            self.longest_stall_at = now - self.started
        self.last_ok = now

    def start(self) -> "ProducerLoad":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            deadline = self.started + self.max_s
            seq = 0
            while (self.count is None or seq < self.count) and not self._stop.is_set():
                if time.monotonic() > deadline or self.fatal:
                    break
                if self.rate and seq > (time.monotonic() - self.started) * self.rate:
                    self.producer.poll(0.005)
                    continue
                p = seq % self.partitions
                try:
                    self.producer.produce(
                        self.topic, value=str(seq).encode(), key=f"p{p}".encode(), partition=p,
                        on_delivery=self._on_delivery,
                    )
                except BufferError:
                    self.producer.poll(0.1)
                    continue
                seq += 1
                self.sent = seq
                self.producer.poll(0)
            while time.monotonic() < deadline and not self.fatal and not self._abort.is_set():
                self.unflushed = self.producer.flush(1.0)
                if self.unflushed == 0:
                    break
            self.unflushed = len(self.producer)
        except BaseException as e:  # noqa: BLE001 - re-raised by join()
            self._exc = e
        finally:
            self.finished_at = time.monotonic()
            # The producer holds our callbacks and we hold it: drop it here so that librdkafka
            # stops (rather than reconnecting to a stopped cluster until the GC finds the cycle).
            self.producer = None

    @property
    def delivered(self) -> int:
        return len(self.acked)

    def stop(self) -> None:
        """Produce no more; what was produced is still flushed (see join)."""
        self._stop.set()

    def abort(self) -> None:
        """Produce no more and stop flushing: for a test's clean-up, so no thread outlives it
        waiting on a cluster that is gone."""
        self._stop.set()
        self._abort.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def stall_report(self) -> str:
        worst = max(self.partition_stalls.items(), key=lambda kv: kv[1], default=(None, 0.0))
        return (
            f"longest produce stall {self.longest_stall:.2f}s (gap between two successful "
            f"delivery reports, ended at t={self.longest_stall_at:.1f}s); longest in one "
            f"partition {worst[1]:.2f}s (partition {worst[0]})"
        )

    def join(self, timeout_s: float | None = None) -> "ProducerLoad":
        """Waits for the thread (bounded by max_s anyway) and re-raises what it raised."""
        self._thread.join(timeout_s if timeout_s is not None else self.max_s + 30)
        assert not self._thread.is_alive(), "the producer thread did not finish"
        if self._exc is not None:
            raise self._exc
        return self

    def assert_all_acked(self) -> None:
        assert self.fatal is None, f"fatal producer error: {self.fatal}"
        assert self.unflushed == 0, (
            f"{self.unflushed} of {self.sent} messages still undelivered after "
            f"{self.max_s:.0f}s; client errors: {self.client_errors[-5:]}"
        )
        assert not self.failed, (
            f"{len(self.failed)} of {self.sent} delivery reports failed, first: "
            f"{sorted(self.failed.items())[:3]}; client errors: {self.client_errors[-5:]}"
        )
        assert len(self.acked) == self.sent, f"{len(self.acked)} acks for {self.sent} sent"


def high_watermarks(bootstrap: str, topic: str, partitions: int, timeout_s: float = 60.0
                    ) -> dict[int, int]:
    """partition -> high watermark, each attempt with a fresh consumer (so a stale metadata
    cache from one attempt does not carry over)."""
    ck = need("confluent_kafka")

    def attempt():
        c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
        try:
            return {
                p: c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=5)[1]
                for p in range(partitions)
            }
        finally:
            c.close()

    return wait_for(f"the high watermarks of {topic}", attempt, timeout_s=timeout_s)


def read_back(bootstrap: str, topic: str, partitions: int, timeout_s: float = 120.0
              ) -> dict[int, list[tuple[int, int]]]:
    """Every record of every partition, from the earliest offset up to the high watermark read
    at the start: partition -> [(offset, int(value))] in offset order. Fresh consumer, no
    group offsets."""
    ck = need("confluent_kafka")
    high = high_watermarks(bootstrap, topic, partitions)
    consumer = ck.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"readback-{time.monotonic_ns()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
    })
    try:
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in high])
        out: dict[int, list[tuple[int, int]]] = {p: [] for p in high}
        next_offset = {p: 0 for p in high}
        errors: list[str] = []
        deadline = time.monotonic() + timeout_s
        while any(next_offset[p] < high[p] for p in high):
            assert time.monotonic() < deadline, (
                f"read back only up to {next_offset} of high watermarks {high} in "
                f"{timeout_s:.0f}s; consumer errors: {errors[-5:]}"
            )
            for m in consumer.consume(num_messages=10_000, timeout=0.5):
                if m.error() is not None:
                    errors.append(str(m.error()))
                    continue
                out[m.partition()].append((m.offset(), int(m.value())))
                next_offset[m.partition()] = m.offset() + 1
        return out
    finally:
        consumer.close()


def check_delivery(acked: dict[int, tuple[int, int]], records: dict[int, list[tuple[int, int]]],
                   check_offsets: bool = True) -> dict:
    """Compares the acknowledged sequence numbers with what the partitions hold: returns counts
    of lost (acknowledged, absent), duplicated (stored more than once), misplaced (stored
    elsewhere than the acknowledged partition/offset), out of order (a partition's values not
    increasing) and unacked (stored, never acknowledged), with a few examples each."""
    stored = Counter()
    where: dict[int, tuple[int, int]] = {}
    out_of_order = []
    for p, recs in records.items():
        prev = -1
        for off, seq in recs:
            stored[seq] += 1
            where[seq] = (p, off)
            if seq <= prev:
                out_of_order.append((p, off, prev, seq))
            prev = seq
    lost = sorted(s for s in acked if s not in stored)
    dups = sorted(s for s, c in stored.items() if c > 1)
    unacked = sorted(s for s in stored if s not in acked)
    misplaced = (
        sorted((s, acked[s], where[s]) for s in acked if s in where and where[s] != acked[s])
        if check_offsets
        else []
    )
    return {
        "acked": len(acked),
        "stored": sum(stored.values()),
        "lost": len(lost),
        "duplicated": len(dups),
        "misplaced": len(misplaced),
        "out_of_order": len(out_of_order),
        "unacked": len(unacked),
        "examples": {
            "lost": lost[:5], "duplicated": dups[:5], "misplaced": misplaced[:5],
            "out_of_order": out_of_order[:5], "unacked": unacked[:5],
        },
    }


def assert_clean(report: dict, what: str) -> None:
    bad = {k: report[k] for k in ("lost", "duplicated", "misplaced", "out_of_order", "unacked")}
    print(f"{what}: {report}")
    assert not any(bad.values()), f"{what}: {bad}; examples: {report['examples']}"


def read_from(bootstrap: str, topic: str, partition: int, rack: str, want: int,
              timeout_s: float = 60.0) -> list[int]:
    """Every value of one partition, read by a consumer in `rack` (so the leader sends it to the
    replica in that rack, KIP-392)."""
    ck = need("confluent_kafka")
    consumer = ck.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"rack-{time.monotonic_ns()}",
        "client.rack": rack,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    got: list[int] = []
    try:
        consumer.assign([ck.TopicPartition(topic, partition, ck.OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=5000, timeout=0.5):
                if m.error() is None:
                    got.append(int(m.value()))
    finally:
        consumer.close()
    return got


def fetched_bytes(node, topic: str) -> float:
    """The node's jet_kafka_fetched_bytes_total for `topic` (0 when it served none)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics", timeout=10).read()
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith("jet_kafka_fetched_bytes_total{") and f'topic="{topic}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
