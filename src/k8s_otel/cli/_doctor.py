"""``k8s-otel doctor``: the effective settings, where each came from, and what would go wrong.

It decides what ``configure()`` would export with the very function ``configure()`` uses
(``k8s_otel._exporter.build_exporter``, through ``_collector.exporter_refusal``), so that it can never say "ok" where no span would leave.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any, TextIO

from k8s_otel.cli._collector import check_connection, exporter_refusal
from k8s_otel.cli._common import UserError, as_json

__all__ = ["run_doctor"]


def _missing_downward_env(resource: Mapping[str, Any]) -> list[str]:
    """What resource detection could not find of what the downward API gives, and how to give it.

    ``resource`` is what ``configure()`` would export; the env names are the detector's own
    (``DEFAULT_ENV_NAMES``), so doctor asks for exactly what detection reads.
    """
    from k8s_otel._resource import DEFAULT_ENV_NAMES, DOWNWARD_API_FIELDS

    missing = []
    for key, names in DEFAULT_ENV_NAMES.items():
        wanted = [name for name in names if name in DOWNWARD_API_FIELDS]
        if wanted and key not in resource:
            name = wanted[0]
            missing.append(
                f"{key} (set {name} from fieldRef {DOWNWARD_API_FIELDS[name]}; read: {', '.join(names)})"
            )
    return missing


def _doctor_findings(
    settings: Any, environ: Mapping[str, str], resource: Mapping[str, Any]
) -> list[tuple[str, str]]:
    # The settings' problems already give the one fix for a sampler that is not ours.
    findings = [("error", problem) for problem in settings.problems]
    if environ.get("KUBERNETES_SERVICE_HOST"):
        missing = _missing_downward_env(resource)
        if missing:
            findings.append(
                (
                    "warning",
                    "running in a pod without downward-API env for "
                    + "; ".join(missing)
                    + ": the collector's k8sattributes processor matches pods by k8s.pod.ip and k8s.pod.uid",
                )
            )
    from k8s_otel._file_config import CONFIG_FILE_ENV, check_config_file

    config_file = environ.get(CONFIG_FILE_ENV, "").strip()
    if config_file:
        report = check_config_file(config_file, dict(environ))
        findings.append(
            (
                "warning",
                f"{CONFIG_FILE_ENV}={config_file}: the SDK's file configuration ignores the OTEL_* "
                "variables; the settings above apply only to k8s_otel.configure()",
            )
        )
        findings.extend(("error", problem) for problem in report.problems)
        findings.extend(("note", note) for note in report.notes)
    return findings


def run_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from k8s_otel._settings import resolve_settings

    try:
        settings = resolve_settings(endpoint=args.endpoint, config_file=args.config_file)
    except ValueError as error:
        raise UserError(str(error)) from None
    from k8s_otel._wiring import resource_for

    findings = _doctor_findings(settings, os.environ, dict(resource_for(settings, None).attributes))
    reachable, detail = (True, "OTEL_SDK_DISABLED=true: nothing is exported")
    refusal = exporter_refusal(settings)
    if refusal is not None:
        # What configure() itself would log, once: it would build no exporter at all.
        if refusal not in settings.problems:
            findings.append(("error", refusal))
        reachable, detail = False, "not checked: configure() would export nothing"
    elif not settings.sdk_disabled.value:
        reachable, detail = check_connection(settings, args.timeout)
        if not reachable:
            findings.append(("error", f"collector unreachable: {detail}"))
    from k8s_otel._export import WHERE_TO_LOOK

    findings.append(("note", f"lost spans: {WHERE_TO_LOOK}"))
    broken = any(level == "error" for level, _ in findings)
    from k8s_otel._resource import KubernetesResourceDetector

    detected = dict(KubernetesResourceDetector().detect().attributes)
    if args.json:
        report = {
            "settings": settings.as_dict(),
            "kubernetes_resource": detected,
            "collector": {"reachable": reachable, "detail": detail},
            "findings": [{"level": level, "message": message} for level, message in findings],
            "ok": not broken,
        }
        out.write(as_json(report) + "\n")
        return 1 if broken else 0
    out.write("effective settings (highest precedence: argument > file > env > default):\n")
    for name, entry in settings.as_dict().items():
        if name == "problems":
            continue
        value = entry["value"]
        shown = ", ".join(value) + " (values hidden)" if name == "headers" and value else value
        where = entry["source"] + (f" ({entry['origin']})" if entry["origin"] else "")
        out.write(f"  {name:<27} {shown!s:<40} {where}\n")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(detected.items())) or "none (not in a pod)"
    out.write(f"\nkubernetes resource: {shown}\n")
    out.write(f"collector: {detail}\n")
    for level, message in findings:
        out.write(f"{level}: {message}\n")
    out.write("\n" + ("broken: see the errors above\n" if broken else "ok\n"))
    return 1 if broken else 0
