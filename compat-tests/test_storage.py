"""Storage faults with a real client and a real `jet` process: kill -9 while DeleteRecords and
retention move log starts under produce load, and fail-fast when the disk fills.

What the first test proves, and why the client cannot cheat: an idempotent confluent-kafka
producer (acks=all) writes numbered messages to two partitions while the test calls
DeleteRecords on partition 0 and retention.bytes trims partition 1 every 200 ms; mid-stream the
broker is killed with SIGKILL and restarted. Afterwards, for each partition, every acknowledged
message at or above the log start offset must be read back at its acknowledged offset with its
value, no value twice, and nothing below the log start may be readable (a fetch there is
OFFSET_OUT_OF_RANGE). Replay after the crash re-applies DeleteRecords and appends from the Raft
log; if a DeleteRecords replayed in another grouping removed the wrong batches, acknowledged
messages would be missing or stale ones readable.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from conftest import Jet, in_ci, need


def _produce_numbered(bootstrap: str, topic: str, n: int, acked: dict, errors: list, stop,
                      rate: float | None = None):
    """Produces n numbered messages over 2 partitions, at most `rate` per second when given (a
    broker fast enough would otherwise finish before the test's faults get their turn)."""
    ck = need("confluent_kafka")
    started = time.monotonic()
    producer = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": 90_000,
            "retry.backoff.ms": 100,
        }
    )

    def cb(err, m):
        if err is not None:
            errors.append(str(err))
        else:
            acked[(m.partition(), m.offset())] = m.value()

    for i in range(n):
        if stop.is_set():
            break
        if rate is not None and i % 1000 == 0:
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                producer.poll(ahead)
        value = f"v-{i:07d}-".encode() + b"x" * 180
        while True:
            try:
                producer.produce(topic, value=value, partition=i % 2, on_delivery=cb)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    if left:
        errors.append(f"{left} messages not delivered")


def _read_all(bootstrap: str, topic: str, partition: int, start: int, end: int) -> dict:
    """Reads [start, end) of a partition: offset -> value."""
    ck = need("confluent_kafka")
    c = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "error",
        }
    )
    got: dict[int, bytes] = {}
    try:
        c.assign([ck.TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not got or max(got) < end - 1):
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, f"consumer error: {m.error()}"
                assert m.offset() not in got, f"offset {m.offset()} read twice"
                got[m.offset()] = m.value()
    finally:
        c.close()
    return got


def _below_start_is_out_of_range(bootstrap: str, topic: str, partition: int, offset: int):
    ck = need("confluent_kafka")
    c = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"below-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "error",
        }
    )
    try:
        c.assign([ck.TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=10, timeout=0.5):
                if m.error() is not None:
                    assert m.error().code() == ck.KafkaError._AUTO_OFFSET_RESET, m.error()
                    return
                raise AssertionError(f"read offset {m.offset()} below the log start")
        raise AssertionError("no OFFSET_OUT_OF_RANGE below the log start")
    finally:
        c.close()


@pytest.mark.jet_args("--retention-check-interval-ms", "200")
def test_kill_9_during_delete_records_and_retention_under_load(jet, topic):
    ck = need("confluent_kafka")
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    admin = AdminClient({"bootstrap.servers": jet.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    # Partition 1 is trimmed by retention.bytes (~1,500 messages of ~250 bytes).
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    res = ConfigResource(
        "topic", topic,
        incremental_configs=[ConfigEntry("retention.bytes", "400000",
                                         incremental_operation=AlterConfigOpType.SET)],
    )
    admin.incremental_alter_configs([res])[res].result(30)

    n = 150_000
    acked: dict = {}
    errors: list = []
    stop = threading.Event()
    t = threading.Thread(
        target=_produce_numbered, args=(jet.bootstrap, topic, n, acked, errors, stop, 25_000),
        daemon=True,
    )
    t.start()
    deletes = 0
    delete_errors = []
    killed = False
    started = time.monotonic()
    while t.is_alive() and time.monotonic() - started < 150:
        time.sleep(0.2)
        high = max((o for (p, o) in list(acked) if p == 0), default=0)
        if high > 200:
            try:
                fut = admin.delete_records([ck.TopicPartition(topic, 0, high - 150)])
                for f in fut.values():
                    f.result(10)
                deletes += 1
            except Exception as e:  # the broker may be down mid-restart
                delete_errors.append(repr(e))
        if not killed and len(acked) > n // 5 and deletes >= 3:
            jet.kill9()
            time.sleep(0.5)
            jet.start()
            killed = True
            admin = AdminClient({"bootstrap.servers": jet.bootstrap})
    t.join(150)
    assert not t.is_alive(), "producer did not finish"
    assert killed, (
        f"the broker was never killed (acked {len(acked)}, deletes {deletes}, "
        f"delete errors {delete_errors[:3]})"
    )
    assert deletes >= 3, f"deletes {deletes}, errors {delete_errors[:3]}"
    assert not errors, f"delivery errors: {errors[:3]}"
    assert len(acked) == n

    # Retention may still be trimming partition 1 down to its limit: wait until the log starts
    # stop moving (every check runs within 200 ms), so the reads below start at a kept offset.
    c = ck.Consumer({"bootstrap.servers": jet.bootstrap, "group.id": f"wm-{topic}"})
    try:
        def watermarks():
            return [c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)
                    for p in (0, 1)]

        marks, deadline = watermarks(), time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(1)
            now = watermarks()
            if now == marks:
                break
            marks = now
    finally:
        c.close()
    for p, (low, high) in enumerate(marks):
        want = {o: v for (pp, o), v in acked.items() if pp == p and o >= low}
        assert high == 1 + max(o for (pp, o) in acked if pp == p), f"partition {p} high {high}"
        assert low > 0, f"partition {p}: the log start never moved"
        got = _read_all(jet.bootstrap, topic, p, low, high)
        assert got == want, (
            f"partition {p}: {len(got)} read, {len(want)} acknowledged at or above {low}; "
            f"missing {sorted(set(want) - set(got))[:5]}, extra {sorted(set(got) - set(want))[:5]}"
        )
        values = list(got.values())
        assert len(set(values)) == len(values), f"partition {p}: duplicates"
        _below_start_is_out_of_range(jet.bootstrap, topic, p, low - 1)


def test_full_disk_stops_the_node_with_a_clear_error(jet_bin, tmp_path):
    """A storage failure (the data directory's file system fills up) stops the Raft driver:
    the process says why in one line and exits non-zero, rather than staying up as a broker that
    can serve nothing. Acknowledged data stays readable after a restart with room."""
    if os.geteuid() != 0 or subprocess.run(["which", "mount"], capture_output=True).returncode:
        if in_ci():
            pytest.fail("this test mounts a small tmpfs and needs root")
        print("\n!!! SKIPPED: mounting a tmpfs needs root !!!")
        pytest.skip("needs root to mount a tmpfs")
    ck = need("confluent_kafka")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], check=True)
    j = Jet(jet_bin, mnt / "data", tmp_path / "jet.log")
    try:
        j.start()
        producer = ck.Producer(
            {"bootstrap.servers": j.bootstrap, "acks": "all", "message.timeout.ms": 15_000}
        )
        acked = []

        def cb(err, m):
            if err is None:
                acked.append(m.offset())

        value = os.urandom(64 << 10)
        deadline = time.monotonic() + 60
        while j.proc.poll() is None and time.monotonic() < deadline:
            try:
                producer.produce("fill", value=value, on_delivery=cb)
            except BufferError:
                pass
            producer.poll(0.01)
        producer.flush(20)
        code = j.proc.wait(timeout=30)
        j.exit_codes.append(code)
        assert code != 0, "jet exited 0 on a full disk"
        tail = j.log_tail(20)
        assert "jet: the node stopped serving" in tail, tail
        assert acked, "nothing was acknowledged before the disk filled"

        # Moved to a disk with room, the node starts and serves every acknowledged record.
        roomy = tmp_path / "roomy"
        subprocess.run(["cp", "-a", str(mnt / "data"), str(roomy)], check=True)
        j2 = Jet(jet_bin, roomy, tmp_path / "jet2.log")
        j2.start()
        try:
            got = _read_all(j2.bootstrap, "fill", 0, 0, max(acked) + 1)
            assert set(acked) <= set(got), f"{len(set(acked) - set(got))} acknowledged lost"
        finally:
            j2.stop()
    finally:
        j.kill9()
        subprocess.run(["umount", "-l", str(mnt)], check=False)
