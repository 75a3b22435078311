"""The binary's life: bad flags, an unbindable address, clean stop on SIGTERM, kill -9 and
restart with every acknowledged message intact, and size-based retention."""

import os
import re
import socket
import subprocess
import time

import pytest

from conftest import Jet, free_port, need
from helpers import assert_same, confluent_consume, confluent_produce, make_messages


def run_jet(jet_bin, *args, env_extra=None, timeout_s=20):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JET_")}
    env.update(env_extra or {})
    return subprocess.run(
        [str(jet_bin), *args], capture_output=True, timeout=timeout_s, env=env, text=True
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-flag"],
        ["--listen", "nonsense"],
        ["--shards", "0"],
        ["--fsync", "sometimes"],
        ["--advertise", "no-port"],
        ["--auto-create-topics=maybe"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_flag_is_one_line_and_non_zero(jet_bin, tmp_path, args):
    res = run_jet(jet_bin, *args, "--data-dir", str(tmp_path / "d"))
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{res.stderr}"
    assert lines[0].startswith("jet: "), lines[0]
    assert not (tmp_path / "d").exists(), "a bad flag must not touch the data dir"


def test_bad_env_value_is_rejected(jet_bin, tmp_path):
    res = run_jet(jet_bin, "--data-dir", str(tmp_path / "d"), env_extra={"JET_LISTEN": "nope"})
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "JET_LISTEN" in res.stderr or "--listen" in res.stderr, res.stderr


def test_unbindable_listen_address(jet_bin, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        addr = "127.0.0.1:%d" % taken.getsockname()[1]
        res = run_jet(jet_bin, "--listen", addr, "--data-dir", str(tmp_path / "d"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"jet: cannot listen on {addr}: "), lines[0]


def test_help_lists_every_flag_with_its_env_var(jet_bin):
    res = run_jet(jet_bin, "--help")
    assert res.returncode == 0, res.stderr
    flags = re.findall(r"--([a-z][a-z-]+)", res.stdout)
    envs = re.findall(r"env: (JET_[A-Z_]+)", res.stdout)
    expected = [
        "node-id", "listen", "advertise", "data-dir", "shards", "fsync", "default-partitions",
        "default-replication-factor", "auto-create-topics", "max-request-bytes",
        "max-batch-bytes", "max-connections", "max-in-flight", "max-pending-proposals",
        "retention-check-interval-ms", "group-initial-rebalance-delay-ms", "log-level",
        "rack",
    ]
    for f in expected:
        assert f in flags, f"--{f} missing from --help"
        assert "JET_" + f.upper().replace("-", "_") in envs, f"env var of --{f} missing"


def test_sigterm_stops_cleanly_and_keeps_data(jet, topic):
    sent = confluent_produce(jet.bootstrap, topic, make_messages(1_000))
    started = time.monotonic()
    assert jet.stop() == 0, "jet did not exit 0 on SIGTERM:\n" + jet.log_tail()
    assert time.monotonic() - started < 20, "clean stop took too long"
    jet.start()
    got = confluent_consume(jet.bootstrap, topic, 1_000, offset=0)
    assert_same(got, sent)


def test_kill_9_loses_no_acknowledged_message(jet, topic):
    n = 10_000
    sent = confluent_produce(jet.bootstrap, topic, make_messages(n, prefix="crash"))
    assert [m.offset for m in sent] == list(range(n))
    jet.kill9()
    jet.start()
    got = confluent_consume(jet.bootstrap, topic, n, offset=0)
    assert_same(got, sent, "messages after kill -9")

    # The log goes on where it stopped.
    more = confluent_produce(jet.bootstrap, topic, make_messages(10, prefix="after"))
    assert [m.offset for m in more] == list(range(n, n + 10))

    # And a second crash right after new writes keeps those too.
    jet.kill9()
    jet.start()
    got = confluent_consume(jet.bootstrap, topic, n + 10, offset=0)
    assert_same(got, sent + more, "messages after the second kill -9")


@pytest.mark.jet_args("--retention-check-interval-ms", "500")
def test_retention_bytes_moves_log_start(jet, topic):
    ck = need("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": jet.bootstrap})
    fut = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1,
                  config={"retention.bytes": "10000"})]
    )
    fut[topic].result(timeout=30)

    # ~200 KB in 20 separately flushed batches of 10 x 1 KB messages.
    sent = []
    for b in range(20):
        sent += confluent_produce(
            jet.bootstrap, topic, make_messages(10, prefix=f"r{b}", value_bytes=1000)
        )
    assert [m.offset for m in sent] == list(range(200))

    consumer = ck.Consumer({"bootstrap.servers": jet.bootstrap, "group.id": f"w-{topic}"})
    try:
        tp = ck.TopicPartition(topic, 0)
        # Retention runs every 500 ms, possibly while the batches were still arriving: wait until
        # a pass has seen all of them (about 10 KB left), within a bound.
        deadline = time.monotonic() + 30
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        while (low == 0 or high - low > 20) and time.monotonic() < deadline:
            time.sleep(0.25)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
    finally:
        consumer.close()
    assert high == 200
    assert low > 0, "retention.bytes=10000 never moved the log start offset"
    # About 10 KB are kept: at most the limit plus one batch (10 messages).
    assert high - low <= 20, f"kept {high - low} messages of ~1 KB with retention.bytes=10000"

    got = confluent_consume(
        jet.bootstrap, topic, high - low, offset=ck.OFFSET_BEGINNING,
        **{"auto.offset.reset": "earliest"},
    )
    assert got and got[0].offset == low, f"first offset {got[0].offset if got else None} != {low}"
    assert_same(got, sent[low:], "retained messages")


def broker_addresses(bootstrap: str) -> list[str]:
    admin = need("confluent_kafka.admin")
    md = admin.AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
    assert md.brokers, "no brokers in Metadata"
    return [f"{b.host}:{b.port}" for b in md.brokers.values()]


def test_wildcard_listen_advertises_the_dialled_address(jet_bin, tmp_path):
    j = Jet(jet_bin, tmp_path / "d", tmp_path / "jet.log", listen_host="0.0.0.0")
    j.start()
    try:
        assert broker_addresses(j.bootstrap) == [j.bootstrap]
    finally:
        assert j.stop() == 0


def test_env_vars_configure_the_node(jet_bin, tmp_path):
    ck = need("confluent_kafka")
    port = free_port()
    j = Jet(
        jet_bin, tmp_path / "d", tmp_path / "jet.log",
        env={"JET_DEFAULT_PARTITIONS": "3", "JET_ADVERTISE": f"localhost:{port}",
             "JET_NODE_ID": "7"},
    )
    j.port = port
    j.start()
    try:
        assert broker_addresses(j.bootstrap) == [f"localhost:{port}"]
        producer = ck.Producer({"bootstrap.servers": j.bootstrap})
        producer.produce("env-auto", value=b"x", partition=0)
        assert producer.flush(30) == 0
        from confluent_kafka.admin import AdminClient

        md = AdminClient({"bootstrap.servers": j.bootstrap}).list_topics("env-auto", timeout=30)
        assert sorted(md.brokers) == [7]
        assert sorted(md.topics["env-auto"].partitions) == [0, 1, 2]
        assert {p.leader for p in md.topics["env-auto"].partitions.values()} == {7}
    finally:
        assert j.stop() == 0
