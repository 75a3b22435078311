"""Bad input for every HTTP route: each case must get its 4xx status with a JSON body in the
proxy's format (`error_code`, `message`), never a 5xx, a hang or a crash; after all of them the
node still answers /health and still serves a good request.

Cases cover what a path, a query string, a header and a body can get wrong: names Kafka refuses,
numbers that are not numbers or are out of range, unknown parameters, unknown topics, partitions
and consumer instances, wrong content types and Accept headers, bodies that are not JSON or not
the JSON the route takes, bodies over the size limit, bytes that are not UTF-8, unknown routes
and methods."""

from __future__ import annotations

import pytest

from conftest import need
from http_helpers import BINARY, JSON, V2, assert_json_error, b64

TOPIC = "bad-input"
GROUP = "bad-input-group"
INSTANCE = f"/consumers/{GROUP}/instances/c"


def cases():
    """(method, path, headers, body, status, error_code or None)."""
    bj = {"Content-Type": BINARY}
    v2 = {"Content-Type": V2}
    ok_records = '{"records":[{"value":"eA=="}]}'
    c = [
        # Unknown routes and methods.
        ("GET", "/nope", {}, None, 404, 404),
        ("DELETE", "/topics", {}, None, 405, 405),
        ("PUT", f"/topics/{TOPIC}", {}, None, 405, 405),
        # Topic routes.
        ("GET", "/topics?x=1", {}, None, 400, 400),
        ("GET", "/topics/no-such-topic", {}, None, 404, 40401),
        ("GET", "/topics/bad%20name", {}, None, 422, 422),
        ("GET", "/topics/%FF%FE", {}, None, 400, 400),
        ("GET", f"/topics/{TOPIC}/partitions/abc", {}, None, 400, 400),
        ("GET", f"/topics/{TOPIC}/partitions/-1", {}, None, 422, 422),
        ("GET", f"/topics/{TOPIC}/partitions/7", {}, None, 404, 40402),
        ("GET", f"/topics/{TOPIC}/partitions/99999999999999", {}, None, 422, 422),
        ("GET", "/topics/no-such-topic/partitions", {}, None, 404, 40401),
        # Produce.
        ("POST", f"/topics/{TOPIC}", {}, ok_records, 415, 415),
        ("POST", f"/topics/{TOPIC}", {"Content-Type": "application/json"}, ok_records, 415, 415),
        ("POST", f"/topics/{TOPIC}", {"Content-Type": "application/vnd.kafka.avro.v2+json"}, ok_records, 415, 415),
        ("POST", f"/topics/{TOPIC}", bj, "not json", 400, 400),
        ("POST", f"/topics/{TOPIC}", bj, "{}", 400, 400),
        ("POST", f"/topics/{TOPIC}", bj, '{"records":[]}', 422, 422),
        ("POST", f"/topics/{TOPIC}", bj, '{"records":[{"value":"***"}]}', 422, 422),
        ("POST", f"/topics/{TOPIC}", bj, '{"records":[{"value":123}]}', 422, 422),
        ("POST", f"/topics/{TOPIC}", bj, '{"records":[{"value":"eA==","partition":"zero"}]}', 422, 422),
        ("POST", f"/topics/{TOPIC}", bj, '{"records":[{"value":"eA==","partition":5}]}', 404, 40402),
        ("POST", f"/topics/{TOPIC}", bj, '{"records":[{"value":"eA==","extra":1}]}', 400, 400),
        ("POST", f"/topics/{TOPIC}", bj, '{"records":[{"value":"eA==","headers":[{"name":"h","value":"%%"}]}]}', 422, 422),
        ("POST", f"/topics/{TOPIC}", {"Content-Type": JSON}, '{"records":[{"value":1}],"value_schema":"{}"}', 422, 422),
        ("POST", "/topics/no-such-topic", bj, ok_records, 404, 40401),
        ("POST", f"/topics/{TOPIC}/partitions/3", bj, ok_records, 404, 40402),
        ("POST", f"/topics/{TOPIC}/partitions/x", bj, ok_records, 400, 400),
        ("POST", f"/topics/{TOPIC}/partitions/0", bj, '{"records":[{"value":"eA==","partition":1}]}', 422, 422),
        ("POST", f"/topics/{TOPIC}", bj, "\xff\xfe", 400, 400),
        # Simple read.
        ("GET", f"/topics/{TOPIC}/partitions/0/records?offset=abc", {}, None, 400, 400),
        ("GET", f"/topics/{TOPIC}/partitions/0/records?offset=-5", {}, None, 422, 422),
        ("GET", f"/topics/{TOPIC}/partitions/0/records?offset=1000000", {}, None, 422, 422),
        ("GET", f"/topics/{TOPIC}/partitions/0/records?count=0", {}, None, 422, 422),
        ("GET", f"/topics/{TOPIC}/partitions/0/records?count=99999999999", {}, None, 422, 422),
        ("GET", f"/topics/{TOPIC}/partitions/0/records?timeout_ms=99999999", {}, None, 422, 422),
        ("GET", f"/topics/{TOPIC}/partitions/0/records?bogus=1", {}, None, 400, 400),
        ("GET", f"/topics/{TOPIC}/partitions/0/records?offset=1&offset=2", {}, None, 400, 400),
        ("GET", f"/topics/{TOPIC}/partitions/0/records?offset=%zz", {}, None, 400, 400),
        ("GET", f"/topics/{TOPIC}/partitions/0/records", {"Accept": "text/html"}, None, 406, 40601),
        ("GET", f"/topics/{TOPIC}/partitions/9/records", {}, None, 404, 40402),
        ("GET", "/topics/no-such-topic/partitions/0/records", {}, None, 404, 40401),
        # Consumer instances.
        ("POST", f"/consumers/{GROUP}", v2, '{"format":"avro"}', 422, 42204),
        ("POST", f"/consumers/{GROUP}", v2, '{"auto.offset.reset":"sometimes"}', 422, 42204),
        ("POST", f"/consumers/{GROUP}", v2, '{"auto.commit.enable":"maybe"}', 422, 42204),
        ("POST", f"/consumers/{GROUP}", v2, '{"no.such.setting":"1"}', 422, 42204),
        ("POST", f"/consumers/{GROUP}", v2, '{"name":"a/b"}', 422, 422),
        ("POST", f"/consumers/{GROUP}", v2, '{"name":5}', 400, 400),
        ("POST", f"/consumers/{GROUP}", {"Content-Type": "text/plain"}, '{"name":"x"}', 415, 415),
        ("POST", f"/consumers/{GROUP}", v2, "[", 400, 400),
        ("POST", f"/consumers/{GROUP}", v2, '{"name":"c"}', 409, 40902),
        ("GET", "/consumers/nope/instances/nope/records", {}, None, 404, 40403),
        ("DELETE", "/consumers/nope/instances/nope", {}, None, 404, 40403),
        ("POST", "/consumers/nope/instances/nope/subscription", v2, '{"topics":["t"]}', 404, 40403),
        ("GET", f"{INSTANCE}/records", {"Accept": BINARY}, None, 409, 40901),
        ("POST", f"{INSTANCE}/subscription", v2, "", 400, 400),
        ("POST", f"{INSTANCE}/subscription", v2, '{"topics":[]}', 422, 422),
        ("POST", f"{INSTANCE}/subscription", v2, '{"topics":["bad name"]}', 422, 422),
        ("POST", f"{INSTANCE}/subscription", v2, '{"topic_pattern":"a.*"}', 422, 422),
        ("POST", f"{INSTANCE}/subscription", v2, '{"topics":"t"}', 400, 400),
        ("POST", f"{INSTANCE}/assignments", v2, '{"partitions":[{"topic":"no-such-topic","partition":0}]}', 404, 40401),
        ("POST", f"{INSTANCE}/assignments", v2, f'{{"partitions":[{{"topic":"{TOPIC}","partition":4}}]}}', 404, 40402),
        ("POST", f"{INSTANCE}/assignments", v2, '{"partitions":[{"topic":"t"}]}', 400, 400),
        ("POST", f"{INSTANCE}/positions", v2, f'{{"offsets":[{{"topic":"{TOPIC}","partition":0,"offset":-1}}]}}', 422, 422),
        ("POST", f"{INSTANCE}/positions", v2, f'{{"offsets":[{{"topic":"{TOPIC}","partition":0,"offset":1}}]}}', 409, 40901),
        ("POST", f"{INSTANCE}/positions/beginning", v2, '{"partitions":[]', 400, 400),
        ("POST", f"{INSTANCE}/positions/end", v2, '{"partitions":[{"topic":"no-such-topic","partition":0}]}', 404, 40401),
        ("POST", f"{INSTANCE}/offsets", v2, f'{{"offsets":[{{"topic":"{TOPIC}","partition":0,"offset":-3}}]}}', 422, 422),
        ("POST", f"{INSTANCE}/offsets", v2, '{"offsets":"x"}', 400, 400),
        ("GET", f"{INSTANCE}/offsets", v2, '{"partitions":[{"topic":"no-such-topic","partition":0}]}', 404, 40401),
        ("GET", f"{INSTANCE}/records?timeout=-1", {}, None, 422, 422),
        ("GET", f"{INSTANCE}/records?max_bytes=0", {}, None, 422, 422),
        # Console.
        ("POST", "/console/api/topics", {"Content-Type": "application/json"}, '{"name":"bad name"}', 422, 422),
        ("POST", "/console/api/topics", {"Content-Type": "application/json"}, f'{{"name":"{TOPIC}"}}', 409, 409),
        ("POST", "/console/api/topics", {"Content-Type": "application/json"}, '{"name":"p0","partitions":0}', 422, 422),
        ("POST", "/console/api/topics", {"Content-Type": "application/json"}, '{"name":"cfg","configs":{"retention.ms":"soon"}}', 422, 422),
        ("POST", "/console/api/topics", {"Content-Type": "application/json"}, '{"nme":"x"}', 400, 400),
        ("POST", "/console/api/topics", {}, '{"name":"x"}', 415, 415),
        ("GET", "/console/api/topics/no-such-topic/shards", {}, None, 404, 40401),
    ]
    return c


def test_every_route_answers_bad_input_with_4xx_json(jet):
    requests = need("requests")
    s = requests.Session()
    r = s.post(f"{jet.http}/console/api/topics", json={"name": TOPIC, "partitions": 2}, timeout=30)
    assert r.status_code == 201, r.text
    r = s.post(f"{jet.http}/consumers/{GROUP}", json={"name": "c"}, headers={"Content-Type": V2}, timeout=30)
    assert r.status_code == 200, r.text

    failures = []
    for method, path, headers, body, status, code in cases():
        data = body.encode("latin-1") if body is not None else None
        resp = s.request(method, jet.http + path, headers=headers, data=data, timeout=30)
        try:
            assert_json_error(resp, status, code)
        except AssertionError as e:
            failures.append(f"{method} {path} {body!r}: {e}")
    assert not failures, f"{len(failures)} of {len(cases())} cases failed:\n" + "\n".join(failures)

    # The node is still serving, and a good request still works.
    assert s.get(f"{jet.http}/health", timeout=10).status_code == 200
    r = s.post(f"{jet.http}/topics/{TOPIC}/partitions/0", json={"records": [{"value": b64("ok")}]},
               headers={"Content-Type": BINARY}, timeout=30)
    assert r.status_code == 200 and r.json()["offsets"][0]["offset"] == 0, r.text


@pytest.mark.jet_args("--http-max-body-bytes", "2048")
def test_oversize_body_is_413_json(jet):
    requests = need("requests")
    r = requests.post(f"{jet.http}/topics/any", data=b"x" * 4096, headers={"Content-Type": BINARY}, timeout=30)
    assert_json_error(r, 413, 413)
    assert requests.get(f"{jet.http}/health", timeout=10).status_code == 200
