"""Consumer groups with real clients against the `jet` binary: librdkafka (confluent-kafka and
kcat -G), kafka-python and aiokafka.

Consumers run as subprocesses (this file is also the worker: `python test_groups.py worker ...`)
so a test can SIGKILL one. Each worker appends to its own log, one line per event, flushed as
written: `A <partitions>` assigned, `R <partitions>` revoked, `L <partitions>` lost, `M <p> <o>`
a message processed, `E <text>` an error, `CLOSED` after a clean close. Workers commit after
processing (synchronously, the offsets of what they just logged), so every message is logged
before its offset is committed: a message logged twice is a duplicate delivery, a produced
message never logged is a lost one.

Every wait is bounded (WAIT_S); workers exit by themselves after WORKER_MAX_S.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

WAIT_S = 90.0
WORKER_MAX_S = 270.0
SESSION_MS = 6000
HEARTBEAT_MS = 1000


# ------------------------------------------------------------------------------------------
# The worker (runs in its own process; imports only the client it drives).
# ------------------------------------------------------------------------------------------


def _parts(ps) -> str:
    return ",".join(str(p) for p in sorted(ps))


def worker_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--session-ms", type=int, default=SESSION_MS)
    ap.add_argument("--strategy", default="range,roundrobin")
    ap.add_argument("--instance", default=None)
    a = ap.parse_args(argv)
    out = open(a.out, "a", buffering=1)
    stop_file = a.out + ".stop"
    deadline = time.monotonic() + WORKER_MAX_S

    def running() -> bool:
        return time.monotonic() < deadline and not os.path.exists(stop_file)

    def log_messages(pairs) -> None:
        if pairs:
            out.write("".join(f"M {p} {o}\n" for p, o in pairs))

    if a.client == "confluent":
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        conf = {
            "bootstrap.servers": a.bootstrap,
            "group.id": a.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": a.session_ms,
            "heartbeat.interval.ms": HEARTBEAT_MS,
            "partition.assignment.strategy": a.strategy,
        }
        if a.instance:
            conf["group.instance.id"] = a.instance
        c = Consumer(conf)
        c.subscribe(
            [a.topic],
            on_assign=lambda _c, ps: out.write(f"A {_parts(p.partition for p in ps)}\n"),
            on_revoke=lambda _c, ps: out.write(f"R {_parts(p.partition for p in ps)}\n"),
            on_lost=lambda _c, ps: out.write(f"L {_parts(p.partition for p in ps)}\n"),
        )
        while running():
            msgs = c.consume(num_messages=500, timeout=0.2)
            got = []
            for m in msgs:
                if m.error() is not None:
                    out.write(f"E {m.error()}\n")
                else:
                    got.append((m.partition(), m.offset()))
            log_messages(got)
            if got:
                top: dict[int, int] = {}
                for p, o in got:
                    top[p] = max(top.get(p, -1), o)
                try:
                    c.commit(
                        offsets=[TopicPartition(a.topic, p, o + 1) for p, o in top.items()],
                        asynchronous=False,
                    )
                except KafkaException as e:
                    out.write(f"E commit {e}\n")
        c.close()
    elif a.client == "kafka-python":
        from kafka import ConsumerRebalanceListener, KafkaConsumer
        from kafka.errors import KafkaError

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                out.write(f"R {_parts(tp.partition for tp in revoked)}\n")

            def on_partitions_assigned(self, assigned):
                out.write(f"A {_parts(tp.partition for tp in assigned)}\n")

        c = KafkaConsumer(
            bootstrap_servers=a.bootstrap,
            group_id=a.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=a.session_ms,
            heartbeat_interval_ms=HEARTBEAT_MS,
        )
        c.subscribe([a.topic], listener=Listener())
        while running():
            batch = c.poll(timeout_ms=200, max_records=500)
            got = [(r.partition, r.offset) for recs in batch.values() for r in recs]
            log_messages(got)
            if got:
                try:
                    c.commit()
                except KafkaError as e:
                    out.write(f"E commit {e!r}\n")
        c.close()
    elif a.client == "aiokafka":
        import asyncio

        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
        from aiokafka.errors import KafkaError

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                out.write(f"R {_parts(tp.partition for tp in revoked)}\n")

            def on_partitions_assigned(self, assigned):
                out.write(f"A {_parts(tp.partition for tp in assigned)}\n")

        async def run():
            c = AIOKafkaConsumer(
                bootstrap_servers=a.bootstrap,
                group_id=a.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=a.session_ms,
                heartbeat_interval_ms=HEARTBEAT_MS,
            )
            await c.start()
            c.subscribe([a.topic], listener=Listener())
            try:
                while running():
                    batch = await c.getmany(timeout_ms=200, max_records=500)
                    got = [(r.partition, r.offset) for recs in batch.values() for r in recs]
                    log_messages(got)
                    if got:
                        try:
                            await c.commit()
                        except KafkaError as e:
                            out.write(f"E commit {e!r}\n")
            finally:
                await c.stop()

        asyncio.run(run())
    else:
        raise SystemExit(f"unknown client {a.client}")
    out.write("CLOSED\n")


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "worker":
    worker_main(sys.argv[2:])
    sys.exit(0)


# ------------------------------------------------------------------------------------------
# The tests.
# ------------------------------------------------------------------------------------------

import pytest  # noqa: E402

from conftest import need  # noqa: E402


class Worker:
    """One consumer subprocess and what its log says."""

    def __init__(self, tmp_path: Path, name: str, client: str, bootstrap: str, topic: str,
                 group: str, **opts):
        self.name = name
        self.out = tmp_path / f"{name}.log"
        self.out.write_text("")
        args = [sys.executable, str(Path(__file__).resolve()), "worker", "--client", client,
                "--bootstrap", bootstrap, "--topic", topic, "--group", group,
                "--out", str(self.out)]
        for k, v in opts.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        self.stderr = open(tmp_path / f"{name}.stderr", "wb")
        self.proc = subprocess.Popen(args, stdout=self.stderr, stderr=subprocess.STDOUT)

    def lines(self) -> list[str]:
        text = self.out.read_text(errors="replace")
        # A SIGKILL may cut the last line short; only whole lines count.
        return text.split("\n")[:-1]

    def messages(self) -> list[tuple[int, int]]:
        out = []
        for line in self.lines():
            parts = line.split(" ")
            if parts[0] == "M" and len(parts) == 3:
                out.append((int(parts[1]), int(parts[2])))
        return out

    def events(self) -> list[tuple[str, set[int]]]:
        out = []
        for line in self.lines():
            kind, _, rest = line.partition(" ")
            if kind in ("A", "R", "L"):
                out.append((kind, {int(p) for p in rest.split(",") if p}))
        return out

    def assignment(self) -> set[int]:
        """Current partitions: assigns add, revokes and losses remove (right for eager and
        cooperative protocols alike)."""
        owned: set[int] = set()
        for kind, ps in self.events():
            owned = owned | ps if kind == "A" else owned - ps
        return owned

    def errors(self) -> list[str]:
        return [line for line in self.lines() if line.startswith("E ")]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def close(self, timeout_s: float = 30.0) -> None:
        """Asks the worker to close its consumer cleanly, and waits for it."""
        Path(str(self.out) + ".stop").write_text("")
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"{self.name} did not close within {timeout_s}s")
        assert "CLOSED" in self.lines(), f"{self.name} did not close cleanly:\n{self.tail()}"

    def tail(self, n: int = 30) -> str:
        lines = [line for line in self.lines() if not line.startswith("M ")]
        err = Path(self.stderr.name).read_text(errors="replace")[-3000:]
        return "\n".join(lines[-n:]) + f"\n--- stderr ---\n{err}"


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.kill9()
        w.stderr.close()


def wait_for(what: str, cond, timeout_s: float = WAIT_S, diag=lambda: ""):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{diag()}")


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = need("confluent_kafka.admin")
    client = admin.AdminClient({"bootstrap.servers": bootstrap})
    for _, f in client.create_topics([admin.NewTopic(topic, partitions, 1)]).items():
        f.result(30)


def produce(bootstrap: str, topic: str, partitions: int, n: int, start: int = 0) -> set:
    """Produces n messages round-robin over the partitions; returns their (partition, offset)."""
    ck = need("confluent_kafka")
    p = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    delivered: set = set()
    errors = []

    def on_delivery(err, m):
        if err is not None:
            errors.append(err)
        else:
            delivered.add((m.partition(), m.offset()))

    for i in range(start, start + n):
        while True:
            try:
                p.produce(topic, value=f"v{i}".encode(), partition=i % partitions,
                          on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0, "messages not delivered within 60 s"
    assert not errors, f"delivery errors: {errors[:3]}"
    assert len(delivered) == n
    return delivered


def counts(expected: set, ws: list[Worker]) -> dict:
    consumed = [m for w in ws for m in w.messages()]
    seen = Counter(consumed)
    return {
        "expected": len(expected),
        "consumed": len(consumed),
        "distinct": len(seen),
        "duplicates": sum(c - 1 for c in seen.values() if c > 1),
        "missing": len(expected - set(seen)),
        "unexpected": len(set(seen) - expected),
    }


def diag(ws: list[Worker]):
    return lambda: "\n".join(
        f"--- {w.name} alive={w.alive()} owns={sorted(w.assignment())} "
        f"consumed={len(w.messages())}\n{w.tail()}"
        for w in ws
    )


def consumed_all(expected: set, ws: list[Worker]):
    return lambda: expected <= {m for w in ws for m in w.messages()}


def owners_cover(ws: list[Worker], partitions: int, members: int):
    """Exactly `members` workers own partitions, together all of them, none twice."""

    def check():
        owned = [w.assignment() for w in ws if w.alive()]
        owned = [o for o in owned if o]
        union = set().union(*owned) if owned else set()
        return (
            len(owned) == members
            and union == set(range(partitions))
            and sum(len(o) for o in owned) == partitions
        )

    return check


def group_scenario(jet, tmp_path, workers, topic, client: str, partitions: int, batch: int):
    """Three consumers share the topic; a fourth joins; one is SIGKILLed (its partitions move
    after the session timeout); one closes (its partitions move at once). Returns the killed
    worker, the expected messages and the workers."""
    bootstrap = jet.bootstrap
    create_topic(bootstrap, topic, partitions)
    group = f"g-{client}"
    expected = produce(bootstrap, topic, partitions, batch * 2)
    ws = []

    def spawn(name):
        w = Worker(tmp_path, name, client, bootstrap, topic, group, session_ms=SESSION_MS)
        workers.append(w)
        ws.append(w)
        return w

    for i in range(3):
        spawn(f"{client}-{i}")
    wait_for("3 consumers sharing every partition", owners_cover(ws, partitions, 3), diag=diag(ws))
    wait_for("the first messages consumed", consumed_all(expected, ws), diag=diag(ws))

    spawn(f"{client}-3")
    wait_for("the 4th consumer getting partitions", owners_cover(ws, partitions, 4), diag=diag(ws))
    expected |= produce(bootstrap, topic, partitions, batch * 2, start=batch * 2)
    wait_for("messages consumed by 4 consumers", consumed_all(expected, ws), diag=diag(ws))

    victim = max((w for w in ws), key=lambda w: len(w.assignment()))
    moved = victim.assignment()
    victim.kill9()
    killed_at = time.monotonic()
    expected |= produce(bootstrap, topic, partitions, batch, start=batch * 4)
    wait_for(
        f"partitions {sorted(moved)} of the SIGKILLed consumer moving to the others",
        owners_cover([w for w in ws if w is not victim], partitions, 3),
        diag=diag(ws),
    )
    moved_after_s = time.monotonic() - killed_at
    print(f"{client}: partitions of the killed consumer moved after {moved_after_s:.1f}s "
          f"(session timeout {SESSION_MS / 1000:.0f}s)")
    assert moved_after_s >= SESSION_MS / 1000 - 2.0, "moved before the session could expire"
    wait_for("messages consumed after the kill", consumed_all(expected, ws), diag=diag(ws))

    leaver = next(w for w in ws if w.alive() and w.assignment())
    leaver.close()
    left_at = time.monotonic()
    rest = [w for w in ws if w.alive()]
    wait_for("partitions of the closed consumer moving", owners_cover(rest, partitions, 2),
             timeout_s=SESSION_MS / 1000 - 1.0, diag=diag(ws))
    print(f"{client}: partitions of the closed consumer moved after "
          f"{time.monotonic() - left_at:.1f}s")
    expected |= produce(bootstrap, topic, partitions, batch, start=batch * 5)
    wait_for("every message consumed", consumed_all(expected, ws), diag=diag(ws))
    for w in rest:
        w.close()
    return victim, expected, ws


def check_counts(client: str, victim: Worker, expected: set, ws: list[Worker]):
    c = counts(expected, ws)
    print(f"{client}: {c}")
    errors = [e for w in ws for e in w.errors()]
    print(f"{client}: {len(errors)} client errors, first: {errors[:3]}")
    assert c["missing"] == 0 and c["unexpected"] == 0, c
    # Exactly once, except what the SIGKILLed consumer processed without committing.
    seen = Counter(m for w in ws for m in w.messages())
    dups = {m for m, k in seen.items() if k > 1}
    victim_msgs = set(victim.messages())
    assert dups <= victim_msgs, (
        f"{len(dups - victim_msgs)} duplicates not explained by the SIGKILL: "
        f"{sorted(dups - victim_msgs)[:10]}"
    )


def test_confluent_group_60k(jet, tmp_path, workers, topic):
    """librdkafka consumers (confluent-kafka), 6 partitions, 60,000 messages: 3 consumers, a
    4th joins, one is SIGKILLed (its partitions move after session.timeout.ms=6000), one
    close()s (its partitions move at once).

    Delivery is exactly once for every message except the ones the SIGKILLed consumer had
    processed but not yet committed: a killed process cannot commit, so those are delivered
    again (at least once). The test requires zero missing messages and allows duplicates only
    among the messages the killed consumer had processed."""
    need("confluent_kafka")
    victim, expected, ws = group_scenario(jet, tmp_path, workers, topic, "confluent", 6, 10_000)
    assert len(expected) == 60_000
    check_counts("confluent", victim, expected, ws)


def test_kafka_python_group(jet, tmp_path, workers, topic):
    """The same scenario with kafka-python, 4 partitions and 6,000 messages (same
    at-least-once rule for the SIGKILLed consumer's uncommitted messages)."""
    need("kafka")
    victim, expected, ws = group_scenario(jet, tmp_path, workers, topic, "kafka-python", 4, 1000)
    check_counts("kafka-python", victim, expected, ws)


def test_aiokafka_group(jet, tmp_path, workers, topic):
    """The same scenario with aiokafka, 4 partitions and 6,000 messages (same at-least-once
    rule for the SIGKILLed consumer's uncommitted messages)."""
    need("aiokafka")
    victim, expected, ws = group_scenario(jet, tmp_path, workers, topic, "aiokafka", 4, 1000)
    check_counts("aiokafka", victim, expected, ws)


def kcat_group(bootstrap: str, group: str, topic: str, count: int) -> list[tuple[int, int]]:
    exe = need("bin:kcat")
    res = subprocess.run(
        # Not `-o beginning`: in -G mode kcat applies -o to every assigned partition, over the
        # committed offsets.
        [exe, "-b", bootstrap, "-G", group, "-X", f"session.timeout.ms={SESSION_MS}",
         "-X", "auto.offset.reset=earliest", "-c", str(count), "-f", "%p %o\n", topic],
        capture_output=True, timeout=WAIT_S,
    )
    assert res.returncode == 0, f"kcat -G failed ({res.returncode}): {res.stderr.decode()}"
    return [tuple(map(int, line.split())) for line in res.stdout.decode().splitlines()]


def test_kcat_balanced_consumer(jet, topic):
    """`kcat -G`: a balanced consumer reads every message once, commits on exit, and the next
    one resumes from the committed offsets."""
    create_topic(jet.bootstrap, topic, 3)
    first = produce(jet.bootstrap, topic, 3, 3000)
    got = kcat_group(jet.bootstrap, "kcat-group", topic, 3000)
    print(f"kcat: expected {len(first)}, consumed {len(got)}, distinct {len(set(got))}")
    assert len(got) == len(set(got)) and set(got) == first
    second = produce(jet.bootstrap, topic, 3, 600, start=3000)
    got = kcat_group(jet.bootstrap, "kcat-group", topic, 600)
    print(f"kcat resumed: expected {len(second)}, consumed {len(got)}")
    assert set(got) == second and len(got) == 600


def test_cooperative_sticky_keeps_partitions_that_stay(jet, tmp_path, workers, topic):
    """partition.assignment.strategy=cooperative-sticky: when a second consumer joins, the
    first gives up only the partitions that move; the ones it keeps are never revoked."""
    need("confluent_kafka")
    create_topic(jet.bootstrap, topic, 6)
    expected = produce(jet.bootstrap, topic, 6, 1200)
    opts = dict(session_ms=SESSION_MS, strategy="cooperative-sticky")
    a = Worker(tmp_path, "coop-a", "confluent", jet.bootstrap, topic, "g-coop", **opts)
    workers.append(a)
    wait_for("a owning every partition", lambda: a.assignment() == set(range(6)), diag=diag([a]))
    wait_for("a consuming", consumed_all(expected, [a]), diag=diag([a]))
    b = Worker(tmp_path, "coop-b", "confluent", jet.bootstrap, topic, "g-coop", **opts)
    workers.append(b)
    wait_for("the partitions split", owners_cover([a, b], 6, 2), diag=diag([a, b]))
    expected |= produce(jet.bootstrap, topic, 6, 1200, start=1200)
    wait_for("everything consumed", consumed_all(expected, [a, b]), diag=diag([a, b]))
    kept = a.assignment()
    revoked = set().union(*[ps for kind, ps in a.events() if kind in ("R", "L")])
    print(f"cooperative: a keeps {sorted(kept)}, revoked {sorted(revoked)}, "
          f"b owns {sorted(b.assignment())}; a events {a.events()}")
    assert revoked and not (revoked & kept), "a partition that stayed with a was revoked"
    assert revoked == b.assignment()
    a.close()
    b.close()
    c = counts(expected, [a, b])
    print(f"cooperative: {c}")
    assert c["missing"] == 0 and c["duplicates"] == 0, c


def test_static_member_restart_keeps_its_partitions(jet, tmp_path, workers, topic):
    """group.instance.id (KIP-345): a static member SIGKILLed and restarted within the session
    timeout gets its partitions back without a rebalance; the other member sees no revoke."""
    need("confluent_kafka")
    create_topic(jet.bootstrap, topic, 4)
    expected = produce(jet.bootstrap, topic, 4, 800)
    session_ms = 15_000

    def static(name, instance):
        w = Worker(tmp_path, name, "confluent", jet.bootstrap, topic, "g-static",
                   session_ms=session_ms, instance=instance)
        workers.append(w)
        return w

    a, b = static("static-a", "inst-a"), static("static-b", "inst-b")
    wait_for("two static members sharing the partitions", owners_cover([a, b], 4, 2),
             diag=diag([a, b]))
    wait_for("consumed", consumed_all(expected, [a, b]), diag=diag([a, b]))
    a_parts, b_events = a.assignment(), list(b.events())
    a.kill9()
    a2 = static("static-a2", "inst-a")
    wait_for("the restarted member getting its partitions", lambda: a2.assignment() == a_parts,
             timeout_s=session_ms / 1000 - 3.0, diag=diag([a2, b]))
    expected |= produce(jet.bootstrap, topic, 4, 800, start=800)
    wait_for("consumed after the restart", consumed_all(expected, [a, a2, b]),
             diag=diag([a2, b]))
    print(f"static: a owned {sorted(a_parts)}, restarted a owns {sorted(a2.assignment())}; "
          f"b events before {b_events}, after {b.events()}")
    assert b.events() == b_events, "the other member saw a rebalance"
    a2.close()
    b.close()
    c = counts(expected, [a, a2, b])
    print(f"static: {c}")
    assert c["missing"] == 0, c


def test_committed_offsets_survive_a_broker_kill9(jet, tmp_path, workers, topic):
    """Commit, SIGKILL and restart the broker, resume: the group continues from its committed
    offsets, skipping nothing and repeating nothing."""
    need("confluent_kafka")
    create_topic(jet.bootstrap, topic, 3)
    first = produce(jet.bootstrap, topic, 3, 1500)
    a = Worker(tmp_path, "before", "confluent", jet.bootstrap, topic, "g-restart")
    workers.append(a)
    wait_for("the first half consumed", consumed_all(first, [a]), diag=diag([a]))
    a.close()
    jet.restart(hard=True)
    second = produce(jet.bootstrap, topic, 3, 1500, start=1500)
    b = Worker(tmp_path, "after", "confluent", jet.bootstrap, topic, "g-restart")
    workers.append(b)
    wait_for("the second half consumed", consumed_all(second, [b]), diag=diag([b]))
    b.close()
    c = counts(first | second, [a, b])
    print(f"restart: {c}; after the restart consumed {len(b.messages())} "
          f"(expected {len(second)})")
    assert c["missing"] == 0 and c["duplicates"] == 0 and c["unexpected"] == 0, c
    assert set(b.messages()) == second, "the resumed consumer did not start at the commits"
