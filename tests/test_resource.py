"""Kubernetes resource detection on fixture pods, the precedence of sources, and the entry-point paths."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource

import k8s_otel
from k8s_otel._resource import (
    DETECTOR_ENTRY_POINT,
    KubernetesResourceDetector,
    parse_downward_labels,
    service_name_for,
)
from k8s_otel._settings import resolve_settings
from k8s_otel._wiring import resource_for
from k8s_otel.cli._receiver import OTLPReceiver

PODS = Path(__file__).resolve().parent / "fixtures" / "pods"
UID = "8f2b4c6e-1d3a-4b5c-9e7f-0a1b2c3d4e5f"
CID = "3f2a9c1e7b5d4a8f9e6c2b1a0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e"
IN_POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}


def detect(tree: str, environ: dict[str, str] | None = None, **kwargs: object) -> dict[str, object]:
    root = PODS / tree
    podinfo = root / "etc" / "podinfo"
    detector = KubernetesResourceDetector(
        environ=environ or {},
        root=root,
        downward_api_dir=podinfo if podinfo.is_dir() else root / "no-podinfo",
        **kwargs,  # type: ignore[arg-type]
    )
    return dict(detector.detect().attributes)


def test_containerd_pod_cgroup_v2() -> None:
    attributes = detect(
        "containerd", {**IN_POD, "HOSTNAME": "replicas-webhook-7d9f8b6c5d-x2x4z", "POD_IP": "10.244.1.7"}
    )
    assert attributes == {
        "k8s.pod.uid": UID,
        "k8s.container.name": "webhook",  # kubelet's termination-log path
        "k8s.namespace.name": "webhooks",  # the service-account file
        "k8s.pod.name": "replicas-webhook-7d9f8b6c5d-x2x4z",  # HOSTNAME, in a pod
        "k8s.pod.ip": "10.244.1.7",
        "k8s.replicaset.name": "replicas-webhook-7d9f8b6c5d",  # certain: the pod-template-hash label
        "k8s.deployment.name": "replicas-webhook",
        "service.name": "replicas-webhook",
    }
    assert "container.id" not in attributes  # under containerd the mounted ids are the sandbox's


@pytest.mark.parametrize(
    "tree", ["containerd-v1-cgroupfs", "containerd-v1-systemd", "crio", "crio-v2", "docker-v1", "docker-v2"]
)
def test_pod_uid_and_container_id_from_cgroups(tree: str) -> None:
    attributes = detect(tree, IN_POD)
    assert attributes["k8s.pod.uid"] == UID
    assert attributes["container.id"] == CID


def test_crio_statefulset_pod() -> None:
    attributes = detect("crio", {**IN_POD, "POD_NAME": "db-2"})
    assert attributes["k8s.namespace.name"] == "batch"
    assert attributes["k8s.statefulset.name"] == "db"
    assert "k8s.daemonset.name" not in attributes  # controller-revision-hash alone proves nothing
    assert attributes["service.name"] == "db"


def test_operator_injected_env() -> None:
    environ = {
        **IN_POD,
        "OTEL_RESOURCE_ATTRIBUTES_POD_NAME": "api-5f7d8c9b4-abcde",
        "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME": "node-1",
        "OTEL_RESOURCE_ATTRIBUTES_POD_UID": UID,
        "OTEL_POD_IP": "10.244.2.9",
        "HOSTNAME": "something-else",
    }
    attributes = detect("operator", environ)
    assert attributes == {
        "k8s.pod.name": "api-5f7d8c9b4-abcde",
        "k8s.node.name": "node-1",
        "k8s.pod.uid": UID,
        "k8s.pod.ip": "10.244.2.9",
    }  # no labels: no workload is certain, so none is guessed from the name


def test_plain_laptop_gives_nothing_and_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="k8s_otel"):
        assert detect("laptop", {"HOSTNAME": "my-laptop"}) == {}
        assert detect("plain-docker", {"HOSTNAME": "3f2a9c1e7b5d"}) == {}
        assert detect("does-not-exist") == {}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_env_names_and_their_precedence() -> None:
    environ = {
        **IN_POD,
        "POD_NAME": "web-0",
        "OTEL_RESOURCE_ATTRIBUTES_POD_NAME": "from-the-operator",
        "POD_NAMESPACE": "ns-from-env",
        "NODE_NAME": "n1",
        "CONTAINER_NAME": "app",
        "K8S_CLUSTER_NAME": "prod",
        "K8S_CLUSTER_UID": "c1",
        "POD_UID": "11111111-2222-3333-4444-555555555555",
    }
    attributes = detect("containerd", environ)
    assert attributes["k8s.pod.name"] == "from-the-operator"
    assert attributes["k8s.namespace.name"] == "ns-from-env"  # env beats the service-account file
    assert attributes["k8s.pod.uid"] == "11111111-2222-3333-4444-555555555555"  # env beats the mounts
    assert attributes["k8s.container.name"] == "app"
    assert (attributes["k8s.cluster.name"], attributes["k8s.cluster.uid"], attributes["k8s.node.name"]) == (
        "prod",
        "c1",
        "n1",
    )


def test_custom_env_names_win() -> None:
    environ = {
        **IN_POD,
        "MY_POD": "mine",
        "POD_NAME": "default",
        "OTHER_NODE": "n9",
        "K8S_OTEL_RESOURCE_ENV": "OTHER_NODE=k8s.node.name",
    }
    attributes = detect("laptop", environ, env_names={"MY_POD": "k8s.pod.name"})
    assert (attributes["k8s.pod.name"], attributes["k8s.node.name"]) == ("mine", "n9")


def test_hostname_is_used_only_in_a_pod() -> None:
    assert "k8s.pod.name" not in detect("containerd", {"HOSTNAME": "web-1"})
    assert detect("containerd", {**IN_POD, "HOSTNAME": "web-1"})["k8s.pod.name"] == "web-1"


@pytest.mark.parametrize(
    ("pod", "labels", "expected"),
    [
        (
            "web-7d9f8b6c5d-x2x4z",
            {"pod-template-hash": "7d9f8b6c5d"},
            {"k8s.replicaset.name": "web-7d9f8b6c5d", "k8s.deployment.name": "web"},
        ),
        ("web-7d9f8b6c5d-x2x4z", {"pod-template-hash": "other"}, {}),
        ("web-7d9f8b6c5d-x2x4z", {}, {}),
        ("db-12", {"statefulset.kubernetes.io/pod-name": "db-12"}, {"k8s.statefulset.name": "db"}),
        ("db-12", {"statefulset.kubernetes.io/pod-name": "db-13"}, {}),
        (
            "agent-x7k2p",
            {"controller-revision-hash": "1", "pod-template-generation": "3"},
            {"k8s.daemonset.name": "agent"},
        ),
        ("migrate-8k2xq", {"batch.kubernetes.io/job-name": "migrate"}, {"k8s.job.name": "migrate"}),
        (
            "nightly-29123456-abcde",
            {"job-name": "nightly-29123456"},
            {"k8s.job.name": "nightly-29123456", "k8s.cronjob.name": "nightly"},
        ),
        ("backup-12-abcde", {"job-name": "backup-12"}, {"k8s.job.name": "backup-12"}),
    ],
)
def test_workloads_only_where_certain(
    tmp_path: Path, pod: str, labels: dict[str, str], expected: dict[str, str]
) -> None:
    (tmp_path / "labels").write_text("".join(f'{k}="{v}"\n' for k, v in labels.items()))
    detector = KubernetesResourceDetector(
        environ={**IN_POD, "POD_NAME": pod}, root=tmp_path, downward_api_dir=tmp_path
    )
    attributes = detector.detect().attributes
    workloads = {
        k: v
        for k, v in attributes.items()
        if k.split(".")[1] in ("replicaset", "deployment", "statefulset", "daemonset", "job", "cronjob")
    }
    assert workloads == expected


def test_service_name_rule() -> None:
    assert service_name_for({"k8s.deployment.name": "d", "k8s.container.name": "c"}) == "d"
    assert service_name_for({"k8s.job.name": "j", "k8s.cronjob.name": "cj"}) == "cj"
    assert service_name_for({"k8s.container.name": "c", "k8s.pod.name": "p"}) == "c"
    assert service_name_for({"k8s.pod.name": "p"}) is None


def test_downward_labels_file_format() -> None:
    text = 'a="1"\nb="with \\"quotes\\" and \\\\ and \\n"\nbroken line\nc=unquoted\n'
    assert parse_downward_labels(text) == {"a": "1", "b": 'with "quotes" and \\ and \n'}


def test_bad_sources_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").mkdir()  # a directory where a file is expected
    (tmp_path / "proc" / "self" / "mountinfo").write_bytes(os.urandom(4096) + b"\n" * 10)
    huge = tmp_path / "var" / "run" / "secrets" / "kubernetes.io" / "serviceaccount"
    huge.mkdir(parents=True)
    (huge / "namespace").write_bytes(b"x" * (1 << 20))
    environ = {**IN_POD, "POD_NAME": "\x00binary\x01", "NODE_NAME": "n" * 100_000, "CONTAINER_NAME": "ok"}
    attributes = (
        KubernetesResourceDetector(environ=environ, root=tmp_path, downward_api_dir=tmp_path / "nope")
        .detect()
        .attributes
    )
    assert dict(attributes) == {"k8s.container.name": "ok", "service.name": "ok"}


@settings(max_examples=200)
@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_garbage_in_cgroup_and_mountinfo_never_raises(cgroup: bytes, mountinfo: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        proc = Path(directory, "proc", "self")
        proc.mkdir(parents=True)
        (proc / "cgroup").write_bytes(cgroup)
        (proc / "mountinfo").write_bytes(mountinfo)
        KubernetesResourceDetector(environ=IN_POD, root=directory, raise_on_error=True).detect()


# --- the entry-point paths and configure() -----------------------------------------------------


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import subprocess_scripts

    return subprocess_scripts.run("probes", "sdk_resource", *args, env={**os.environ, **env})


POD_ENV = {
    **IN_POD,
    "K8S_OTEL_FS_ROOT": str(PODS / "containerd"),
    "K8S_OTEL_DOWNWARD_API_DIR": str(PODS / "containerd" / "etc" / "podinfo"),
    "HOSTNAME": "replicas-webhook-7d9f8b6c5d-x2x4z",
    "POD_IP": "10.244.1.7",
}


def test_entry_point_through_the_sdk_resource_configuration() -> None:
    result = _run(
        env={
            **POD_ENV,
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "k8s",
            "OTEL_RESOURCE_ATTRIBUTES": "k8s.cluster.name=prod,k8s.pod.ip=override,bad-pair,x=a%2Cb",
            "OTEL_SERVICE_NAME": "",
        },
    )
    assert result.returncode == 0, result.stderr
    attributes = json.loads(result.stdout)
    assert attributes["k8s.deployment.name"] == "replicas-webhook"
    assert attributes["service.name"] == "replicas-webhook"  # the workload rule, no user value
    assert attributes["k8s.pod.ip"] == "override"  # the user's OTEL_RESOURCE_ATTRIBUTES win
    assert (attributes["k8s.cluster.name"], attributes["x"]) == ("prod", "a,b")  # percent-decoded
    assert "bad-pair" in result.stderr  # the SDK's one warning names the malformed pair


def test_user_service_name_wins_through_the_sdk() -> None:
    result = _run(
        "service.name",
        env={**POD_ENV, "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "k8s", "OTEL_SERVICE_NAME": "mine"},
    )
    assert result.stdout.strip() == "mine"


def test_configure_uses_the_detector(otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in POD_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=prod,k8s.namespace.name=from-user")
    handle = k8s_otel.configure(
        install=False, endpoint=otlp_receiver.endpoint, sampling_rate_per_million=1_000_000
    )
    try:
        with handle.tracer_provider.get_tracer("t").start_as_current_span("in-a-pod"):
            pass
        handle.force_flush(10)
        [span] = otlp_receiver.wait_for_spans(1)
    finally:
        handle.shutdown(5)
    resource = span.resource
    assert resource["k8s.pod.uid"] == UID
    assert resource["k8s.pod.ip"] == "10.244.1.7"
    assert resource["k8s.deployment.name"] == "replicas-webhook"
    assert resource["service.name"] == "replicas-webhook"  # not unknown_service
    assert resource["k8s.namespace.name"] == "from-user"  # the user's value beats the file
    assert resource["k8s.cluster.name"] == "prod"
    assert resource["telemetry.sdk.language"] == "python"


def test_configure_service_name_argument_beats_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in POD_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    handle = k8s_otel.configure(install=False, service_name="from-code", resource={"k8s.pod.ip": "1.2.3.4"})
    try:
        attributes = handle.tracer_provider.resource.attributes  # type: ignore[attr-defined]
    finally:
        handle.shutdown(1)
    assert (attributes["service.name"], attributes["k8s.pod.ip"]) == ("from-code", "1.2.3.4")


def test_configure_outside_kubernetes_keeps_the_sdk_resource() -> None:
    handle = k8s_otel.configure(install=False)
    try:
        attributes = handle.tracer_provider.resource.attributes  # type: ignore[attr-defined]
    finally:
        handle.shutdown(1)
    assert str(attributes["service.name"]).startswith("unknown_service")
    assert not [k for k in attributes if str(k).startswith("k8s.")]


def test_the_users_keys_are_left_to_the_users_values() -> None:
    environ = {
        **IN_POD,
        "POD_NAME": "web-0",
        "POD_IP": "10.0.0.1",
        "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.ip=1.2.3.4, bad",
        "OTEL_SERVICE_NAME": "mine",
    }
    attributes = detect("laptop", environ)
    assert (
        "k8s.pod.ip" not in attributes and "service.name" not in attributes
    )  # the SDK's otel detector sets them
    assert attributes["k8s.pod.name"] == "web-0"


# Outside Kubernetes (issue 14): generic names alone never make a process look like a pod.


@pytest.mark.parametrize(
    "environ",
    [{"CONTAINER_NAME": "ci-job"}, {"NODE_NAME": "jenkins-agent"}, {"CONTAINER_NAME": "a", "NODE_NAME": "b"}],
)
def test_generic_env_names_alone_are_not_a_pod(environ: dict[str, str]) -> None:
    assert detect("laptop", {**environ, "HOSTNAME": "my-laptop"}) == {}
    assert detect("plain-docker", environ) == {}


def test_configure_outside_kubernetes_ignores_a_stray_container_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINER_NAME", "ci-job")
    monkeypatch.setenv("K8S_OTEL_FS_ROOT", str(PODS / "laptop"))
    handle = k8s_otel.configure(install=False, endpoint="127.0.0.1:1")
    try:
        attributes = handle.tracer_provider.resource.attributes  # type: ignore[attr-defined]
        assert "k8s.container.name" not in attributes
        assert str(attributes["service.name"]).startswith("unknown_service")
    finally:
        handle.shutdown()


@pytest.mark.parametrize(
    "environ",
    [
        {"KUBERNETES_SERVICE_HOST": "10.96.0.1"},
        {"POD_NAME": "web-0"},
        {"K8S_CONTAINER_NAME": "app"},
        {"OTEL_RESOURCE_ATTRIBUTES_POD_NAME": "web-0"},
    ],
)
def test_a_kubernetes_signal_lets_generic_names_count(environ: dict[str, str]) -> None:
    attributes = detect("laptop", {**environ, "CONTAINER_NAME": "app"})
    assert attributes["k8s.container.name"] == "app"


def test_the_service_account_files_are_a_kubernetes_signal(tmp_path: Path) -> None:
    account = tmp_path / "var" / "run" / "secrets" / "kubernetes.io" / "serviceaccount"
    account.mkdir(parents=True)
    (account / "namespace").write_text("team-a")
    attributes = KubernetesResourceDetector(
        environ={"CONTAINER_NAME": "app"}, root=tmp_path, downward_api_dir=tmp_path / "none"
    ).detect()
    assert dict(attributes.attributes) == {
        "k8s.container.name": "app",
        "k8s.namespace.name": "team-a",
        "service.name": "app",
    }


def test_a_kubelet_pod_path_is_a_kubernetes_signal(tmp_path: Path) -> None:
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text("0::/\n")
    (proc / "mountinfo").write_text(
        f"1 2 0:1 /var/lib/kubelet/pods/{UID}/containers/app/abc /dev/termination-log rw - ext4 /dev/sda rw\n"
    )
    attributes = KubernetesResourceDetector(
        environ={}, root=tmp_path, downward_api_dir=tmp_path / "n"
    ).detect()
    assert attributes.attributes["k8s.pod.uid"] == UID
    assert attributes.attributes["k8s.container.name"] == "app"


def test_a_fifo_in_place_of_a_pod_file_never_blocks(tmp_path: Path) -> None:
    account = tmp_path / "var" / "run" / "secrets" / "kubernetes.io" / "serviceaccount"
    account.mkdir(parents=True)
    os.mkfifo(account / "namespace")
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    os.mkfifo(proc / "cgroup")
    os.mkfifo(proc / "mountinfo")
    podinfo = tmp_path / "podinfo"
    podinfo.mkdir()
    os.mkfifo(podinfo / "labels")
    attributes = KubernetesResourceDetector(
        environ={**IN_POD, "POD_NAME": "web-0"}, root=tmp_path, downward_api_dir=podinfo
    ).detect()
    assert dict(attributes.attributes) == {"k8s.pod.name": "web-0"}


def test_extra_env_names_the_user_configured_are_a_kubernetes_signal() -> None:
    attributes = detect("laptop", {"MY_POD": "web-0"}, env_names={"MY_POD": "k8s.pod.name"})
    assert attributes["k8s.pod.name"] == "web-0"


# --- resource_for on the SDK's own aggregation (issue 17) ------------------------------------------

DETECTOR_SETTINGS = [
    None,
    "",
    "k8s",
    " k8s ",
    "process,k8s",
    "k8s,process",
    "otel,k8s",
    "k8s,k8s",
    "process",
    "*",
    "no-such-detector",
]


@pytest.fixture
def detector_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count ``KubernetesResourceDetector.detect`` calls, however the detector was built (ours or the SDK's)."""
    runs: list[int] = []
    original = KubernetesResourceDetector.detect

    def counting(self: KubernetesResourceDetector) -> Resource:
        runs.append(1)
        return original(self)

    monkeypatch.setattr(KubernetesResourceDetector, "detect", counting)
    return runs


def _in_the_fixture_pod(monkeypatch: pytest.MonkeyPatch, detectors: str | None) -> None:
    for name, value in POD_ENV.items():
        monkeypatch.setenv(name, value)
    if detectors is not None:
        monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", detectors)


def test_the_entry_point_name_is_the_detector() -> None:
    from opentelemetry.util._importlib_metadata import entry_points

    [entry_point] = entry_points(group="opentelemetry_resource_detector", name=DETECTOR_ENTRY_POINT)
    assert entry_point.load() is KubernetesResourceDetector


@pytest.mark.parametrize("detectors", DETECTOR_SETTINGS)
def test_the_detector_runs_exactly_once(
    detectors: str | None,
    detector_runs: list[int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _in_the_fixture_pod(monkeypatch, detectors)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "bad-pair,k8s.cluster.name=prod")
    sdk_logger = logging.getLogger("opentelemetry.sdk.resources")
    with caplog.at_level(logging.WARNING):
        attributes = resource_for(resolve_settings(), None).attributes
    assert len(detector_runs) == 1
    assert attributes["k8s.pod.uid"] == UID
    assert attributes["k8s.cluster.name"] == "prod"
    # Nothing global is flipped: the SDK's logger stays on, and its one warning is given once.
    assert not sdk_logger.disabled
    assert sum("bad-pair" in record.getMessage() for record in caplog.records) == 1


@pytest.mark.parametrize("detectors", DETECTOR_SETTINGS)
def test_resource_precedence_is_the_same_in_every_combination(
    detectors: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_the_fixture_pod(monkeypatch, detectors)

    def attributes(**arguments: object) -> dict[str, object]:
        resource = arguments.pop("resource", None)
        settings = resolve_settings(**arguments)  # type: ignore[arg-type]
        return dict(resource_for(settings, resource).attributes)  # type: ignore[arg-type]

    plain = attributes()
    assert plain["service.name"] == "replicas-webhook"  # the workload beats unknown_service
    assert plain["k8s.namespace.name"] == "webhooks"
    assert plain["telemetry.sdk.language"] == "python"

    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.namespace.name=from-user,service.name=attr-name")
    assert (attributes()["k8s.namespace.name"], attributes()["service.name"]) == ("from-user", "attr-name")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    assert attributes()["service.name"] == "from-env"  # OTEL_SERVICE_NAME beats OTEL_RESOURCE_ATTRIBUTES

    code = attributes(resource={"k8s.namespace.name": "from-code", "service.name": "resource-name"})
    assert (code["k8s.namespace.name"], code["service.name"]) == ("from-code", "resource-name")
    named = attributes(service_name="from-argument", resource={"service.name": "resource-name"})
    assert named["service.name"] == "from-argument"  # service_name= beats everything
    assert named["k8s.pod.uid"] == UID


@pytest.mark.parametrize("detectors", [None, "k8s"])
def test_outside_kubernetes_the_resource_is_the_sdks(
    detectors: str | None, detector_runs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K8S_OTEL_FS_ROOT", str(PODS / "laptop"))
    if detectors is not None:
        monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", detectors)
    settings = resolve_settings()
    ours = dict(resource_for(settings, {"a": "b"}).attributes)
    sdk = dict(Resource.create({"a": "b"}).attributes)
    ours.pop("service.instance.id", None)  # a new random id per Resource.create (SDK >= 1.43)
    sdk.pop("service.instance.id", None)
    assert ours == sdk
    assert len(detector_runs) == 1 + (detectors == "k8s")  # Resource.create above ran it once more


@pytest.mark.parametrize("detectors", ["k8s", "*"])
def test_the_detector_runs_once_when_its_entry_point_is_missing(
    detectors: str, detector_runs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A source tree on sys.path registers no entry points: the SDK cannot run the detector, so we do.
    import opentelemetry.util._importlib_metadata as metadata

    registered = metadata.entry_points

    def without_ours(**params: object) -> object:
        found = registered(**params)  # type: ignore[arg-type]
        if params.get("group") != "opentelemetry_resource_detector":
            return found
        return type(found)(entry for entry in found if entry.name != DETECTOR_ENTRY_POINT)

    monkeypatch.setattr(metadata, "entry_points", without_ours)
    _in_the_fixture_pod(monkeypatch, detectors)
    attributes = resource_for(resolve_settings(), None).attributes
    assert len(detector_runs) == 1
    assert attributes["k8s.pod.uid"] == UID
