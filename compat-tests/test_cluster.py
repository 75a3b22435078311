"""A three-node jet cluster under real clients: metadata of a replicated topic, failover of a
killed leader under a 200,000-message idempotent load, a stalled (SIGSTOPped) leader, a killed
group coordinator, and a rolling restart, each checked for lost, duplicated and reordered
messages.

Every node is started by the `cluster3` fixture (compat-tests/cluster.py) on free loopback
ports and SIGKILLed at the end whatever happens. These tests run longer than the single-node
ones, so each is bounded by CLUSTER_TEST_TIMEOUT_S (JET_CLUSTER_TEST_TIMEOUT_S, default 600 s)
instead of conftest's TEST_TIMEOUT_S; a test past it gets a TimeoutError, and faulthandler
dumps the stacks and exits 30 s later.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections import Counter, deque

import pytest

from cluster import (  # noqa: F401 - cluster3 is a fixture
    ProducerLoad,
    check_delivery,
    cluster3,
    read_back,
    wait_for,
)
from conftest import TEST_TIMEOUT_S, need

CLUSTER_TEST_TIMEOUT_S = int(
    os.environ.get("JET_CLUSTER_TEST_TIMEOUT_S", str(max(TEST_TIMEOUT_S, 600)))
)
SESSION_MS = 10_000


@pytest.fixture(autouse=True)
def _cluster_test_bound():
    """Re-arms conftest's per-test alarm with the longer cluster bound (conftest's autouse
    fixture runs first and cancels everything after the test)."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"cluster test exceeded {CLUSTER_TEST_TIMEOUT_S}s")

    faulthandler.dump_traceback_later(CLUSTER_TEST_TIMEOUT_S + 30, exit=True)
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CLUSTER_TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def producer_load():
    """Makes ProducerLoads (same arguments) and aborts every one at the end, so no producer
    thread outlives its test, whatever the test did."""
    started: list[ProducerLoad] = []

    def make(*args, **kwargs) -> ProducerLoad:
        load = ProducerLoad(*args, **kwargs)
        started.append(load)
        return load

    yield make
    for load in started:
        load.abort()


@pytest.fixture
def kcat_bin():
    return need("bin:kcat")


def topic_name(request) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in request.node.name)
    return f"t-{safe}"[:200]


def assert_clean(report: dict, what: str) -> None:
    bad = {k: report[k] for k in ("lost", "duplicated", "misplaced", "out_of_order", "unacked")}
    print(f"{what}: {report}")
    assert not any(bad.values()), f"{what}: {bad}; examples: {report['examples']}"


# ------------------------------------------------------------------------------------------


def test_three_local_nodes(kcat_bin, cluster3, request):
    res = subprocess.run(
        [kcat_bin, "-L", "-J", "-b", cluster3.bootstrap, "-m", "30"],
        capture_output=True, timeout=60, text=True,
    )
    assert res.returncode == 0, f"kcat -L failed ({res.returncode}): {res.stderr}"
    listing = json.loads(res.stdout)
    brokers = {b["id"]: b["name"] for b in listing["brokers"]}
    want = {n.id: n.bootstrap for n in cluster3.nodes}
    assert brokers == want, f"kcat -L brokers {brokers}, want {want}"
    assert listing.get("controllerid") in want, f"controller {listing.get('controllerid')}"

    topic = topic_name(request)
    md = cluster3.create_topic(topic, 6, 3)
    ids = {n.id for n in cluster3.nodes}
    for p, info in md.partitions(topic).items():
        assert set(info.replicas) == ids, f"{topic}[{p}] replicas {info.replicas}, want {ids}"
        assert set(info.isr) == ids, f"{topic}[{p}] ISR {info.isr}, want {ids}"
        assert info.leader in ids, f"{topic}[{p}] leader {info.leader}"
    assert md.controller in ids, md.describe()
    leaders = md.leaders(topic)
    print(f"partition leaders: {leaders}; distinct: {sorted(set(leaders.values()))}")
    print(md.describe(topic))
    assert len(set(leaders.values())) >= 2, (
        f"all 6 partitions (over 4 data shards) are led by one node: {leaders}\n{md.describe()}"
    )


# ------------------------------------------------------------------------------------------

FAILOVER_MESSAGES = 200_000
# Paced so that the stream outlasts the kill and the restart (unpaced, 200,000 take a few
# seconds and the restarted node would rejoin an idle cluster): ~40 s in all, the kill at ~10 s,
# the restart at ~20 s.
FAILOVER_RATE = 5_000
FAILOVER_KILL_AFTER = 50_000
RESTART_AFTER_S = 10.0


def test_failover_under_load(cluster3, producer_load, request):
    topic = topic_name(request)
    partitions = 6
    cluster3.create_topic(topic, partitions, 3)
    # Idempotent, acks=all, linger.ms=5, message.timeout.ms=120000 (ProducerLoad's defaults).
    load = producer_load(cluster3.bootstrap, topic, partitions, count=FAILOVER_MESSAGES,
                        rate=FAILOVER_RATE).start()

    wait_for(
        f"{FAILOVER_KILL_AFTER} delivered",
        lambda: load.delivered >= FAILOVER_KILL_AFTER or load.finished_at is not None,
        timeout_s=240,
        interval_s=0.05,
        diag=lambda: f"delivered {load.delivered}, errors {load.client_errors[-5:]}",
    )
    assert load.finished_at is None or load.delivered < FAILOVER_MESSAGES, (
        "the producer finished before the kill; raise FAILOVER_MESSAGES"
    )
    md = cluster3.metadata()
    counts = Counter(md.leaders(topic).values())
    victim = cluster3.node(counts.most_common(1)[0][0])
    killed_at = time.monotonic() - load.started
    print(f"killing node {victim.id} (leads {counts[victim.id]} of {partitions} partitions: "
          f"{md.leaders(topic)}) after {load.delivered} delivered, t={killed_at:.1f}s")
    victim.kill9()

    # The new leaders must take over without the victim.
    wait_for(
        f"leaders of {topic} other than the killed node {victim.id}",
        lambda: all(
            leader not in (victim.id, -1)
            for leader in cluster3.metadata(timeout_s=5).leaders(topic).values()
        ),
        timeout_s=30,
        diag=lambda: cluster3.log_tails(20),
    )
    time.sleep(max(0.0, RESTART_AFTER_S - (time.monotonic() - load.started - killed_at)))
    victim.spawn()  # from the main thread, without blocking the producer
    victim.wait_ready()
    print(f"node {victim.id} answering again at t={time.monotonic() - load.started:.1f}s, "
          f"{load.delivered} delivered")

    load.join()
    elapsed = load.finished_at - load.started
    print(f"produced {load.sent} in {elapsed:.1f}s; {load.stall_report()}")
    load.assert_all_acked()

    cluster3.wait_fully_replicated(topic, partitions, 3, timeout_s=60)
    records = read_back(cluster3.bootstrap, topic, partitions)
    assert_clean(check_delivery(load.acked, records), "failover under load")
    print(load.stall_report())


# ------------------------------------------------------------------------------------------

STALL_S = 10.0
NEW_LEADER_WITHIN_S = 8.0


def test_stalled_leader(cluster3, producer_load, request):
    topic = topic_name(request)
    partitions = 3
    md = cluster3.create_topic(topic, partitions, 3)
    # librdkafka waits socket.timeout.ms (60 s by default) for the answer to a request in flight
    # to the stopped leader before it looks for the new one; 3 s lets the producer move to the
    # new leader while the old one is still stopped.
    load = producer_load(cluster3.bootstrap, topic, partitions, rate=1000,
                        **{"socket.timeout.ms": 3000}).start()
    wait_for("2,000 delivered before the stall", lambda: load.delivered >= 2000, timeout_s=60,
             diag=lambda: f"errors {load.client_errors[-5:]}")

    md = cluster3.metadata()
    old = md.partitions(topic)[0].leader
    victim = cluster3.node(old)
    print(f"SIGSTOP node {victim.id}, leader of {topic}[0]; {md.describe(topic)}")
    before = load.delivered
    before_p0 = load.acked_in[0]
    stopped_at = time.monotonic()
    victim.sigstop()
    try:
        def new_leader():
            leader = cluster3.metadata(timeout_s=3).partitions(topic)[0].leader
            return leader if leader not in (old, -1) else None

        leader = wait_for(
            f"a leader of {topic}[0] other than the stopped node {old}",
            new_leader,
            timeout_s=NEW_LEADER_WITHIN_S,
            interval_s=0.2,
            diag=lambda: cluster3.log_tails(20),
        )
        took = time.monotonic() - stopped_at
        print(f"{topic}[0]: node {leader} leads {took:.1f}s after the stop")
        time.sleep(max(0.0, STALL_S - (time.monotonic() - stopped_at)))
        during = load.delivered - before
        during_p0 = load.acked_in[0] - before_p0
    finally:
        victim.sigcont()
    print(f"SIGCONT node {victim.id}; {during} delivered while it was stopped, {during_p0} of "
          f"them to {topic}[0]")
    # The new leader serves: writes to the stalled leader's partition went on without it.
    assert during_p0 > 0, (
        f"no write to {topic}[0] was acknowledged in the {STALL_S:.0f}s its old leader (node "
        f"{old}) was stopped, though node {leader} led it after {took:.1f}s\n"
        f"{load.stall_report()}; producer errors {load.client_errors[-5:]}\n"
        + cluster3.log_tails(20)
    )

    after = load.delivered
    wait_for("2,000 more delivered after SIGCONT", lambda: load.delivered >= after + 2000,
             timeout_s=60, diag=lambda: f"errors {load.client_errors[-5:]}")
    load.stop()
    load.join()
    print(load.stall_report())
    load.assert_all_acked()
    records = read_back(cluster3.bootstrap, topic, partitions)
    assert_clean(check_delivery(load.acked, records), "stalled leader")


# ------------------------------------------------------------------------------------------

COORD_MESSAGES = 20_000


def find_coordinator(cluster, group: str) -> int:
    """The group's coordinator: DescribeGroups through confluent-kafka, else FindCoordinator
    through kafka-python."""
    admin = need("confluent_kafka.admin")
    client = admin.AdminClient({"bootstrap.servers": cluster.live_bootstrap()})
    try:
        desc = client.describe_consumer_groups([group], request_timeout=10)[group].result(15)
        return desc.coordinator.id
    except Exception as e:  # noqa: BLE001 - fall back to the other client
        print(f"describe_consumer_groups failed ({e}); asking FindCoordinator via kafka-python")
    kafka_admin = need("kafka.admin")
    ka = kafka_admin.KafkaAdminClient(bootstrap_servers=cluster.live_bootstrap().split(","),
                                      request_timeout_ms=15_000)
    try:
        return ka._find_coordinator_id(group)
    finally:
        ka.close()


class Committer:
    """Synchronous commits of explicit offsets, retried while the coordinator moves; keeps
    every error it saw."""

    def __init__(self, consumer, topic: str):
        self.consumer = consumer
        self.topic = topic
        self.errors: list[str] = []
        self.gave_up: list[dict] = []

    def commit(self, offsets: dict[int, int], within_s: float = 60.0) -> bool:
        ck = need("confluent_kafka")
        tps = [ck.TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
        deadline = time.monotonic() + within_s
        while True:
            try:
                res = self.consumer.commit(offsets=tps, asynchronous=False)
                bad = [tp for tp in res or [] if tp.error is not None]
                if not bad:
                    return True
                err = f"partition errors {[(tp.partition, str(tp.error)) for tp in bad]}"
            except ck.KafkaException as e:
                err = str(e.args[0])
            self.errors.append(err)
            fatal = any(s in err for s in ("ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID",
                                            "REBALANCE_IN_PROGRESS", "FENCED"))
            if fatal or time.monotonic() > deadline:
                self.gave_up.append(dict(offsets))
                return False
            time.sleep(0.2)


class RecentLog(logging.Handler):
    """The last lines a client logged (librdkafka's group debug included), for failure
    messages."""

    def __init__(self, name: str, lines: int = 150):
        super().__init__()
        self.lines: deque[str] = deque(maxlen=lines)
        self.logger = logging.getLogger(f"jet-cluster-test.{name}.{time.monotonic_ns()}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)

    def emit(self, record) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {record.getMessage()}")

    def tail(self, n: int = 40) -> str:
        return "\n".join(list(self.lines)[-n:])


def group_consumer(bootstrap: str, group: str, log: RecentLog | None = None, **conf):
    ck = need("confluent_kafka")
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 1000,
    }
    if log is not None:
        config.update({"logger": log.logger, "debug": "cgrp"})
    config.update(conf)
    return ck.Consumer(config)


def test_coordinator_failover(cluster3, producer_load, request):
    ck = need("confluent_kafka")
    topic = topic_name(request)
    partitions = 6
    cluster3.create_topic(topic, partitions, 3)
    load = producer_load(cluster3.bootstrap, topic, partitions, count=COORD_MESSAGES).start()
    load.join()
    load.assert_all_acked()
    produced = set(load.acked)

    group = f"g-{topic}"[:200]
    log = RecentLog("coordinator-failover")
    consumer = group_consumer(cluster3.bootstrap, group, log)
    committer = Committer(consumer, topic)
    consumed: list[int] = []
    consumer_errors: list[str] = []
    victim = None
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 240
        while len(set(consumed)) < len(produced):
            assert time.monotonic() < deadline, (
                f"consumed {len(set(consumed))} of {len(produced)} distinct in 240s; "
                f"commit errors {committer.errors[-5:]}; consumer errors {consumer_errors[-5:]}"
                f"\n--- the consumer's last log lines ---\n{log.tail()}"
            )
            batch = consumer.consume(num_messages=500, timeout=0.5)
            offsets: dict[int, int] = {}
            for m in batch:
                if m.error() is not None:
                    consumer_errors.append(str(m.error()))
                    continue
                consumed.append(int(m.value()))  # processed ...
                offsets[m.partition()] = m.offset() + 1
            if offsets:
                committer.commit(offsets)  # ... then committed
            if victim is None and len(consumed) >= len(produced) // 2:
                coordinator = find_coordinator(cluster3, group)
                victim = cluster3.node(coordinator)
                print(f"consumed and committed {len(consumed)}; killing coordinator node "
                      f"{victim.id}")
                victim.kill9()
        print(f"consumed {len(consumed)} ({len(set(consumed))} distinct); commit errors "
              f"{len(committer.errors)} {committer.errors[:5]}; consumer errors "
              f"{consumer_errors[:5]}")
    finally:
        consumer.close()
    assert victim is not None

    dups = sorted(v for v, c in Counter(consumed).items() if c > 1)
    lost = sorted(produced - set(consumed))
    assert not lost, f"{len(lost)} messages never consumed, first {lost[:5]}"
    assert len(consumed) == len(produced), (
        f"consumed {len(consumed)} for {len(produced)} produced: {len(dups)} redelivered "
        f"(first {dups[:5]}); commits given up: {committer.gave_up[:3]}; commit errors "
        f"{committer.errors[:5]}"
    )

    # The group's committed offsets are the end of every partition.
    check = group_consumer(cluster3.live_bootstrap(), group)
    try:
        tps = [ck.TopicPartition(topic, p) for p in range(partitions)]
        committed = {
            tp.partition: tp.offset
            for tp in wait_for("the group's committed offsets",
                               lambda: check.committed(tps, timeout=10), timeout_s=60)
        }
        ends = {
            tp.partition: wait_for(f"the end offset of {topic}[{tp.partition}]",
                                   lambda tp=tp: check.get_watermark_offsets(tp, timeout=5),
                                   timeout_s=60)[1]
            for tp in tps
        }
    finally:
        check.close()
    assert committed == ends, f"committed {committed}, end offsets {ends}"


# ------------------------------------------------------------------------------------------


class GroupReader:
    """A confluent-kafka group consumer on its own thread: records every value it processes,
    then commits the batch's offsets synchronously (retrying while the coordinator moves)."""

    def __init__(self, bootstrap: str, topic: str, group: str, max_s: float = 500.0):
        self.consumer = group_consumer(bootstrap, group)
        self.topic = topic
        self.committer = Committer(self.consumer, topic)
        self.values: list[int] = []
        self.errors: list[str] = []
        self.max_s = max_s
        self._stop = threading.Event()
        self._exc: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="group-reader", daemon=True)

    def start(self) -> "GroupReader":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + self.max_s
            self.consumer.subscribe([self.topic])
            while not self._stop.is_set() and time.monotonic() < deadline:
                offsets: dict[int, int] = {}
                for m in self.consumer.consume(num_messages=500, timeout=0.5):
                    if m.error() is not None:
                        self.errors.append(str(m.error()))
                        continue
                    self.values.append(int(m.value()))
                    offsets[m.partition()] = m.offset() + 1
                if offsets:
                    self.committer.commit(offsets)
        except BaseException as e:  # noqa: BLE001 - re-raised by close()
            self._exc = e
        finally:
            self.consumer.close()

    def close(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the group consumer thread did not finish"
        if self._exc is not None:
            raise self._exc


def test_rolling_restart(cluster3, producer_load, request):
    topic = topic_name(request)
    partitions = 6
    cluster3.create_topic(topic, partitions, 3)
    load = producer_load(cluster3.bootstrap, topic, partitions, rate=500).start()
    reader = GroupReader(cluster3.bootstrap, topic, f"g-{topic}"[:200]).start()
    try:
        wait_for("the group to read 1,000", lambda: len(reader.values) >= 1000, timeout_s=90,
                 diag=lambda: f"reader errors {reader.errors[-5:]}; producer "
                              f"{load.delivered} delivered, {load.client_errors[-5:]}")
        for node in cluster3.nodes:
            # Traffic flows (both ways) before each stop: the cluster serves after the last one.
            delivered, read = load.delivered, len(reader.values)
            wait_for(
                f"500 more delivered and read before stopping node {node.id}",
                lambda: load.delivered >= delivered + 500 and len(reader.values) >= read + 500,
                timeout_s=90,
                diag=lambda: f"delivered {load.delivered}, read {len(reader.values)}; reader "
                             f"errors {reader.errors[-5:]}; producer {load.client_errors[-5:]}",
            )
            t0 = time.monotonic()
            code = node.sigterm_and_wait()
            assert code == 0, f"node {node.id} exited with {code} on SIGTERM:\n{node.log_tail()}"
            stopped = time.monotonic() - t0
            node.spawn()
            node.wait_ready()
            md = cluster3.wait_fully_replicated(topic, partitions, 3, timeout_s=90)
            print(f"node {node.id}: stopped in {stopped:.1f}s, back with ISR 3 after "
                  f"{time.monotonic() - t0:.1f}s; leaders {md.leaders(topic)}; "
                  f"{load.delivered} delivered, {len(reader.values)} read")
        after = load.delivered
        wait_for("1,000 more delivered after the last restart",
                 lambda: load.delivered >= after + 1000, timeout_s=60)
        load.stop()
        load.join()
        print(load.stall_report())
        load.assert_all_acked()
        acked = set(load.acked)
        wait_for(
            f"the group to read all {len(acked)} acknowledged messages",
            lambda: acked <= set(reader.values),
            timeout_s=120,
            diag=lambda: f"missing {len(acked - set(reader.values))}; reader errors "
                         f"{reader.errors[-5:]}; commit errors {reader.committer.errors[-5:]}",
        )
        time.sleep(2)  # anything redelivered late still counts
    finally:
        load.stop()
        reader.close()

    seen = Counter(reader.values)
    lost = sorted(acked - set(seen))
    dups = sorted(v for v, c in seen.items() if c > 1)
    unacked = sorted(set(seen) - acked)
    print(f"group read {len(reader.values)} ({len(seen)} distinct) of {len(acked)} acked; "
          f"commit errors {len(reader.committer.errors)} {reader.committer.errors[:5]}; "
          f"reader errors {reader.errors[:5]}")
    assert not lost, f"{len(lost)} acknowledged messages never read, first {lost[:5]}"
    assert not unacked, f"{len(unacked)} values read that were never acknowledged: {unacked[:5]}"
    assert not dups, (
        f"{len(dups)} messages read more than once (first {dups[:5]}); commits given up: "
        f"{reader.committer.gave_up[:3]}"
    )
