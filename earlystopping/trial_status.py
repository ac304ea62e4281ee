"""Marks a Katib Trial as early stopped: the Kubernetes side of ``SetTrialStatus(trial_name)``.

When a trial's early-stopping rules hold, Katib's metrics-collector sidecar kills the training and
calls ``SetTrialStatus`` on the early-stopping service. The service must then add this condition to
the status of the Trial custom resource (``kubeflow.org/v1beta1``, plural ``trials``, status
subresource) in the pod's own namespace::

    {"type": "EarlyStopped", "status": "True", "reason": "TrialEarlyStopped",
     "message": "Trial is early stopped",
     "lastUpdateTime": "2026-11-28T09:00:00Z", "lastTransitionTime": "2026-11-28T09:00:00Z"}

:class:`TrialStatusUpdater` does that with the official ``kubernetes`` client, as a
read-modify-write with optimistic concurrency:

1. ``GET /apis/kubeflow.org/v1beta1/namespaces/NS/trials/NAME/status``;
2. if the Trial already has an ``EarlyStopped`` condition with status ``"True"``, stop there
   (the call is idempotent: a retried ``SetTrialStatus`` adds no second condition);
3. otherwise ``PATCH`` the same path with ``Content-Type: application/merge-patch+json`` and the body
   ``{"metadata": {"resourceVersion": RV}, "status": {"conditions": [...existing..., NEW]}}``.
   A JSON merge patch replaces a list as a whole, hence the full list. ``resourceVersion`` is the
   one just read, so the API server answers 409 Conflict if anyone (typically Katib's trial
   controller) wrote the Trial in between; then the Trial is read again and the patch rebuilt, up
   to ``max_attempts`` times in all.

A non-True ``EarlyStopped`` condition, if one exists, is replaced rather than duplicated, and the new
condition always goes last: Katib's controller takes a Trial's *last* condition as its state, and
its own ``setCondition`` likewise removes the old condition of a type before appending the new one.

Errors are reported as the small exception classes below, which the gRPC layer maps to status
codes: :class:`TrialNotFound` (NOT_FOUND), :class:`Forbidden` (PERMISSION_DENIED) and
:class:`KubernetesError` (UNAVAILABLE; any other API error, a connection failure or timeout, or
conflicts on every attempt). All derive from :class:`TrialStatusError`.

No cluster: :meth:`TrialStatusUpdater.from_environment` returns ``None`` when neither the in-cluster
configuration nor a kubeconfig is available and the process is not in a pod. What ``SetTrialStatus``
does then (for example under ``katib-local``, where the runner itself records the trial as
EarlyStopped) is the caller's documented local behaviour. In a pod (``in_pod``: the caller sees
``KUBERNETES_SERVICE_HOST``), missing or broken credentials are an error (:class:`KubernetesError`),
never a silent success.

``kubernetes`` is imported only inside the functions that need it: importing it takes about 0.3 s
(and about 33 MiB), and the early-stopping server must report SERVING quickly. The tests pass with
kubernetes 31.0.0, 32.0.1, 35.0.0, 36.0.3 and 37.0.2, which all send ``application/merge-patch+json`` for a
dict body to the status subresource (no ``_content_type`` argument is passed: before 36 the client
rejects it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from katib_services.numbers import is_object_name

log = logging.getLogger(__name__)

GROUP = "kubeflow.org"
VERSION = "v1beta1"
PLURAL = "trials"

EARLY_STOPPED = "EarlyStopped"
REASON = "TrialEarlyStopped"
MESSAGE = "Trial is early stopped"

#: The file Kubernetes mounts into every pod with the pod's namespace.
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
#: Used when neither the service-account file nor the kubeconfig context names a namespace.
DEFAULT_NAMESPACE = "default"

#: What :meth:`TrialStatusUpdater.mark_early_stopped` returns.
UPDATED = "updated"
ALREADY_EARLY_STOPPED = "already early stopped"



class TrialStatusError(Exception):
    """Base class of the errors :class:`TrialStatusUpdater` raises."""


class TrialNotFound(TrialStatusError):
    """No Trial of that name exists in the namespace (HTTP 404, or a name no object can have)."""


class Forbidden(TrialStatusError):
    """The API server refused the service account access to the Trial (HTTP 403)."""


class KubernetesError(TrialStatusError):
    """Any other failure talking to the API server: an error status, no connection, a timeout, or
    a conflict on every attempt. Worth retrying later."""


def rfc3339_utc(moment: datetime) -> str:
    """``2026-11-28T09:00:00Z``: whole seconds in UTC, as Kubernetes writes ``metav1.Time``."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def early_stopped_condition(moment: datetime) -> dict[str, str]:
    """Katib's EarlyStopped Trial condition, stamped with ``moment``."""
    stamp = rfc3339_utc(moment)
    return {
        "type": EARLY_STOPPED,
        "status": "True",
        "reason": REASON,
        "message": MESSAGE,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
    }


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TrialStatusUpdater:
    """Adds Katib's EarlyStopped condition to Trials of one namespace.

    ``api`` is a ``kubernetes.client.CustomObjectsApi``. Usually built by :meth:`from_environment`.
    Safe to share between threads (each call does its own read-modify-write).
    """

    def __init__(
        self,
        api: Any,
        namespace: str,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.05,
        request_timeout: float = 30.0,
        clock: Callable[[], datetime] = _utc_now,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.api = api
        self.namespace = namespace
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.request_timeout = request_timeout
        self.clock = clock

    @classmethod
    def from_environment(
        cls,
        *,
        namespace_file: str = NAMESPACE_FILE,
        kubeconfig: str | None = None,
        in_pod: bool = False,
        **options: Any,
    ) -> TrialStatusUpdater | None:
        """An updater for the cluster this process runs in or is configured for, or ``None``.

        Configuration: the in-cluster service account (``load_incluster_config``); failing that, a
        kubeconfig (``kubeconfig`` if given, else ``$KUBECONFIG``, which may list several files
        separated by ``os.pathsep``, else ``~/.kube/config``). ``$KUBECONFIG`` is read at each call,
        not when ``kubernetes`` is first imported. When neither works, the reasons are logged and
        ``None`` is returned (the caller then applies its local behaviour), unless ``in_pod``:
        then :class:`KubernetesError` is raised with the reasons.

        Namespace: the first line of ``namespace_file`` (the pod's own namespace, as Katib
        assumes Trials live beside the suggestion pod); failing that, the namespace of the
        kubeconfig's current context; failing that, ``"default"``.

        ``options`` go to the constructor (``max_attempts``, ``backoff_seconds``,
        ``request_timeout``, ``clock``).
        """
        from kubernetes import client, config

        configuration = client.Configuration()
        context_namespace = None
        try:
            config.load_incluster_config(client_configuration=configuration)
            source = "in-cluster service account"
        except Exception as incluster_error:  # noqa: BLE001 - ConfigException outside a pod; a bad token file
            path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            try:
                config.load_kube_config(config_file=path, client_configuration=configuration, persist_config=False)
            except Exception as kubeconfig_error:  # noqa: BLE001 - missing (ConfigException), bad YAML, bad fields
                reasons = f"in-cluster: {incluster_error}; kubeconfig {path}: {kubeconfig_error}"
                if in_pod:
                    raise KubernetesError(
                        "this pod has no usable Kubernetes credentials to update the Trial's status "
                        f"({reasons}); mount the service account token Katib gives the suggestion pod"
                    ) from None
                log.info("no Kubernetes API server configured (%s)", reasons)
                return None
            source = f"kubeconfig {path}"
            try:
                _, active = config.list_kube_config_contexts(config_file=path)
                context_namespace = ((active or {}).get("context") or {}).get("namespace")
            except Exception:  # noqa: BLE001 - the loader accepted the file; a namespace is only a fallback
                context_namespace = None

        namespace = _read_namespace(namespace_file) or context_namespace or DEFAULT_NAMESPACE
        log.info("Trial status updates go to namespace %r via %s (%s)", namespace, configuration.host, source)
        api = client.CustomObjectsApi(client.ApiClient(configuration))
        return cls(api, namespace, **options)

    def mark_early_stopped(self, trial_name: str) -> str:
        """Adds the EarlyStopped condition to Trial ``trial_name``; returns what it did.

        Returns :data:`UPDATED` after a successful PATCH, or :data:`ALREADY_EARLY_STOPPED` when the
        Trial already had an EarlyStopped condition with status True (nothing is written).
        Blocks until the API server has answered. Raises :class:`TrialNotFound`,
        :class:`Forbidden` or :class:`KubernetesError`.
        """
        if not is_object_name(trial_name):
            raise TrialNotFound(
                f"no Trial named {trial_name!r} can exist: a Trial name is a lowercase DNS-1123 subdomain"
            )
        for attempt in range(1, self.max_attempts + 1):
            trial = self._call("read", trial_name, self.api.get_namespaced_custom_object_status)
            conditions = _conditions(trial, trial_name)
            if any(_is_early_stopped(c) for c in conditions):
                log.info("Trial %s is already early stopped", self._where(trial_name))
                return ALREADY_EARLY_STOPPED
            version = (trial.get("metadata") or {}).get("resourceVersion")
            if not version:
                raise KubernetesError(
                    f"the API server returned Trial {self._where(trial_name)} without a resourceVersion"
                )
            kept = [c for c in conditions if not (isinstance(c, dict) and c.get("type") == EARLY_STOPPED)]
            body = {
                "metadata": {"resourceVersion": version},
                "status": {"conditions": kept + [early_stopped_condition(self.clock())]},
            }
            try:
                self._call("update", trial_name, self.api.patch_namespaced_custom_object_status, body)
            except _Conflict:
                log.info(
                    "Trial %s changed since resourceVersion %s (attempt %d of %d); reading it again",
                    self._where(trial_name),
                    version,
                    attempt,
                    self.max_attempts,
                )
                if attempt < self.max_attempts:
                    time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
                continue
            log.info("Trial %s marked %s", self._where(trial_name), EARLY_STOPPED)
            return UPDATED
        raise KubernetesError(
            f"Trial {self._where(trial_name)} kept changing while being marked {EARLY_STOPPED}: "
            f"{self.max_attempts} attempts ended in 409 Conflict"
        )

    # -- helpers -------------------------------------------------------------------------------

    def _where(self, trial_name: str) -> str:
        return f"{self.namespace}/{trial_name}"

    def _call(self, action: str, trial_name: str, method: Callable[..., Any], *body: Any) -> Any:
        """One API request; errors become this module's exceptions (409 becomes ``_Conflict``)."""
        from kubernetes.client.exceptions import ApiException

        try:
            return method(
                GROUP, VERSION, self.namespace, PLURAL, trial_name, *body, _request_timeout=self.request_timeout
            )
        except ApiException as error:
            status = error.status
            detail = _api_message(error)
            where = self._where(trial_name)
            if status == 404:
                raise TrialNotFound(f"Trial {where} not found: {detail}") from error
            if status == 403:
                raise Forbidden(
                    f"not allowed to {action} the status of Trial {where}: {detail}. The pod's service account "
                    "needs get and patch on trials/status in group kubeflow.org (Katib grants them when the "
                    "Suggestion has earlyStopping)"
                ) from error
            if status == 409:
                raise _Conflict(detail) from error
            raise KubernetesError(f"could not {action} the status of Trial {where}: HTTP {status}: {detail}") from error
        except Exception as error:  # urllib3 connection errors and timeouts, bad responses
            raise KubernetesError(
                f"could not {action} the status of Trial {self._where(trial_name)}: {type(error).__name__}: {error}"
            ) from error


class _Conflict(Exception):
    """HTTP 409 on the PATCH: the Trial changed after it was read."""


def _read_namespace(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().strip() or None
    except OSError:
        return None


def _conditions(trial: Any, trial_name: str) -> list[Any]:
    if not isinstance(trial, dict):
        raise KubernetesError(f"the API server returned a non-object for Trial {trial_name}: {type(trial).__name__}")
    status = trial.get("status") or {}
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return list(conditions) if isinstance(conditions, list) else []


def _is_early_stopped(condition: Any) -> bool:
    return isinstance(condition, dict) and condition.get("type") == EARLY_STOPPED and condition.get("status") == "True"


def _api_message(error: Any) -> str:
    """The ``message`` of the API server's Status object, else the HTTP reason."""
    import json

    body = getattr(error, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError, TypeError):
            message = None
        if message:
            return str(message)
    return str(getattr(error, "reason", None) or "no details")
