"""The web console in headless Chromium (Debian's `chromium`) against a running node with data.

Each page is loaded with `--dump-dom` and a virtual-time budget, so its script runs and its
fetches finish before the DOM is printed; the script marks a rendered view with
`data-loaded="<view>"`, and the test then checks what the page shows: the node and its shards
on the overview, the topic and its record count on the topics page, partitions with offsets,
configs and decoded messages on the topic page, and the group with its lag on the groups page.
A screenshot of the topic page is taken too, and must be a real PNG. A second test drives the
forms through the DevTools protocol (`cdp.py`): it creates a topic, publishes a message and
browses to it, and the broker is then asked over REST whether both happened.

Without chromium the test fails under CI=true and skips loudly elsewhere (conftest.need)."""

from __future__ import annotations

import html
import re
import subprocess

from conftest import need
from http_helpers import BINARY, b64

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--disable-extensions", "--virtual-time-budget=10000",
]


def dump_dom(chromium: str, url: str, tmp_path) -> str:
    res = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def loaded(dom: str, view: str) -> str:
    m = re.search(r'<main id="main" data-loaded="([a-z]+)"', dom)
    assert m, f"the page never finished rendering:\n{dom[-3000:]}"
    assert m.group(1) == view, f"rendered {m.group(1)!r}, not {view!r}:\n{dom[-3000:]}"
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def test_console_pages_show_the_node(jet, tmp_path):
    chromium = need("bin:chromium")
    requests = need("requests")
    ck = need("confluent_kafka")
    s = requests.Session()
    topic = "console-orders"
    r = s.post(f"{jet.http}/console/api/topics",
               json={"name": topic, "partitions": 2, "configs": {"retention.ms": "3600000"}}, timeout=30)
    assert r.status_code == 201, r.text
    records = [{"key": b64(f"order-{i}"), "value": b64(f"hello console {i}"), "partition": 0} for i in range(7)]
    r = s.post(f"{jet.http}/topics/{topic}", json={"records": records}, headers={"Content-Type": BINARY}, timeout=30)
    assert r.status_code == 200, r.text
    group = "console-readers"
    c = ck.Consumer({"bootstrap.servers": jet.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[ck.TopicPartition(topic, 0, 5)], asynchronous=False)
    c.close()

    text = loaded(dump_dom(chromium, f"{jet.http}/", tmp_path), "overview")
    assert "Nodes" in text and "Shards" in text
    assert f"127.0.0.1:{jet.port}" in text, "the node's Kafka address"
    assert "(this node)" in text and "alive" in text
    assert re.search(r"\bmetadata\b", text) and text.count("data") >= 4

    text = loaded(dump_dom(chromium, f"{jet.http}/#/topics", tmp_path), "topics")
    row = re.search(rf"{topic}\s+2\s+7", text)
    assert row, f"topic row (name, 2 partitions, 7 records) missing:\n{text}"
    assert "Create a topic" in text

    dom = dump_dom(chromium, f"{jet.http}/#/topics/{topic}", tmp_path)
    text = loaded(dom, "topic")
    row = re.search(r"\b0\s+1\s+1\s+\d+\s+0\s+7\s+7\s+(\d+) B\b", text)
    assert row, f"partition 0 row (with its size) missing:\n{text}"
    # One batch of 7 records: its 61-byte header and the records' keys and values.
    values = sum(len(f"hello console {i}") + len(f"order-{i}") for i in range(7))
    assert 61 + values < int(row.group(1)) < 61 + values + 7 * 40, row.group(0)
    assert "retention.ms" in text and "3600000" in text
    for i in range(7):
        assert f"hello console {i}" in text and f"order-{i}" in text
    assert "Publish a message" in text

    text = loaded(dump_dom(chromium, f"{jet.http}/#/groups", tmp_path), "groups")
    assert group in text and "total lag 2" in text
    assert re.search(rf"{topic}\s+0\s+5\s+7\s+2", text), f"lag row missing:\n{text}"

    shot = tmp_path / "console.png"
    res = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900",
         f"--screenshot={shot}", f"{jet.http}/#/topics/{topic}"],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, "not a real screenshot"


def test_console_creates_a_topic_and_publishes_and_browses(jet, tmp_path):
    """Through the console's forms in a real browser: create a topic, publish to it, and see the
    message in the topic page's message list; the broker has both (checked over REST)."""
    chromium = need("bin:chromium")
    requests = need("requests")
    from cdp import Browser

    browser = Browser(chromium, str(tmp_path / "cdp-profile"), f"{jet.http}/#/topics")
    try:
        browser.wait_for("document.getElementById('main').dataset.loaded === 'topics'")
        browser.evaluate("""(() => {
            const f = document.getElementById('create');
            f.elements.name.value = 'made-in-browser';
            f.elements.partitions.value = '2';
            f.elements.configs.value = 'retention.ms=7200000';
            f.requestSubmit();
        })()""")
        msg = browser.wait_for("document.getElementById('message') && document.getElementById('message').textContent")
        assert msg == "created topic made-in-browser"
        assert "made-in-browser" in browser.evaluate("document.getElementById('main').innerText")

        browser.evaluate("location.hash = '#/topics/made-in-browser'")
        browser.wait_for("document.getElementById('main').dataset.loaded === 'topic'")
        browser.evaluate("""(() => {
            const f = document.getElementById('publish');
            f.elements.key.value = 'greeting';
            f.elements.value.value = 'hello from the browser';
            f.elements.partition.value = '1';
            f.requestSubmit();
        })()""")
        result = browser.wait_for(
            "(document.getElementById('publish-result').textContent || '').startsWith('published') && "
            "document.getElementById('publish-result').textContent")
        assert result == "published to partition 1 at offset 0"
        browser.evaluate("""(() => {
            const f = document.getElementById('browse');
            f.elements.partition.value = '1';
            f.elements.offset.value = '0';
            f.requestSubmit();
        })()""")
        listed = browser.wait_for(
            "document.getElementById('messages').innerText.includes('hello from the browser') && "
            "document.getElementById('messages').innerText")
        assert "greeting" in listed
    finally:
        browser.close()

    s = requests.Session()
    d = s.get(f"{jet.http}/topics/made-in-browser", timeout=30).json()
    assert len(d["partitions"]) == 2 and d["configs"]["retention.ms"] == "7200000"
    rs = s.get(f"{jet.http}/topics/made-in-browser/partitions/1/records", params={"offset": 0},
               headers={"Accept": BINARY}, timeout=30).json()
    assert [(r["offset"], r["key"], r["value"]) for r in rs] == [(0, b64("greeting"), b64("hello from the browser"))]
