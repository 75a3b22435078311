"""Helpers of the Docker cluster suite (test_compose_cluster.py): the images, the compose project
and the workload (an idempotent acks=all producer and a group consumer with committed offsets).

Everything here is bounded in time: every `docker` call has a timeout, every wait a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "deploy" / "docker-compose.yml"
DEFAULT_PORTS = (19092, 19093, 19094)
NODES = (1, 2, 3)


def run(cmd: list[str], timeout: float, check: bool = True, env=None) -> subprocess.CompletedProcess:
    """Runs a command with a deadline; its output is returned (and shown on failure)."""
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)}: no answer within {timeout}s") from e
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        )
    return p


def docker_usable() -> str | None:
    """None when the Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "the 'docker' executable is not installed"
    try:
        p = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "'docker info' did not answer within 30 s"
    if p.returncode != 0:
        return f"the Docker engine does not answer: {p.stderr.strip()[:300]}"
    return None


def compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose` (v1), whichever works."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        try:
            p = subprocess.run(cmd + ["version"], capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            continue
        if p.returncode == 0:
            return cmd
    return None


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_client_image(tag: str) -> None:
    """A FROM-scratch image holding the host's kcat and the libraries it links, like the broker
    image (no registry, no base image)."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is needed on the host"
    with tempfile.TemporaryDirectory() as ctx:
        root = Path(ctx) / "rootfs"
        (root / "usr/bin").mkdir(parents=True)
        (root / "tmp").mkdir()
        shutil.copy(kcat, root / "usr/bin/kcat")
        ldd = run(["ldd", kcat], timeout=30).stdout
        libs = set(re.findall(r"=> (/\S+)", ldd)) | set(re.findall(r"^\s*(/\S+) \(", ldd, re.M))
        for lib in libs:
            dest = root / lib.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(lib, dest)  # follows symlinks
        (Path(ctx) / "Dockerfile").write_text(
            'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/usr/bin/kcat"]\n'
        )
        run(["docker", "build", "-q", "-t", tag, ctx], timeout=300)


def image_size(tag: str) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], timeout=30).stdout)


class Cluster:
    """One compose project of deploy/docker-compose.yml with a unique name."""

    def __init__(self, compose: list[str], image: str, client_image: str):
        self.compose = compose
        self.project = f"jetct{uuid.uuid4().hex[:8]}"
        self.image = image
        self.client_image = client_image
        if all(port_free(p) for p in DEFAULT_PORTS):
            self.ports = DEFAULT_PORTS
        else:
            self.ports = tuple(free_port() for _ in NODES)
        self.env = dict(os.environ)
        self.env["JET_IMAGE"] = image
        for n, port in zip(NODES, self.ports):
            self.env[f"JET_PORT_{n}"] = str(port)
        self.network = f"{self.project}_default"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def dc(self, *args: str, timeout: float = 120, check: bool = True):
        return run(
            self.compose + ["-p", self.project, "-f", str(COMPOSE_FILE), *args],
            timeout=timeout,
            check=check,
            env=self.env,
        )

    def container(self, node: int) -> str:
        out = self.dc("ps", "-q", f"jet-{node}", timeout=30).stdout.split()
        assert out, f"no container for jet-{node}"
        return out[0]

    def up(self) -> None:
        self.dc("up", "-d", timeout=180)

    def down(self) -> None:
        self.dc("down", "-v", "--remove-orphans", "-t", "20", timeout=180, check=False)

    def logs(self, tail: int = 80) -> str:
        return self.dc("logs", "--no-color", f"--tail={tail}", timeout=60, check=False).stdout

    @contextlib.contextmanager
    def logs_on_failure(self, tail: int = 150):
        """Prints the nodes' last log lines when the block fails (pytest shows them)."""
        try:
            yield
        except BaseException:
            print(self.logs(tail))
            raise

    def health(self, node: int) -> str:
        p = run(
            ["docker", "inspect", "-f", "{{.State.Status}}/{{.State.Health.Status}}",
             self.container(node)],
            timeout=30,
            check=False,
        )
        return p.stdout.strip()

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = {n: self.health(n) for n in NODES}
            if all(s == "running/healthy" for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not all nodes healthy after {timeout}s: {states}")
            time.sleep(1)

    def ip(self, node: int) -> str:
        return run(
            ["docker", "inspect", "-f",
             "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", self.container(node)],
            timeout=30,
        ).stdout.strip()

    def client(self, *kcat_args: str, timeout: float = 60) -> str:
        """kcat in a container on the compose network."""
        return run(
            ["docker", "run", "--rm", "--network", self.network, self.client_image, *kcat_args],
            timeout=timeout,
        ).stdout


def kcat_brokers(listing: str) -> list[tuple[int, str]]:
    """(id, host:port) of each broker in a `kcat -L` listing."""
    return sorted(
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"^\s*broker (\d+) at (\S+)", listing, re.M)
    )


def admin(ck_admin, bootstrap: str):
    return ck_admin.AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})


def partition_states(adm) -> dict[tuple[str, int], tuple[int, list[int]]]:
    """(topic, partition) → (leader, isr) for every topic."""
    md = adm.list_topics(timeout=5)
    return {
        (t.topic, p.id): (p.leader, sorted(p.isrs))
        for t in md.topics.values()
        for p in t.partitions.values()
    }


def wait_isr_full(adm, timeout: float, replicas: int = 3) -> float:
    """Waits until every partition has a leader and `replicas` in-sync replicas; returns the
    seconds it took."""
    start = time.monotonic()
    last = None
    while True:
        try:
            states = partition_states(adm)
            last = {k: v for k, v in states.items() if v[0] < 0 or len(v[1]) != replicas}
            if states and not last:
                return time.monotonic() - start
        except Exception as e:  # noqa: BLE001 - a broker may be down; retried until the deadline
            last = repr(e)
        if time.monotonic() - start > timeout:
            raise AssertionError(f"ISR not back to {replicas} within {timeout}s: {last}")
        time.sleep(0.5)


class Workload:
    """An idempotent acks=all producer and a consumer in a group committing its offsets, both
    from the host through the external listener, each on its own thread.

    The producer sends "<seq>" values at a bounded rate; acknowledged sequences are recorded
    from the delivery reports. The consumer records every value it is handed and commits
    synchronously after each batch (retrying a failed commit, so its position is never lost).
    """

    RATE = 200  # messages per second

    def __init__(self, ck, bootstrap: str, topic: str, group: str):
        self.ck = ck
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.acked: set[int] = set()
        self.failed: dict[int, str] = {}
        self.sent = 0
        self.seen: list[int] = []
        self.commit_errors = 0
        self.errors: list[str] = []
        self.last_ack = time.monotonic()
        # Per partition: when the newest acknowledged message was produced.
        self.last_acked_sent_at: dict[int, float] = {}
        self._sent_at: dict[int, float] = {}
        # Per partition: the longest time without an acknowledgment, and the last one.
        self.longest_gap: dict[int, float] = {}
        self._last_ack_at: dict[int, float] = {}
        self._stop_producing = threading.Event()
        self._stop_consuming = threading.Event()
        self._lock = threading.Lock()
        self._producer = threading.Thread(target=self._produce, daemon=True)
        self._consumer = threading.Thread(target=self._consume, daemon=True)

    def start(self) -> None:
        self._consumer.start()
        self._producer.start()

    def _on_delivery(self, err, msg):
        seq = int(msg.value())
        with self._lock:
            sent_at = self._sent_at.pop(seq, 0.0)
            if err is None:
                self.acked.add(seq)
                self.last_ack = time.monotonic()
                p = msg.partition()
                if p in self._last_ack_at:
                    gap = self.last_ack - self._last_ack_at[p]
                    self.longest_gap[p] = max(self.longest_gap.get(p, 0.0), gap)
                self._last_ack_at[p] = self.last_ack
                self.last_acked_sent_at[p] = max(self.last_acked_sent_at.get(p, 0.0), sent_at)
            else:
                self.failed[seq] = str(err)

    def _produce(self) -> None:
        p = self.ck.Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 120000,
                "error_cb": lambda e: self.errors.append(f"producer: {e}") if e.fatal() else None,
            }
        )
        seq = 0
        interval = 1.0 / self.RATE
        next_at = time.monotonic()
        while not self._stop_producing.is_set():
            try:
                with self._lock:
                    self._sent_at[seq] = time.monotonic()
                p.produce(self.topic, key=str(seq).encode(), value=str(seq).encode(),
                          on_delivery=self._on_delivery)
                seq += 1
                self.sent = seq
            except BufferError:
                pass
            p.poll(0)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
        remaining = p.flush(150)
        if remaining:
            self.errors.append(f"producer: {remaining} messages still unacknowledged at the end")

    def _consume(self) -> None:
        c = self.ck.Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 45000,
                "error_cb": lambda e: None,
            }
        )

        def on_revoke(consumer, partitions):
            self._commit(c)

        c.subscribe([self.topic], on_revoke=on_revoke)
        try:
            while not self._stop_consuming.is_set():
                msgs = c.consume(500, timeout=0.5)
                got = [int(m.value()) for m in msgs if m.error() is None]
                if got:
                    with self._lock:
                        self.seen.extend(got)
                    self._commit(c)
            self._commit(c)
        finally:
            c.close()

    def _commit(self, c) -> None:
        """Commits the consumer's position, retrying for up to 60 s."""
        deadline = time.monotonic() + 60
        while True:
            try:
                c.commit(asynchronous=False)
                return
            except self.ck.KafkaException as e:
                code = e.args[0].code()
                if code == self.ck.KafkaError._NO_OFFSET:
                    return
                self.commit_errors += 1
                if time.monotonic() > deadline:
                    self.errors.append(f"consumer: commit failed for 60 s: {e}")
                    return
                time.sleep(0.5)

    def wait_flowing(self, timeout: float, since: float | None = None, partitions: int = 1) -> float:
        """Waits until each of the topic's first `partitions` partitions has acknowledged a
        message produced after `since` (default: now); returns when that was seen."""
        since = time.monotonic() if since is None else since
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                times = [self.last_acked_sent_at.get(p, 0.0) for p in range(partitions)]
            if min(times) > since:
                return time.monotonic()
            time.sleep(0.05)
        raise AssertionError(
            f"not every partition had a produce acknowledged within {timeout}s: {times}"
        )

    def abort(self) -> None:
        """Stops both threads without checking anything (after a failure)."""
        self._stop_producing.set()
        self._stop_consuming.set()

    def finish(self, timeout: float = 180) -> dict:
        """Stops producing, waits until the group has seen every acknowledged message, stops the
        consumer; returns the figures."""
        self._stop_producing.set()
        self._producer.join(timeout=160)
        assert not self._producer.is_alive(), "the producer did not stop"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.acked <= set(self.seen):
                    break
            time.sleep(0.5)
        time.sleep(1)  # anything delivered twice shortly after shows up too
        self._stop_consuming.set()
        self._consumer.join(timeout=70)
        with self._lock:
            seen = list(self.seen)
            acked = set(self.acked)
        counts: dict[int, int] = {}
        for v in seen:
            counts[v] = counts.get(v, 0) + 1
        return {
            "sent": self.sent,
            "acked": len(acked),
            "failed": len(self.failed),
            "lost": sorted(acked - set(counts))[:20],
            "lost_count": len(acked - set(counts)),
            "duplicates": sum(n - 1 for n in counts.values() if n > 1),
            "consumed": len(seen),
            "commit_retries": self.commit_errors,
            "longest_ack_gap_s": round(max(self.longest_gap.values(), default=0.0), 2),
            "errors": self.errors[:10],
        }
