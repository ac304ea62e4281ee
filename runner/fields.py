"""The fields of Katib's Experiment (kubeflow.org/v1beta1), for strict field validation.

kubectl with strict field validation refuses an Experiment with a field the CRD does not declare;
`katib-local` does the same before any trial, naming the field's full path and the closest known
name ("spec.maxTrialCont: unknown field; did you mean maxTrialCount?"). The schema follows
Katib v0.19's Go types (experiment_types.go and common_types.go in pkg/apis/controller). Free-form
parts (the trial Job, status, label maps, the HTTP source of a collector) are not checked inside,
as the CRD preserves unknown fields there.

`IGNORED` lists what Katib uses and a local run does not: they are reported once, as a notice.
"""

from __future__ import annotations

import difflib
from typing import Any

ANY = None  # a free-form value: not checked inside

_SETTINGS = [{"name": ANY, "value": ANY}]
_PARAMETER = {
    "name": ANY,
    "parameterType": ANY,
    "feasibleSpace": {"min": ANY, "max": ANY, "list": ANY, "step": ANY, "distribution": ANY},
}
EXPERIMENT: dict[str, Any] = {
    "apiVersion": ANY,
    "kind": ANY,
    "metadata": {
        key: ANY
        for key in (
            "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
            "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
            "managedFields", "selfLink",
        )
    },
    "spec": {
        "parameters": [_PARAMETER],
        "objective": {
            "type": ANY,
            "goal": ANY,
            "objectiveMetricName": ANY,
            "additionalMetricNames": ANY,
            "metricStrategies": [{"name": ANY, "value": ANY}],
        },
        "algorithm": {"algorithmName": ANY, "algorithmSettings": _SETTINGS},
        "earlyStopping": {"algorithmName": ANY, "algorithmSettings": _SETTINGS},
        "trialTemplate": {
            "retain": ANY,
            "trialSpec": ANY,
            "configMap": {"configMapName": ANY, "configMapNamespace": ANY, "templatePath": ANY},
            "trialParameters": [{"name": ANY, "description": ANY, "reference": ANY}],
            "primaryPodLabels": ANY,
            "primaryContainerName": ANY,
            "successCondition": ANY,
            "failureCondition": ANY,
        },
        "parallelTrialCount": ANY,
        "maxTrialCount": ANY,
        "maxFailedTrialCount": ANY,
        "metricsCollectorSpec": {
            "source": {
                "httpGet": ANY,
                "fileSystemPath": {"path": ANY, "kind": ANY, "format": ANY},
                "filter": {"metricsFormat": ANY},
            },
            "collector": {"kind": ANY, "customCollector": ANY},
        },
        "nasConfig": {
            "graphConfig": {"numLayers": ANY, "inputSizes": ANY, "outputSizes": ANY},
            "operations": [{"operationType": ANY, "parameters": [_PARAMETER]}],
        },
        "resumePolicy": ANY,
    },
    "status": ANY,
}

IGNORED = {
    "spec.resumePolicy": "a local run resumes with --resume",
    "spec.trialTemplate.retain": "trial processes are not kept after they end",
    "spec.trialTemplate.primaryPodLabels": "there are no pods",
    "spec.trialTemplate.successCondition": "a trial succeeds when its process exits 0",
    "spec.trialTemplate.failureCondition": "a trial fails when its process exits non-zero",
}


def unknown_fields(document: Any, schema: Any = EXPERIMENT, path: str = "") -> list[str]:
    """A message per field of `document` that `schema` does not declare, with the closest name."""
    problems: list[str] = []
    if schema is ANY:
        return problems
    if isinstance(schema, list):
        if isinstance(document, list):
            for i, item in enumerate(document):
                problems += unknown_fields(item, schema[0], f"{path}[{i}]")
        return problems
    if not isinstance(document, dict):
        return problems  # a wrong type is reported by the reader of that field
    for key, value in document.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            close = close or [k for k in schema if len(str(key)) >= 3 and k.lower().startswith(str(key).lower())][:1]
            hint = f"; did you mean {close[0]}?" if close else f"; the known fields here are: {', '.join(schema)}"
            problems.append(f"{where}: unknown field{hint}")
        else:
            problems += unknown_fields(value, schema[key], where)
    return problems


def ignored_fields(document: dict) -> list[str]:
    """The fields Katib uses that are set in `document` and a local run ignores, each with why."""
    out = []
    for dotted, why in IGNORED.items():
        node: Any = document
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node not in (None, "", {}, [], False):
            out.append(f"{dotted} ({why})")
    return out
