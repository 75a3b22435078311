"""The HTTP listener against the real binary with Python `requests`: health and readiness (and
`jet check`), the REST Proxy v2 topic, produce and read routes in both embedded formats, consumer
instances through their whole life (create, subscribe, records, commit, offsets, seek, delete,
idle removal), and the round trip with a Kafka client both ways.

The cross-checks are what keep the REST layer honest: records produced over HTTP are read back
by confluent-kafka (key, value, headers, offset), records produced by confluent-kafka are read
over HTTP, keyed records land on the partition Kafka's murmur2 partitioner picks, and an
instance's commit is the offset a Kafka consumer in the same group resumes from."""

from __future__ import annotations

import subprocess
import time

import pytest

from conftest import free_port, need
from helpers import Msg, assert_same, confluent_consume, confluent_produce, make_messages
from http_helpers import BINARY, JSON, V2, assert_json_error, b64, poll_records, unb64

FAST_GROUPS = ("--group-initial-rebalance-delay-ms", "0")


def session():
    return need("requests").Session()


def create_topic(s, jet, name: str, partitions: int = 1):
    r = s.post(
        f"{jet.http}/console/api/topics",
        json={"name": name, "partitions": partitions},
        timeout=30,
    )
    assert r.status_code == 201, r.text


def test_health_ready_and_jet_check(jet, jet_bin):
    s = session()
    h = s.get(f"{jet.http}/health", timeout=10)
    assert h.status_code == 200 and h.json()["status"] == "ok", h.text
    r = s.get(f"{jet.http}/ready", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready" and body["reasons"] == []
    # The metadata shard and the four default data shards, each led by this node.
    assert [sh["shard"] for sh in body["shards"]] == [0, 1, 2, 3, 4]
    assert all(sh["has_leader"] for sh in body["shards"])

    addr = f"127.0.0.1:{jet.http_port}"
    ok = subprocess.run([str(jet_bin), "check", "--ready", "--http-listen", addr],
                        capture_output=True, text=True, timeout=20)
    assert ok.returncode == 0, ok.stderr
    assert '"ready"' in ok.stdout
    alive = subprocess.run([str(jet_bin), "check", "--http-listen", addr],
                           capture_output=True, text=True, timeout=20)
    assert alive.returncode == 0, alive.stderr
    nothing = f"127.0.0.1:{free_port()}"
    down = subprocess.run([str(jet_bin), "check", "--ready", "--http-listen", nothing],
                          capture_output=True, text=True, timeout=20)
    assert down.returncode == 1 and down.stderr.startswith("jet: "), down
    off = subprocess.run([str(jet_bin), "check", "--http-listen", "off"],
                         capture_output=True, text=True, timeout=20)
    assert off.returncode == 2, off


def test_topic_routes(jet, topic):
    s = session()
    create_topic(s, jet, topic, partitions=3)
    r = s.get(f"{jet.http}/topics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == V2
    assert topic in r.json()
    d = s.get(f"{jet.http}/topics/{topic}", timeout=10).json()
    assert d["name"] == topic
    assert [p["partition"] for p in d["partitions"]] == [0, 1, 2]
    assert d["partitions"][0]["replicas"] == [{"broker": 1, "leader": True, "in_sync": True}]
    assert "retention.ms" in d["configs"] and "cleanup.policy" in d["configs"]
    parts = s.get(f"{jet.http}/topics/{topic}/partitions", timeout=10).json()
    assert [(p["partition"], p["beginning_offset"], p["end_offset"]) for p in parts] == [
        (0, 0, 0), (1, 0, 0), (2, 0, 0)
    ]
    one = s.get(f"{jet.http}/topics/{topic}/partitions/2", timeout=10).json()
    assert one["partition"] == 2 and one["leader"] == 1


def test_binary_produce_and_simple_read(jet, topic):
    s = session()
    create_topic(s, jet, topic)
    records = [
        {"key": b64(f"k{i}"), "value": b64(f"value {i}"), "headers": [{"name": "seq", "value": b64(str(i))}]}
        for i in range(10)
    ]
    records.append({"value": None})  # a tombstone-style null value
    r = s.post(f"{jet.http}/topics/{topic}/partitions/0", json={"records": records},
               headers={"Content-Type": BINARY}, timeout=30)
    assert r.status_code == 200, r.text
    offsets = r.json()["offsets"]
    assert [(o["partition"], o["offset"], o["error"]) for o in offsets] == [(0, i, None) for i in range(11)]

    got = s.get(f"{jet.http}/topics/{topic}/partitions/0/records", params={"offset": 0, "count": 11},
                headers={"Accept": BINARY}, timeout=30)
    assert got.status_code == 200 and got.headers["Content-Type"] == BINARY, got.text
    rs = got.json()
    assert [r["offset"] for r in rs] == list(range(11))
    assert [unb64(r["key"]) for r in rs[:10]] == [f"k{i}".encode() for i in range(10)]
    assert [unb64(r["value"]) for r in rs[:10]] == [f"value {i}".encode() for i in range(10)]
    assert rs[3]["headers"] == [{"key": "seq", "value": b64("3")}]
    assert rs[10]["value"] is None and rs[10]["key"] is None
    # A window in the middle, and the default start (the beginning).
    mid = s.get(f"{jet.http}/topics/{topic}/partitions/0/records", params={"offset": 4, "count": 3},
                timeout=30).json()
    assert [r["offset"] for r in mid] == [4, 5, 6]
    first = s.get(f"{jet.http}/topics/{topic}/partitions/0/records", params={"count": 1}, timeout=30).json()
    assert [r["offset"] for r in first] == [0]
    # At the end: nothing yet, after waiting the asked-for time.
    t0 = time.monotonic()
    empty = s.get(f"{jet.http}/topics/{topic}/partitions/0/records", params={"offset": 11, "timeout_ms": 300},
                  timeout=30)
    assert empty.status_code == 200 and empty.json() == []
    assert time.monotonic() - t0 >= 0.25


def test_json_produce_and_read(jet, topic):
    s = session()
    create_topic(s, jet, topic)
    values = [{"id": 1, "tags": ["a", "b"]}, [1, 2, 3], "text", 42, None]
    r = s.post(f"{jet.http}/topics/{topic}", json={"records": [{"key": {"k": i}, "value": v} for i, v in enumerate(values)]},
               headers={"Content-Type": JSON}, timeout=30)
    assert r.status_code == 200, r.text
    assert [o["offset"] for o in r.json()["offsets"]] == [0, 1, 2, 3, 4]
    got = s.get(f"{jet.http}/topics/{topic}/partitions/0/records", params={"offset": 0, "count": 5},
                headers={"Accept": JSON}, timeout=30)
    assert got.status_code == 200 and got.headers["Content-Type"] == JSON
    assert [r["value"] for r in got.json()] == values
    assert [r["key"] for r in got.json()] == [{"k": i} for i in range(5)]


def test_rest_and_kafka_clients_read_each_other(jet, topic):
    s = session()
    create_topic(s, jet, topic)
    msgs = make_messages(20, prefix="rest")
    body = {"records": [
        {"key": b64(m.key), "value": b64(m.value), "headers": [{"name": k, "value": b64(v)} for k, v in m.headers]}
        for m in msgs
    ]}
    r = s.post(f"{jet.http}/topics/{topic}", json=body, headers={"Content-Type": BINARY}, timeout=30)
    assert r.status_code == 200, r.text
    want = [Msg(m.key, m.value, m.headers, i) for i, m in enumerate(msgs)]
    assert_same(confluent_consume(jet.bootstrap, topic, 20, offset=0), want, "rest -> kafka")

    kafka_msgs = confluent_produce(jet.bootstrap, topic, make_messages(15, prefix="kafka"))
    got = s.get(f"{jet.http}/topics/{topic}/partitions/0/records", params={"offset": 20, "count": 100},
                headers={"Accept": BINARY}, timeout=30).json()
    assert [(r["offset"], unb64(r["key"]), unb64(r["value"])) for r in got] == [
        (m.offset, m.key, m.value) for m in kafka_msgs
    ]
    assert [tuple((h["key"], unb64(h["value"])) for h in r["headers"]) for r in got] == [
        m.headers for m in kafka_msgs
    ]


def test_keyed_records_land_where_kafka_puts_them(jet, topic):
    ck = need("confluent_kafka")
    s = session()
    create_topic(s, jet, topic, partitions=4)
    keys = [f"user-{i}" for i in range(32)]
    r = s.post(f"{jet.http}/topics/{topic}", json={"records": [{"key": b64(k), "value": b64("x")} for k in keys]},
               headers={"Content-Type": BINARY}, timeout=30)
    assert r.status_code == 200, r.text
    rest_partitions = [o["partition"] for o in r.json()["offsets"]]
    assert len(set(rest_partitions)) > 1, "32 keys over 4 partitions all hashed to one"

    placed = {}
    p = ck.Producer({"bootstrap.servers": jet.bootstrap, "partitioner": "murmur2_random"})
    for k in keys:
        p.produce(topic, key=k.encode(), value=b"y",
                  on_delivery=lambda err, m: placed.__setitem__(m.key().decode(), m.partition()))
    assert p.flush(30) == 0
    assert [placed[k] for k in keys] == rest_partitions


@pytest.mark.jet_args(*FAST_GROUPS)
def test_consumer_instance_lifecycle(jet, topic):
    s = session()
    create_topic(s, jet, topic)
    group = f"g-{topic}"[:200]
    s.post(f"{jet.http}/topics/{topic}", json={"records": [{"value": b64(f"v{i}")} for i in range(10)]},
           headers={"Content-Type": BINARY}, timeout=30).raise_for_status()

    c = s.post(f"{jet.http}/consumers/{group}",
               json={"name": "c1", "format": "binary", "auto.offset.reset": "earliest"},
               headers={"Content-Type": V2}, timeout=30)
    assert c.status_code == 200, c.text
    assert c.json()["instance_id"] == "c1"
    assert c.json()["base_uri"].endswith(f"/consumers/{group}/instances/c1")
    base = f"{jet.http}/consumers/{group}/instances/c1"
    dup = s.post(f"{jet.http}/consumers/{group}", json={"name": "c1"}, headers={"Content-Type": V2}, timeout=30)
    assert_json_error(dup, 409, 40902)

    r = s.post(f"{base}/subscription", json={"topics": [topic]}, headers={"Content-Type": V2}, timeout=30)
    assert r.status_code == 204, r.text
    assert s.get(f"{base}/subscription", timeout=10).json() == {"topics": [topic]}

    got = poll_records(s, base, 10)
    assert [unb64(r["value"]) for r in got] == [f"v{i}".encode() for i in range(10)]
    assert [r["offset"] for r in got] == list(range(10))
    assert s.get(f"{base}/assignments", timeout=10).json() == {"partitions": [{"topic": topic, "partition": 0}]}

    # Commit the last record consumed (offset 6): the group's committed offset becomes 7.
    r = s.post(f"{base}/offsets", json={"offsets": [{"topic": topic, "partition": 0, "offset": 6}]},
               headers={"Content-Type": V2}, timeout=30)
    assert r.status_code == 200, r.text
    off = s.get(f"{base}/offsets", json={"partitions": [{"topic": topic, "partition": 0}]},
                headers={"Content-Type": V2}, timeout=30)
    assert off.status_code == 200, off.text
    assert [(o["topic"], o["partition"], o["offset"]) for o in off.json()["offsets"]] == [(topic, 0, 7)]

    # Seek back to 2, to the beginning, then to the end.
    r = s.post(f"{base}/positions", json={"offsets": [{"topic": topic, "partition": 0, "offset": 2}]},
               headers={"Content-Type": V2}, timeout=30)
    assert r.status_code == 204, r.text
    assert [x["offset"] for x in poll_records(s, base, 8)] == list(range(2, 10))
    r = s.post(f"{base}/positions/beginning", json={"partitions": [{"topic": topic, "partition": 0}]},
               headers={"Content-Type": V2}, timeout=30)
    assert r.status_code == 204, r.text
    assert [x["offset"] for x in poll_records(s, base, 10)] == list(range(10))
    r = s.post(f"{base}/positions/end", json={"partitions": [{"topic": topic, "partition": 0}]},
               headers={"Content-Type": V2}, timeout=30)
    assert r.status_code == 204, r.text
    tail = s.get(f"{base}/records", params={"timeout": 300}, headers={"Accept": BINARY}, timeout=30)
    assert tail.status_code == 200 and tail.json() == []

    # The group is a real Kafka group: its member is visible, and a Kafka consumer in it resumes
    # from the committed offset once the instance is gone.
    groups = s.get(f"{jet.http}/console/api/groups", timeout=30).json()
    g = next(x for x in groups if x["group"] == group)
    assert len(g["members"]) == 1 and g["members"][0]["client_id"] == "jet-http"
    assert s.delete(base, timeout=30).status_code == 204
    assert_json_error(s.get(f"{base}/records", headers={"Accept": BINARY}, timeout=30), 404, 40403)
    resumed = confluent_consume(jet.bootstrap, topic, 3, group=group)
    assert [m.offset for m in resumed] == [7, 8, 9]


@pytest.mark.jet_args(*FAST_GROUPS)
def test_assigned_json_consumer_commits_its_positions(jet, topic):
    s = session()
    create_topic(s, jet, topic)
    s.post(f"{jet.http}/topics/{topic}", json={"records": [{"value": {"n": i}} for i in range(6)]},
           headers={"Content-Type": JSON}, timeout=30).raise_for_status()
    group = f"a-{topic}"[:200]
    c = s.post(f"{jet.http}/consumers/{group}", json={"format": "json", "auto.offset.reset": "earliest"},
               headers={"Content-Type": V2}, timeout=30)
    assert c.status_code == 200, c.text
    base = f"{jet.http}/consumers/{group}/instances/{c.json()['instance_id']}"
    r = s.post(f"{base}/assignments", json={"partitions": [{"topic": topic, "partition": 0}]},
               headers={"Content-Type": V2}, timeout=30)
    assert r.status_code == 204, r.text
    conflict = s.post(f"{base}/subscription", json={"topics": [topic]}, headers={"Content-Type": V2}, timeout=30)
    assert_json_error(conflict, 409, 40901)
    s.post(f"{base}/positions", json={"offsets": [{"topic": topic, "partition": 0, "offset": 3}]},
           headers={"Content-Type": V2}, timeout=30).raise_for_status()
    got = poll_records(s, base, 3, fmt=JSON)
    assert [r["value"] for r in got] == [{"n": 3}, {"n": 4}, {"n": 5}]
    # The binary format was not what this consumer was created with.
    assert_json_error(s.get(f"{base}/records", headers={"Accept": BINARY}, timeout=30), 406, 40601)
    # No body: every position (the next offset, 6) is committed.
    assert s.post(f"{base}/offsets", timeout=30).status_code == 200
    off = s.get(f"{base}/offsets", timeout=30).json()["offsets"]
    assert [(o["partition"], o["offset"]) for o in off] == [(0, 6)]
    assert s.delete(base, timeout=30).status_code == 204


@pytest.mark.jet_args(*FAST_GROUPS, "--http-consumer-idle-timeout-ms", "500")
def test_idle_consumer_instances_are_removed(jet, topic):
    s = session()
    create_topic(s, jet, topic)
    group = f"idle-{topic}"[:200]
    c = s.post(f"{jet.http}/consumers/{group}", json={"name": "sleepy"}, headers={"Content-Type": V2}, timeout=30)
    assert c.status_code == 200, c.text
    base = f"{jet.http}/consumers/{group}/instances/sleepy"
    s.post(f"{base}/subscription", json={"topics": [topic]}, headers={"Content-Type": V2}, timeout=30).raise_for_status()
    # Watched without touching the instance (any request to it would keep it alive): the
    # instance count in /metrics, then the group's members.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.25)
        metrics = s.get(f"{jet.http}/metrics", timeout=30).text
        if "\njet_http_consumer_instances 0\n" not in metrics:
            continue
        groups = s.get(f"{jet.http}/console/api/groups", timeout=30).json()
        g = [x for x in groups if x["group"] == group]
        if not g or not g[0]["members"]:
            break
    else:
        pytest.fail("the idle instance was not removed, or its member is still in the group")
    assert_json_error(s.get(f"{base}/subscription", timeout=30), 404, 40403)


@pytest.mark.jet_args("--http-max-records", "5", "--http-max-body-bytes", "4096", "--http-max-wait-ms", "1000")
def test_limits_are_enforced(jet, topic):
    s = session()
    create_topic(s, jet, topic)
    six = {"records": [{"value": b64("x")} for _ in range(6)]}
    assert_json_error(s.post(f"{jet.http}/topics/{topic}", json=six, headers={"Content-Type": BINARY}, timeout=30), 422)
    big = {"records": [{"value": b64("x" * 5000)}]}
    assert_json_error(s.post(f"{jet.http}/topics/{topic}", json=big, headers={"Content-Type": BINARY}, timeout=30), 413)
    url = f"{jet.http}/topics/{topic}/partitions/0/records"
    assert_json_error(s.get(url, params={"count": 6}, timeout=30), 422)
    assert_json_error(s.get(url, params={"timeout_ms": 1001}, timeout=30), 422)
    five = {"records": [{"value": b64("x")} for _ in range(5)]}
    assert s.post(f"{jet.http}/topics/{topic}", json=five, headers={"Content-Type": BINARY}, timeout=30).status_code == 200
    assert len(s.get(url, params={"count": 5}, timeout=30).json()) == 5
