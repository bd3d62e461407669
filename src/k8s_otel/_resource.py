"""Kubernetes resource attributes for the process, from the pod's own env and files: no API calls.

The collector's k8sattributes processor matches pods by ``k8s.pod.ip``, then ``k8s.pod.uid``; a
backend puts spans beside kube-apiserver's and the kubelet's by namespace, pod and node. This
detector reads what a pod can see of itself (downward-API env and volume, the service-account
namespace file, ``HOSTNAME``, ``/proc/self/cgroup`` and ``/proc/self/mountinfo``) and reports only
what is certain. ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` always win: the SDK's own
``otel`` detector applies them after this one. Every source is read with a size bound, and a
source that cannot be read is skipped and logged at debug level: detection never raises.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Optional, Union

from opentelemetry.sdk.environment_variables import OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
from opentelemetry.sdk.resources import Resource, ResourceDetector

from k8s_otel._attributes import CONTAINER_ID, SERVICE_NAME
from k8s_otel._attributes import K8S_CLUSTER_NAME as CLUSTER_NAME
from k8s_otel._attributes import K8S_CLUSTER_UID as CLUSTER_UID
from k8s_otel._attributes import K8S_CONTAINER_NAME as CONTAINER_NAME
from k8s_otel._attributes import K8S_CRONJOB_NAME as CRONJOB
from k8s_otel._attributes import K8S_DAEMONSET_NAME as DAEMONSET
from k8s_otel._attributes import K8S_DEPLOYMENT_NAME as DEPLOYMENT
from k8s_otel._attributes import K8S_JOB_NAME as JOB
from k8s_otel._attributes import K8S_NAMESPACE_NAME as NAMESPACE
from k8s_otel._attributes import K8S_NODE_NAME as NODE_NAME
from k8s_otel._attributes import K8S_POD_IP as POD_IP
from k8s_otel._attributes import K8S_POD_NAME as POD_NAME
from k8s_otel._attributes import K8S_POD_UID as POD_UID
from k8s_otel._attributes import K8S_REPLICASET_NAME as REPLICASET
from k8s_otel._attributes import K8S_STATEFULSET_NAME as STATEFULSET
from k8s_otel._files import read_regular_file

__all__ = [
    "DEFAULT_ENV_NAMES",
    "DETECTOR_ENTRY_POINT",
    "DOWNWARD_API_FIELDS",
    "KubernetesResourceDetector",
    "parse_downward_labels",
    "service_name_for",
]

_logger = logging.getLogger("k8s_otel.resource")


DEFAULT_ENV_NAMES: dict[str, tuple[str, ...]] = {
    CLUSTER_NAME: ("K8S_CLUSTER_NAME",),
    CLUSTER_UID: ("K8S_CLUSTER_UID",),
    NAMESPACE: ("POD_NAMESPACE", "K8S_NAMESPACE"),
    POD_NAME: ("OTEL_RESOURCE_ATTRIBUTES_POD_NAME", "POD_NAME", "K8S_POD_NAME"),
    POD_UID: ("OTEL_RESOURCE_ATTRIBUTES_POD_UID", "POD_UID", "K8S_POD_UID"),
    POD_IP: ("POD_IP", "OTEL_POD_IP", "K8S_POD_IP"),
    NODE_NAME: ("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "NODE_NAME", "K8S_NODE_NAME"),
    CONTAINER_NAME: ("CONTAINER_NAME", "K8S_CONTAINER_NAME"),
}
"""Downward-API env names read for each attribute, first found wins (the Operator's names first).

The one list: ``k8s-otel doctor`` and the tests read it from here."""

DOWNWARD_API_FIELDS: dict[str, str] = {
    "POD_NAME": "metadata.name",
    "POD_NAMESPACE": "metadata.namespace",
    "POD_UID": "metadata.uid",
    "NODE_NAME": "spec.nodeName",
    "POD_IP": "status.podIP",
}
"""The env names a pod manifest should set, each with its downward-API ``fieldRef``: every one is in
``DEFAULT_ENV_NAMES``, and together they give what the collector's k8sattributes processor matches on."""

GENERIC_ENV_NAMES = frozenset({"CONTAINER_NAME", "NODE_NAME"})
"""Names that container runtimes and CI systems set outside Kubernetes (Jenkins sets ``NODE_NAME``):
read in a pod, but alone they never make a process look like one."""

DETECTOR_ENTRY_POINT = "k8s"
"""The detector's name in ``opentelemetry_resource_detector`` (``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=k8s``)."""
CUSTOM_ENV_NAMES = "K8S_OTEL_RESOURCE_ENV"  # "MY_POD=k8s.pod.name,MY_NODE=k8s.node.name"
DOWNWARD_API_DIR_ENV = "K8S_OTEL_DOWNWARD_API_DIR"
FS_ROOT_ENV = "K8S_OTEL_FS_ROOT"  # for tests: where /proc and /var/run/secrets are looked up
DEFAULT_DOWNWARD_API_DIR = "/etc/podinfo"
NAMESPACE_FILE = "var/run/secrets/kubernetes.io/serviceaccount/namespace"

_MAX_FILE_BYTES = 64 << 10
_MAX_ENV_CHARS = 1024
_POD_UID_IN_CGROUP = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
_CONTAINER_IN_CGROUP = re.compile(
    r"(?:^|/)(?:cri-containerd-|crio-|docker-|containerd-)?([0-9a-f]{64})(?:\.scope)?$"
)
_POD_IN_MOUNTS = re.compile(r"/kubelet/pods/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/")
_CONTAINER_NAME_IN_MOUNTS = re.compile(
    r"/kubelet/pods/[0-9a-f-]{36}/containers/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)/"
)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _clean(value: Optional[str]) -> Optional[str]:
    """An env or file value we are willing to record: short, printable, not blank."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_ENV_CHARS or not value.isprintable():
        return None
    return value


def parse_downward_labels(text: str) -> dict[str, str]:
    """A downward-API ``labels``/``annotations`` file: ``key="value"`` per line, Go-quoted values."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, equals, quoted = line.partition("=")
        if not equals or len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
            continue
        value, chars, index = [], quoted[1:-1], 0
        while index < len(chars):
            char = chars[index]
            if char == "\\" and index + 1 < len(chars):
                index += 1
                char = {"n": "\n", "t": "\t", "r": "\r"}.get(chars[index], chars[index])
            value.append(char)
            index += 1
        result[key.strip()] = "".join(value)
    return result


def _workloads(pod_name: str, labels: Mapping[str, str]) -> dict[str, str]:
    """Owner names that the pod's own name and labels make certain (docs/resource-detection.md)."""
    found: dict[str, str] = {}
    template_hash = labels.get("pod-template-hash")
    if template_hash and pod_name.count("-") >= 2:
        replicaset = pod_name.rsplit("-", 1)[0]
        if replicaset.endswith("-" + template_hash):  # <deployment>-<hash>-<5 chars>
            found[REPLICASET] = replicaset
            found[DEPLOYMENT] = replicaset[: -len(template_hash) - 1]
    if labels.get("statefulset.kubernetes.io/pod-name") == pod_name:
        base, _, ordinal = pod_name.rpartition("-")
        if base and ordinal.isdigit():
            found[STATEFULSET] = base
    if "controller-revision-hash" in labels and "pod-template-generation" in labels and "-" in pod_name:
        found[DAEMONSET] = pod_name.rsplit("-", 1)[0]  # <daemonset>-<5 chars>
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    if job:
        found[JOB] = job
        base, _, minutes = job.rpartition("-")
        if base and minutes.isdigit() and len(minutes) >= 8:  # <cronjob>-<scheduled time, unix minutes>
            found[CRONJOB] = base
    return found


def service_name_for(attributes: Mapping[str, Any]) -> Optional[str]:
    """The ``service.name`` fallback: the most specific certain workload, then the container name."""
    for key in (DEPLOYMENT, STATEFULSET, DAEMONSET, CRONJOB, JOB, CONTAINER_NAME):
        value = attributes.get(key)
        if value:
            return str(value)
    return None


class KubernetesResourceDetector(ResourceDetector):
    """``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=k8s``; also what ``k8s_otel.configure()`` uses.

    ``environ`` defaults to ``os.environ``; ``root`` (default ``K8S_OTEL_FS_ROOT`` or ``/``) is where
    ``/proc/self/*`` and the service-account files are looked up; ``downward_api_dir`` holds
    ``labels``/``annotations`` files (default ``K8S_OTEL_DOWNWARD_API_DIR``, else ``/etc/podinfo``);
    ``env_names`` maps extra env var names to attribute keys, and wins over the default names.
    """

    def __init__(
        self,
        *,
        environ: Optional[Mapping[str, str]] = None,
        root: Union[str, os.PathLike[str], None] = None,
        downward_api_dir: Union[str, os.PathLike[str], None] = None,
        env_names: Optional[Mapping[str, str]] = None,
        raise_on_error: bool = False,
    ) -> None:
        super().__init__(raise_on_error=raise_on_error)
        self._environ = os.environ if environ is None else environ
        self._root = os.fspath(root) if root is not None else self._environ.get(FS_ROOT_ENV, "/")
        directory = (
            downward_api_dir if downward_api_dir is not None else self._environ.get(DOWNWARD_API_DIR_ENV)
        )
        self._downward_dir = os.fspath(directory) if directory else None
        self._env_names = dict(env_names or {})
        for pair in self._environ.get(CUSTOM_ENV_NAMES, "").split(","):
            name, equals, key = pair.partition("=")
            if equals and name.strip() and key.strip():
                self._env_names.setdefault(name.strip(), key.strip())

    def _read(self, path: str) -> Optional[str]:
        try:  # never blocks: a FIFO or a device in place of a pod file is skipped
            return read_regular_file(path, _MAX_FILE_BYTES)[:_MAX_FILE_BYTES].decode("utf-8", "replace")
        except (OSError, ValueError) as error:
            _logger.debug("k8s_otel resource detection: cannot read %s: %s", path, error)
            return None

    def _path(self, relative: str) -> str:
        return os.path.join(self._root, relative)

    def detect(self) -> Resource:
        try:
            return Resource(self._attributes())
        except Exception:  # detection must never break start-up
            _logger.debug("k8s_otel resource detection failed", exc_info=True)
            if self.raise_on_error:
                raise
            return Resource.get_empty()

    def _attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        kubernetes_signal = bool(self._environ.get("KUBERNETES_SERVICE_HOST"))
        for name, key in self._env_names.items():  # names the user chose: a signal
            value = _clean(self._environ.get(name))
            if value:
                attributes.setdefault(key, value)
                kubernetes_signal = True
        for key, names in DEFAULT_ENV_NAMES.items():
            for name in names:
                value = _clean(self._environ.get(name))
                if value:
                    attributes.setdefault(key, value)
                    break
        kubernetes_signal = kubernetes_signal or any(
            _clean(self._environ.get(name))
            for names in DEFAULT_ENV_NAMES.values()
            for name in names
            if name not in GENERIC_ENV_NAMES
        )

        pod_path_seen = self._from_cgroup_and_mounts(attributes)
        kubernetes_signal = kubernetes_signal or pod_path_seen or os.path.isfile(self._path(NAMESPACE_FILE))
        if not kubernetes_signal:
            return {}  # not in Kubernetes (a laptop, plain Docker, CI): nothing, and no noise

        if NAMESPACE not in attributes:
            namespace = _clean(self._read(self._path(NAMESPACE_FILE)))
            if namespace:
                attributes[NAMESPACE] = namespace
        if POD_NAME not in attributes and self._environ.get("KUBERNETES_SERVICE_HOST"):
            hostname = _clean(self._environ.get("HOSTNAME"))
            if hostname and _DNS_LABEL.fullmatch(hostname):
                attributes[POD_NAME] = hostname

        labels = self._labels()
        pod_name = attributes.get(POD_NAME)
        if pod_name and labels:
            for key, value in _workloads(str(pod_name), labels).items():
                attributes.setdefault(key, value)
        service = service_name_for(attributes)
        if service:
            attributes.setdefault(SERVICE_NAME, service)
        # The user's values must win even where the SDK runs its detectors in no fixed order (a set,
        # before 1.42): leave out what OTEL_RESOURCE_ATTRIBUTES or OTEL_SERVICE_NAME set. Only the
        # keys are read here; the SDK's otel detector parses and applies the values.
        for key in self._user_keys():
            attributes.pop(key, None)
        return attributes

    def _user_keys(self) -> set[str]:
        keys = {  # read as the SDK's OTELResourceDetector reads them
            item.partition("=")[0].strip()
            for item in self._environ.get(OTEL_RESOURCE_ATTRIBUTES, "").split(",")
            if "=" in item
        }
        if self._environ.get(OTEL_SERVICE_NAME):
            keys.add(SERVICE_NAME)
        return keys

    def _labels(self) -> dict[str, str]:
        directory = self._downward_dir
        if directory is None:
            directory = DEFAULT_DOWNWARD_API_DIR if os.path.isdir(DEFAULT_DOWNWARD_API_DIR) else None
        if directory is None:
            return {}
        text = self._read(os.path.join(directory, "labels"))
        return parse_downward_labels(text) if text else {}

    def _from_cgroup_and_mounts(self, attributes: dict[str, Any]) -> bool:
        """Read the kubelet's pod paths into ``attributes``; whether any pod path was found."""
        pod_path_seen = False
        cgroup = self._read(self._path("proc/self/cgroup")) or ""
        for line in cgroup.splitlines():
            path = line.split(":", 2)[-1].strip()
            if not pod_path_seen and _POD_UID_IN_CGROUP.search(path):
                pod_path_seen = True
            if POD_UID not in attributes:
                match = _POD_UID_IN_CGROUP.search(path)
                if match:
                    attributes[POD_UID] = match.group(1).replace("_", "-")
            if CONTAINER_ID not in attributes and "kubepods" in path:
                match = _CONTAINER_IN_CGROUP.search(path)
                if match:
                    attributes[CONTAINER_ID] = match.group(1)
        # mountinfo gives kubelet's paths (pod UID, container name), never a container id: the
        # runtime directories mounted into a container (hostname, resolv.conf) belong to the pod
        # sandbox under containerd, so an id read there would be the pause container's.
        if POD_UID in attributes and CONTAINER_NAME in attributes and pod_path_seen:
            return True
        mounts = self._read(self._path("proc/self/mountinfo")) or ""
        for line in mounts.splitlines():
            match = _POD_IN_MOUNTS.search(line)
            if match:
                pod_path_seen = True
                if POD_UID not in attributes:
                    attributes[POD_UID] = match.group(1)
            if CONTAINER_NAME not in attributes:
                match = _CONTAINER_NAME_IN_MOUNTS.search(line)
                if match:
                    attributes[CONTAINER_NAME] = match.group(1)
        return pod_path_seen
