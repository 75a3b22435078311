"""The curl examples of README.md and docs/http.md work as written: every `curl` command of their
shell blocks runs, in order, against a fresh node (with `localhost:8080` pointed at the test
node's HTTP port), exits 0, and answers no error JSON. The lines that start or stop a node
(`cargo run ... &`, `kill %1`) are the test's job and are skipped."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from conftest import REPO, need

FAST_GROUPS = ("--group-initial-rebalance-delay-ms", "0")


def curl_commands(doc: str) -> list[str]:
    text = (REPO / doc).read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        # Join continuation lines, drop trailing comments.
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#[^'\"]*$", "", line).strip()
            if line.startswith("curl "):
                commands.append(line)
    return commands


@pytest.mark.jet_args(*FAST_GROUPS)
@pytest.mark.parametrize("doc", ["README.md", "docs/http.md"])
def test_curl_examples_work_as_written(jet, doc):
    curl = need("bin:curl")
    commands = curl_commands(doc)
    assert len(commands) >= 4, f"{doc}: only {len(commands)} curl examples found"
    for cmd in commands:
        cmd = cmd.replace("localhost:8080", f"127.0.0.1:{jet.http_port}")
        cmd = cmd.replace("curl ", f"{curl} --max-time 30 ", 1)
        res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"{cmd}\nexit {res.returncode}: {res.stderr}"
        out = res.stdout.strip()
        if out.startswith("{"):
            body = json.loads(out)
            # Creating a topic that exists is the one expected refusal (docs may repeat it).
            if body.get("error_code") == 409 and "console/api/topics" in cmd:
                continue
            assert "error_code" not in body, f"{cmd}\n{out}"
