"""The Helm chart deploy/helm/jet renders, offline, into objects a Kubernetes API server accepts
and that form a working Jet cluster.

Rendering uses Helm's own template engine: `helm-python-sdk` bundles Helm's Go SDK (v4) as a
shared library, so no helm binary and no cluster are needed. Every object is then checked twice:
against the Kubernetes JSON schemas (`kubernetes-validate`, strict: no unknown fields) of the
oldest Kubernetes the chart supports and of the newest the package knows, and by the checks
below, which tie the objects together: the StatefulSet's flags (--bootstrap-expect = replicas,
--seeds naming every pod's stable DNS name, listen and advertise ports), probes, the claim
template, the PodDisruptionBudget and Services selecting the pods, and ports that agree between
flags, container ports and Services. Every flag the chart passes must be one that
broker/src/config.rs defines.

Both packages come from compat-tests/requirements-k8s.txt; a missing one fails the tests under
CI=true and skips them loudly elsewhere.
"""

from __future__ import annotations

import copy
import re

import pytest

from conftest import REPO, _missing

CHART = REPO / "deploy" / "helm" / "jet"
RELEASE = "kafka"
NAMESPACE = "streams"
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest with schemas.
MIN_KUBE = "1.25.0"

API_VERSIONS = {
    "StatefulSet": "apps/v1",
    "Service": "v1",
    "PodDisruptionBudget": "policy/v1",
    "ServiceAccount": "v1",
}
# Jet's shutdown: leadership hand-off (5 s), requests finish (10 s), log flush (30 s).
MIN_GRACE_S = 45
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PAIR_FLAGS = {"--listener"}  # NAME=HOST:PORT flags of named listeners (another branch)


def _install_hint() -> str:
    return "python3 -m pip install -r compat-tests/requirements-k8s.txt"


def _import(name: str):
    try:
        return __import__(name)
    except (ImportError, OSError) as e:  # OSError: the bundled native library does not load
        _missing(f"the Python package for '{name}' is not installed ({e})", _install_hint())


@pytest.fixture(scope="module")
def helm():
    return _import("helm_python")


@pytest.fixture(scope="module")
def kv():
    _import("kubernetes_validate")
    import kubernetes_validate

    return kubernetes_validate


@pytest.fixture(scope="module")
def yaml():
    return _import("yaml")


def render(helm, yaml, values: dict | None = None, name: str = RELEASE, namespace: str = NAMESPACE):
    """Renders the chart as `helm template` does; returns (objects, notes)."""
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    objects, notes = [], ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                doc["__source__"] = path
                objects.append(doc)
    return objects, notes


def jet_flags() -> set[str]:
    """Every long flag of `jet`, read from broker/src/config.rs (the Args struct's fields)."""
    text = (REPO / "broker" / "src" / "config.rs").read_text()
    body = text.split("pub struct Args {", 1)[1].split("\n}\n", 1)[0]
    # Up to the attribute's closing `)]` (a value name such as `[NAME=]HOST:PORT` holds `]`).
    fields = re.findall(r"#\[arg\(\s*long.*?\)\]\s*pub (\w+):", body, re.S)
    assert len(fields) >= 30, f"found only {len(fields)} flags in config.rs"
    return {"--" + f.replace("_", "-") for f in fields}


def parse_args(args: list[str]) -> dict[str, list[str]]:
    """`--flag value` and `--flag=value` pairs, in order; a flag may repeat."""
    flags: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        a = args[i]
        assert a.startswith("--"), f"stray argument {a!r} in {args}"
        if "=" in a:
            flag, value = a.split("=", 1)
            i += 1
        else:
            flag, value = a, args[i + 1]
            assert not value.startswith("--"), f"{flag} has no value in {args}"
            i += 2
        flags.setdefault(flag, []).append(value)
    return flags


def one(flags: dict[str, list[str]], flag: str) -> str:
    values = flags.get(flag)
    assert values and len(values) == 1, f"{flag}: expected one value, got {values}"
    return values[0]


def host_port(s: str) -> tuple[str, int]:
    host, port = s.rsplit(":", 1)
    return host, int(port)


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def subset(small: dict, big: dict) -> bool:
    return all(big.get(k) == v for k, v in small.items())


def container_ports(container) -> dict[str, tuple[int, str]]:
    return {p["name"]: (p["containerPort"], p.get("protocol", "TCP")) for p in container["ports"]}


def check_objects(objects, kv, values: dict, release: str = RELEASE, namespace: str = NAMESPACE):
    """The checks every rendering must pass, whatever the values."""
    replicas = int(values.get("replicas", 3))
    clustered = replicas > 1
    external = values.get("external", {}).get("enabled", False)
    persistence = values.get("persistence", {}).get("enabled", True)

    # --- every object: kind, apiVersion, metadata, schema -------------------------------------
    names = set()
    for o in objects:
        src = o.pop("__source__")
        assert o.get("kind") in API_VERSIONS, f"{src}: unexpected kind {o.get('kind')}"
        assert o.get("apiVersion") == API_VERSIONS[o["kind"]], (
            f"{src}: apiVersion {o.get('apiVersion')}"
        )
        meta = o.get("metadata") or {}
        assert DNS_LABEL.match(meta.get("name", "")) and len(meta["name"]) <= 63, (
            f"{src}: name {meta.get('name')!r} is not a DNS label"
        )
        assert meta.get("namespace") == namespace, f"{src}: namespace {meta.get('namespace')}"
        assert meta["labels"]["app.kubernetes.io/instance"] == release
        key = (o["kind"], meta["name"])
        assert key not in names, f"{src}: two objects {key}"
        names.add(key)
        for version in (MIN_KUBE, kv.latest_version()):
            try:
                kv.validate(o, version, strict=True)
            except kv.ValidationError as e:
                pytest.fail(
                    f"{src}: {o['kind']} {meta['name']} fails the Kubernetes {version} schema at "
                    f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}",
                    pytrace=False,
                )

    # --- the StatefulSet ------------------------------------------------------------------------
    (sts,) = by_kind(objects, "StatefulSet")
    name = sts["metadata"]["name"]
    assert len(name) <= 52, f"StatefulSet name {name} leaves no room for revision hashes"
    spec = sts["spec"]
    assert spec["replicas"] == replicas
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    assert sts["metadata"]["annotations"]["jet/bootstrap-expect"] == str(replicas)
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"] and subset(spec["selector"]["matchLabels"], pod_labels)
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= MIN_GRACE_S
    assert pod["enableServiceLinks"] is False, "service links would add *_PORT variables"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "command" not in c, "the image's entrypoint is jet; the chart passes args"
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    ports = container_ports(c)
    env = {e["name"]: e for e in c["env"]}

    flags = parse_args(c["args"])
    known = jet_flags()
    for flag in flags:
        assert flag in known or flag in PAIR_FLAGS, f"jet has no flag {flag}"
    # $(VAR) references must name variables of the container, or Kubernetes leaves them as is.
    for arg in c["args"]:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in env, f"{arg} refers to $({var}), which the container does not define"
    for var, path in [("POD_NAME", "metadata.name"), ("POD_IP", "status.podIP")]:
        assert env[var]["valueFrom"]["fieldRef"]["fieldPath"] == path

    headless_name = spec["serviceName"]
    domain = f"{headless_name}.{namespace}.svc.cluster.local"
    # Kafka: listen on every interface, advertise the pod's stable name.
    assert one(flags, "--listen") == f"0.0.0.0:{ports['kafka'][0]}"
    advertise = [a for a in flags["--advertise"] if "=" not in a]
    assert advertise == [f"$(POD_NAME).{domain}:{ports['kafka'][0]}"]
    assert one(flags, "--http-listen") == f"0.0.0.0:{ports['http'][0]}"
    assert ports["kafka"][1] == ports["http"][1] == "TCP"
    assert "--node-id" not in flags, "one pod template cannot give each pod its own --node-id"

    if clustered:
        assert one(flags, "--bootstrap-expect") == str(replicas)
        gossip_port, gossip_proto = ports["gossip"]
        assert gossip_proto == "UDP"
        seeds = one(flags, "--seeds").split(",")
        assert sorted(seeds) == sorted(
            f"{name}-{i}.{domain}:{gossip_port}" for i in range(replicas)
        ), f"--seeds must name every pod's gossip address: {seeds}"
        peer_port, peer_proto = ports["peer"]
        assert peer_proto == "TCP"
        assert one(flags, "--peer-listen") == f"0.0.0.0:{peer_port}"
        peer_host, peer_adv_port = host_port(one(flags, "--peer-advertise"))
        assert peer_adv_port == peer_port and "$(POD_" in peer_host
        if gossip_port != peer_port:
            assert one(flags, "--gossip-listen") == f"0.0.0.0:{gossip_port}"
        else:
            assert "--gossip-listen" not in flags
        cluster_id = one(flags, "--cluster-id")
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cluster_id)
        assert 1 <= int(one(flags, "--replication-factor")) <= 7
    else:
        for flag in ("--seeds", "--bootstrap-expect", "--peer-listen", "--peer-advertise"):
            assert flag not in flags, f"a single node must not get {flag}"
        assert "peer" not in ports and "gossip" not in ports

    # Probes: readiness on /ready, liveness and start-up on /health, all on the HTTP port.
    for probe, path in [("readinessProbe", "/ready"), ("livenessProbe", "/health"),
                        ("startupProbe", "/health")]:
        get = c[probe]["httpGet"]
        assert get["path"] == path, f"{probe} probes {get['path']}"
        assert get["port"] in ("http", ports["http"][0]), f"{probe} probes port {get['port']}"

    # Data: /data is --data-dir, on a claim per pod (or an emptyDir when persistence is off).
    assert one(flags, "--data-dir") == "/data"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/data"] == "data"
    pod_volumes = {v["name"]: v for v in pod.get("volumes", [])}
    if persistence:
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data" and "data" not in pod_volumes
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["spec"]["resources"]["requests"]["storage"]
        assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    else:
        assert "volumeClaimTemplates" not in spec and "emptyDir" in pod_volumes["data"]

    # --- Services select the pods, and their ports are the pods' ---------------------------------
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    for svc in services.values():
        sel = svc["spec"]["selector"]
        assert subset({k: v for k, v in sel.items() if not k.startswith("statefulset.")},
                      pod_labels), f"Service {svc['metadata']['name']} selects no Jet pod"
        for p in svc["spec"]["ports"]:
            target = p["targetPort"]
            assert target in ports, f"{svc['metadata']['name']}: no container port {target}"
            assert ports[target][1] == p.get("protocol", "TCP"), f"{svc['metadata']['name']}: {p}"
    headless = services[headless_name]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    hports = {p["name"]: (p["port"], p["protocol"]) for p in headless["spec"]["ports"]}
    assert hports["kafka"] == ports["kafka"]
    if clustered:
        assert hports["peer"] == ports["peer"] and hports["gossip"] == ports["gossip"]
    client = services[name]
    assert client["spec"].get("clusterIP") != "None"
    assert not client["spec"].get("publishNotReadyAddresses"), "clients must reach ready pods only"
    cports = {p["targetPort"] for p in client["spec"]["ports"]}
    assert "kafka" in cports and not cports & {"peer", "gossip"}

    # --- PodDisruptionBudget ----------------------------------------------------------------------
    (pdb,) = by_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert subset(pdb["spec"]["selector"]["matchLabels"], pod_labels)

    # --- the optional per-pod external listener ---------------------------------------------------
    if external:
        ext = values["external"]
        lname = ext.get("listenerName", "external")
        assert one(flags, "--listener") == f"{lname}=0.0.0.0:{ports['external'][0]}"
        named = [a for a in flags["--advertise"] if a.startswith(f"{lname}=")]
        assert len(named) == 1 and "$(" in named[0], f"per-pod external advertise: {named}"
        per_pod = [s for s in services.values() if s["metadata"]["name"].endswith("-external")]
        if ext.get("service", {}).get("enabled", True):
            assert sorted(s["spec"]["selector"]["statefulset.kubernetes.io/pod-name"]
                          for s in per_pod) == sorted(f"{name}-{i}" for i in range(replicas))
            for s in per_pod:
                assert s["spec"]["ports"][0]["port"] == int(named[0].rsplit(":", 1)[1])
        else:
            assert not per_pod
    else:
        assert "--listener" not in flags and "external" not in ports
    return sts


SCENARIOS = {
    "defaults": {},
    "five-nodes": {"replicas": 5},
    "single-node": {"replicas": 1},
    "separate-gossip-port": {"ports": {"gossip": 9095}, "cluster": {"id": "prod_1"}},
    "no-persistence": {"persistence": {"enabled": False}},
    "external-per-pod-services": {
        "external": {
            "enabled": True,
            "advertiseHost": "$(POD_NAME).kafka.example.com",
            "service": {"annotations": {
                "external-dns.alpha.kubernetes.io/hostname": "{{ .podName }}.kafka.example.com"}},
        },
    },
    "external-host-port": {
        "podAntiAffinity": "hard",
        "external": {"enabled": True, "advertiseHost": "$(HOST_IP)", "hostPort": True,
                     "service": {"enabled": False}},
    },
    "everything-else": {
        "fullnameOverride": "jet",
        "serviceAccount": {"create": True},
        "service": {"exposeHttp": True},
        "persistence": {"storageClassName": "fast", "size": "50Gi"},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "config": {"defaultReplicationFactor": 3},
        "extraArgs": ["--rack", "zone-a"],
        "extraEnv": [{"name": "JET_MAX_IN_FLIGHT", "value": "64"}],
    },
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chart_renders_valid_objects(helm, kv, yaml, scenario):
    values = copy.deepcopy(SCENARIOS[scenario])
    objects, notes = render(helm, yaml, values)
    kinds = sorted(o["kind"] for o in objects)
    replicas = values.get("replicas", 3)
    ext = values.get("external", {})
    per_pod = replicas if ext.get("enabled") and ext.get("service", {}).get("enabled", True) else 0
    expected = ["PodDisruptionBudget"] + ["Service"] * (2 + per_pod) + ["StatefulSet"]
    if values.get("serviceAccount", {}).get("create"):
        expected.append("ServiceAccount")
    assert kinds == sorted(expected)
    sts = check_objects(objects, kv, values)
    if scenario == "everything-else":
        pod = sts["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "jet"
        assert pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] == \
            sts["spec"]["selector"]["matchLabels"]
        args = pod["containers"][0]["args"]
        assert args[-2:] == ["--rack", "zone-a"]
        assert "--default-replication-factor" in args
    if scenario == "external-per-pod-services":
        for svc in by_kind(objects, "Service"):
            if svc["metadata"]["name"].endswith("-external"):
                pod_name = svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"]
                assert svc["metadata"]["annotations"] == {
                    "external-dns.alpha.kubernetes.io/hostname": f"{pod_name}.kafka.example.com"}
    assert f"{replicas} node(s)" in notes


def test_release_and_namespace_names_flow_into_dns_names(helm, kv, yaml):
    """Another release in another namespace: every name and seed follows."""
    objects, _ = render(helm, yaml, {}, name="orders", namespace="prod")
    sts = check_objects(objects, kv, {}, release="orders", namespace="prod")
    assert sts["metadata"]["name"] == "orders-jet"
    args = parse_args(sts["spec"]["template"]["spec"]["containers"][0]["args"])
    assert one(args, "--seeds").split(",")[0] == (
        "orders-jet-0.orders-jet-headless.prod.svc.cluster.local:9093"
    )
    assert one(args, "--cluster-id") == "orders-jet"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"replicas": 0}, "replicas must be at least 1"),
        ({"ports": {"http": 9092}}, "three different ports"),
        ({"ports": {"gossip": 8080}}, "ports.gossip"),
        ({"external": {"enabled": True, "containerPort": 9092}}, "external.containerPort"),
    ],
)
def test_values_that_cannot_work_fail_to_render(helm, yaml, values, message):
    with pytest.raises(helm.HelmError) as e:
        render(helm, yaml, values)
    assert message in str(e.value)


LOOKUP = 'lookup "apps/v1" "StatefulSet" .Release.Namespace (include "jet.fullname" .)'


@pytest.mark.parametrize("formed, replicas, refused",
                         [(3, 3, False), (3, 5, False), (3, 1, True), (3, 2, True), (1, 3, True)])
def test_upgrade_may_grow_the_cluster_and_never_shrinks_it(helm, yaml, tmp_path, formed, replicas,
                                                           refused):
    """`lookup` finds nothing offline, so a copy of the chart stands a live StatefulSet (as an
    install or upgrade would read it) in its place. Growing keeps every pod's flags (the formed
    size as --bootstrap-expect, the formed pods as --seeds), so no existing pod restarts, and the
    added pods join the running cluster."""
    import shutil

    chart = tmp_path / "jet"
    shutil.copytree(CHART, chart)
    helpers = chart / "templates" / "_helpers.tpl"
    text = helpers.read_text()
    assert text.count(LOOKUP) == 1, "the formed size's lookup moved"
    live = (f'dict "metadata" (dict "annotations" (dict "jet/bootstrap-expect" "{formed}"))'
            f' "spec" (dict "replicas" {formed})')
    helpers.write_text(text.replace(LOOKUP, live))
    with helm.Chart.load(str(chart)) as c:
        if refused:
            with pytest.raises(helm.HelmError, match=f"this cluster formed with {formed} node"):
                c.render({"replicas": replicas}, name=RELEASE, namespace=NAMESPACE)
            return
        rendered = c.render({"replicas": replicas}, name=RELEASE, namespace=NAMESPACE)
    objects = [o for path, text in rendered.items() if not path.endswith("NOTES.txt")
               for o in yaml.safe_load_all(text) if o]
    (sts,) = by_kind(objects, "StatefulSet")
    assert sts["spec"]["replicas"] == replicas
    assert sts["metadata"]["annotations"]["jet/bootstrap-expect"] == str(formed)
    flags = parse_args(sts["spec"]["template"]["spec"]["containers"][0]["args"])
    assert one(flags, "--bootstrap-expect") == str(formed)
    assert len(one(flags, "--seeds").split(",")) == formed


def test_chart_lints_without_warnings(helm):
    report = helm.lint(str(CHART), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    assert not problems, f"helm lint --strict: {problems}"


def test_every_value_is_commented_and_documented():
    """values.yaml comments each value a user sets (top-level keys and their children, except
    inside Kubernetes objects passed through as they are), and docs/kubernetes.md names every
    top-level value."""
    passthrough = {"updateStrategy", "resources", "podSecurityContext", "securityContext",
                   "retentionPolicy"}
    lines = (CHART / "values.yaml").read_text().splitlines()
    parents: list[tuple[int, str]] = []
    uncommented = []
    top = []
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][\w-]*):", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if indent == 0:
            top.append(key)
        path = [p for _, p in parents]
        # Inside a Kubernetes object: a pass-through map, or a probe (probes.<name>.<field>).
        inside = bool(set(path) & passthrough) or path[:1] == ["probes"] and len(path) > 1
        if indent <= 4 and not inside:
            prev = lines[i - 1].strip() if i else ""
            if not prev.startswith("#"):
                uncommented.append(".".join(path + [key]))
        parents.append((indent, key))
    assert not uncommented, f"values without a comment above them: {uncommented}"
    doc = (REPO / "docs" / "kubernetes.md").read_text()
    missing = [k for k in top if f"`{k}" not in doc]
    assert not missing, f"docs/kubernetes.md does not describe these values: {missing}"
