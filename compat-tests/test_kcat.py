"""kcat (librdkafka) round trips: 10,000 keyed messages with headers, plain and with every
compression codec, and `kcat -L` metadata."""

import json
import random
import subprocess

import pytest

from conftest import need

N = 10_000
HEADERS = [("h1", "v1"), ("trace-id", "abc-123")]
KCAT_TIMEOUT_S = 120


def kcat(*args, input_bytes=None, timeout_s=KCAT_TIMEOUT_S) -> subprocess.CompletedProcess:
    exe = need("bin:kcat")
    return subprocess.run(
        [exe, *args],
        input=input_bytes,
        capture_output=True,
        timeout=timeout_s,
    )


def make_lines(n: int, seed: int) -> list[tuple[str, str]]:
    """(key, value) pairs: values of varied length and content, so compression has work."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "jet", "kafka", "raft", "shard", "batch"]
    out = []
    for i in range(n):
        body = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
        noise = "%x" % rng.getrandbits(rng.randint(8, 256))
        out.append((f"key-{i:05d}", f"value-{i} {body} {noise}"))
    return out


def produce(bootstrap: str, topic: str, pairs, tmp_path, codec: str | None = None):
    path = tmp_path / f"in-{topic}.txt"
    path.write_text("".join(f"{k}:{v}\n" for k, v in pairs))
    args = ["-P", "-b", bootstrap, "-t", topic, "-K:", "-X", "acks=all"]
    for hk, hv in HEADERS:
        args += ["-H", f"{hk}={hv}"]
    if codec:
        args += ["-X", f"compression.codec={codec}"]
    args += ["-l", str(path)]
    res = kcat(*args)
    assert res.returncode == 0, f"kcat -P failed ({res.returncode}): {res.stderr.decode()}"
    assert b"failed" not in res.stderr.lower(), res.stderr.decode()


def consume(bootstrap: str, topic: str) -> list[str]:
    res = kcat(
        "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
        "-f", "%p|%o|%k|%h|%s\n",
    )
    assert res.returncode == 0, f"kcat -C failed ({res.returncode}): {res.stderr.decode()}"
    return res.stdout.decode().splitlines()


def expected_lines(pairs) -> list[str]:
    headers = ",".join(f"{k}={v}" for k, v in HEADERS)
    return [f"0|{i}|{k}|{headers}|{v}" for i, (k, v) in enumerate(pairs)]


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kcat_round_trip(jet, topic, tmp_path, codec):
    pairs = make_lines(N, seed=len(codec or ""))
    produce(jet.bootstrap, topic, pairs, tmp_path, codec)
    got = consume(jet.bootstrap, topic)
    want = expected_lines(pairs)
    assert len(got) == N, f"consumed {len(got)} of {N} messages"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"message {i} differs:\n got: {g!r}\nwant: {w!r}"


@pytest.mark.jet_args("--default-partitions", "3")
def test_kcat_metadata(jet, topic):
    # Producing to an unknown topic auto-creates it with --default-partitions partitions.
    res = kcat("-P", "-b", jet.bootstrap, "-t", topic, "-p", "2", input_bytes=b"hello\n")
    assert res.returncode == 0, res.stderr.decode()

    res = kcat("-L", "-b", jet.bootstrap, "-J")
    assert res.returncode == 0, res.stderr.decode()
    meta = json.loads(res.stdout)
    brokers = meta["brokers"]
    assert [b["id"] for b in brokers] == [1], brokers
    assert brokers[0]["name"] == jet.bootstrap, brokers
    topics = {t["topic"]: t for t in meta["topics"]}
    assert topic in topics, list(topics)
    t = topics[topic]
    assert "error" not in t or not t["error"], t
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2], parts
    for p in parts:
        assert p["leader"] == 1, p
        assert [r["id"] for r in p["replicas"]] == [1], p
        assert [r["id"] for r in p["isrs"]] == [1], p

    # The message went to partition 2, and only there.
    res = kcat("-C", "-b", jet.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
               "-f", "%p|%o|%s\n")
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode().splitlines() == ["2|0|hello"]

    # The plain-text listing names the broker and the topic too.
    res = kcat("-L", "-b", jet.bootstrap, "-t", topic)
    assert res.returncode == 0, res.stderr.decode()
    text = res.stdout.decode()
    assert f'topic "{topic}" with 3 partitions' in text, text
    assert "broker 1 at 127.0.0.1" in text, text
