"""The 3-node cluster of deploy/docker-compose.yml under Docker, with real faults.

One compose project (a unique name; `down -v` afterwards even on failure) is shared by the
tests of this module. The broker image is built once per run from the `jet` binary under test
(deploy/build-image.sh with JET_BIN), the client image from the host's kcat; neither needs a
registry.

- Both views: `kcat -L` from the host lists the three brokers on the published ports; kcat in a
  container on the compose network lists their internal names; a message produced from the host
  is consumed from the container.
- Faults, each during an idempotent acks=all producer and a group consumer committing its
  offsets (compose_cluster.Workload): `docker kill` of a partition leader and `docker start`;
  `docker network disconnect` of a node for 20 s; `docker compose restart` of each node in turn.
  After each: no acknowledged message lost, no duplicate in the group's output, every partition
  back to 3 in-sync replicas; the recovery time is printed.

Docker missing: the tests fail under CI=true, and skip loudly elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

import compose_cluster as cc
from conftest import _missing, jet_binary, need

PARTITIONS = 6
PARTITION_SECONDS = 20
HEALTHY_TIMEOUT_S = 120
ISR_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def cluster():
    why = cc.docker_usable()
    if why:
        _missing(why, "install the Docker engine (apt-get install docker.io)")
    compose = cc.compose_command()
    if compose is None:
        _missing("neither 'docker compose' nor 'docker-compose' works", "apt-get install docker-compose")
    need("bin:kcat")
    need("confluent_kafka")
    tag = uuid.uuid4().hex[:8]
    image, client_image = f"jet:ct-{tag}", f"jet-kcat:ct-{tag}"
    cc.run(
        [str(cc.REPO / "deploy" / "build-image.sh"), image],
        timeout=300,
        env={**os.environ, "JET_BIN": str(jet_binary())},
    )
    cc.build_client_image(client_image)
    c = cc.Cluster(compose, image, client_image)
    size = cc.image_size(image)
    print(f"\nimage {image}: {size / 1e6:.1f} MB; client image {cc.image_size(client_image) / 1e6:.1f} MB")
    try:
        t0 = time.monotonic()
        c.up()
        c.wait_healthy(HEALTHY_TIMEOUT_S)
        print(f"cluster {c.project} healthy after {time.monotonic() - t0:.1f}s, ports {c.ports}")
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.down()
        cc.run(["docker", "rmi", "-f", image, client_image], timeout=120, check=False)


def test_host_and_container_views(cluster):
    with cluster.logs_on_failure():
        check_views(cluster)


def check_views(cluster):
    host = cc.run(["kcat", "-L", "-m", "10", "-b", f"127.0.0.1:{cluster.ports[0]}"], timeout=30).stdout
    assert cc.kcat_brokers(host) == [
        (n, f"127.0.0.1:{p}") for n, p in zip(cc.NODES, cluster.ports)
    ], host
    inside = cluster.client("-L", "-m", "10", "-b", "jet-1:9092")
    assert cc.kcat_brokers(inside) == [(n, f"jet-{n}:9092") for n in cc.NODES], inside
    # Produce from the host (any broker), consume from a container (any broker).
    topic = f"views-{uuid.uuid4().hex[:6]}"
    lines = [f"hello-{i}" for i in range(10)]
    subprocess.run(
        ["kcat", "-P", "-b", cluster.bootstrap, "-t", topic, "-X", "acks=all"],
        input="\n".join(lines) + "\n", text=True, timeout=60, check=True,
    )
    got = cluster.client("-C", "-b", "jet-2:9092", "-t", topic, "-o", "beginning",
                         "-c", str(len(lines)), "-e", "-q", timeout=60)
    assert got.split() == lines


def leader_of(adm, topic: str, partition: int = 0) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = cc.partition_states(adm)
        leader = states.get((topic, partition), (-1, []))[0]
        if leader > 0:
            return leader
        time.sleep(0.5)
    raise AssertionError(f"{topic}/{partition} has no leader")


def run_fault(cluster, name: str, inject) -> None:
    ck = need("confluent_kafka")
    ck_admin = need("confluent_kafka.admin")
    adm = cc.admin(ck_admin, cluster.bootstrap)
    topic = f"{name}-{uuid.uuid4().hex[:6]}"
    fs = adm.create_topics([ck_admin.NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3)])
    fs[topic].result(timeout=30)
    cc.wait_isr_full(adm, ISR_TIMEOUT_S)
    w = cc.Workload(ck, cluster.bootstrap, topic, f"g-{topic}")
    w.start()
    with cluster.logs_on_failure():
        try:
            w.wait_flowing(60, partitions=PARTITIONS)
            time.sleep(3)
            fault_end = inject(adm, topic, w)
            cluster.wait_healthy(HEALTHY_TIMEOUT_S)
            cc.wait_isr_full(adm, ISR_TIMEOUT_S)
            w.wait_flowing(60, since=fault_end, partitions=PARTITIONS)
            recovery = time.monotonic() - fault_end
            time.sleep(2)
            r = w.finish()
        finally:
            w.abort()
    print(f"{name}: recovered (all nodes healthy, ISR 3 on every partition, every partition "
          f"acknowledging produce) {recovery:.1f}s after the fault ended; {r}")
    assert r["lost_count"] == 0, f"acknowledged messages lost: {r}"
    assert r["duplicates"] == 0, f"duplicates in the group's output: {r}"
    assert not r["errors"], r


def test_kill_the_leader_then_start_it(cluster):
    def inject(adm, topic, w):
        node = leader_of(adm, topic)
        led = sorted(p for (t, p), (leader, _) in cc.partition_states(adm).items()
                     if t == topic and leader == node)
        print(f"kill: jet-{node} leads partitions {led} of {topic}")
        cc.run(["docker", "kill", cluster.container(node)], timeout=60)
        killed = time.monotonic()  # once `docker kill` returned: the process is gone
        resumed = w.wait_flowing(90, since=killed, partitions=PARTITIONS)
        print(f"kill: jet-{node} killed; every partition acknowledged produce again after "
              f"{resumed - killed:.1f}s")
        cc.run(["docker", "start", cluster.container(node)], timeout=60)
        return time.monotonic()

    run_fault(cluster, "kill", inject)


def test_network_partition_of_one_node(cluster):
    def inject(adm, topic, w):
        node = leader_of(adm, topic)
        container = cluster.container(node)
        ip = cluster.ip(node)
        cc.run(["docker", "network", "disconnect", cluster.network, container], timeout=60)
        cut = time.monotonic()
        try:
            resumed = w.wait_flowing(PARTITION_SECONDS + 40, since=cut, partitions=PARTITIONS)
            print(f"partition: jet-{node} cut off; every partition acknowledged produce again "
                  f"after {resumed - cut:.1f}s")
            time.sleep(max(0.0, PARTITION_SECONDS - (time.monotonic() - cut)))
        finally:
            cc.run(["docker", "network", "connect", "--alias", f"jet-{node}", cluster.network,
                    container], timeout=60)
        back = time.monotonic()
        now_ip = cluster.ip(node)
        # Jet resolves --peer-advertise once at start: a node whose address changed must be
        # restarted to publish the new one (docs/operations.md, "Compose").
        if now_ip != ip:
            print(f"partition: jet-{node} came back at {now_ip}, not {ip}; restarting it")
            cc.run(["docker", "restart", "-t", "30", container], timeout=90)
        return back

    run_fault(cluster, "partition", inject)


def test_rolling_restart(cluster):
    def inject(adm, topic, w):
        for node in cc.NODES:
            t0 = time.monotonic()
            cluster.dc("restart", "-t", "30", f"jet-{node}", timeout=120)
            cluster.wait_healthy(HEALTHY_TIMEOUT_S)
            cc.wait_isr_full(adm, ISR_TIMEOUT_S)
            print(f"rolling: jet-{node} restarted, healthy and ISR 3 after {time.monotonic() - t0:.1f}s")
        return time.monotonic()

    run_fault(cluster, "rolling", inject)
