"""The connection to a Kubernetes API server, shared by the deploy commands and the resource monitor.

Where the configuration comes from, in kubectl's order: `--kubeconfig FILE`; else every file listed in
$KUBECONFIG (merged, as kubectl merges them); else, when $KUBECONFIG is unset, ~/.kube/config; else, inside
a pod, the service account. When none is found the error names every place looked at.
The namespace is the context's (or the service account's); the deploy commands use their spec's instead.

The `kubernetes` client is an optional extra (`pip install 'servetune[kubernetes]'`), imported here only.
Every failure a user can meet is a `KubernetesError` whose message says what happened.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servetune.errors import FailedError

IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_KUBECONFIG = "~/.kube/config"
RETRIES = 1  # one retry of a dropped connection; every request servetune sends is idempotent


class KubernetesError(FailedError):
    """A failure to report to the user as it is: the message says what happened and what to do."""


class NotFound(KubernetesError):
    """HTTP 404: callers that expect an object may be absent catch this one."""


class AccessRefused(KubernetesError):
    """HTTP 401 or 403: the kubeconfig's user is unknown or may not do this."""


@dataclass
class Connection:
    api_client: Any  # kubernetes.client.ApiClient
    namespace: str  # the context's namespace, the service account's, or "default"
    host: str

    def close(self) -> None:
        self.api_client.close()


def kubernetes_client() -> Any:
    """The `kubernetes.client` module, or a KubernetesError that says how to install it."""
    try:
        from kubernetes import client
    except ImportError:
        raise KubernetesError(
            "the Kubernetes client is not installed: pip install 'servetune[kubernetes]'"
        ) from None
    return client


def connect(kubeconfig: str | Path | None = None, context: str | None = None) -> Connection:
    """A connection from `kubeconfig` (else $KUBECONFIG's files, else ~/.kube/config) or in-cluster."""
    client = kubernetes_client()
    from kubernetes import config

    configuration = client.Configuration()
    configuration.retries = RETRIES
    if kubeconfig is not None:
        source = str(Path(kubeconfig).expanduser())
        if not Path(source).is_file():
            raise KubernetesError(f"kubeconfig {kubeconfig}: no such file")
    else:
        listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        found = [str(Path(p).expanduser()) for p in listed if Path(p).expanduser().is_file()]
        default = Path(DEFAULT_KUBECONFIG).expanduser()
        if not listed and default.is_file():  # kubectl reads ~/.kube/config only when $KUBECONFIG is unset
            found = [str(default)]
        if not found:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                return in_cluster(client, config, configuration)
            raise KubernetesError(f"no kubeconfig found: {kubeconfig_places(listed, default)}, and this is not a "
                                  "pod in a cluster ($KUBERNETES_SERVICE_HOST is unset); pass --kubeconfig FILE")
        source = os.pathsep.join(found)  # the client merges the files as kubectl does
    try:
        config.load_kube_config(
            config_file=source, context=context, client_configuration=configuration, persist_config=False
        )
        contexts, active = config.list_kube_config_contexts(config_file=source)
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as error:
        raise KubernetesError(f"kubeconfig {source}: {error or 'unusable'}") from None
    if context is not None:
        active = next((c for c in contexts if c["name"] == context), None)
    namespace = ((active or {}).get("context") or {}).get("namespace") or "default"
    return Connection(client.ApiClient(configuration), namespace, configuration.host)


def kubeconfig_places(listed: list[str], default: Path) -> str:
    """Where a kubeconfig was looked for, in kubectl's order, and what was there."""
    if listed:
        return f"$KUBECONFIG lists {', '.join(listed)}, and none of them is a file"
    return f"$KUBECONFIG is unset and {default} (kubectl's {DEFAULT_KUBECONFIG}) does not exist"


def in_cluster(client: Any, config: Any, configuration: Any) -> Connection:
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException as error:
        raise KubernetesError(f"in-cluster configuration: {error}") from None
    namespace = "default"
    if IN_CLUSTER_NAMESPACE_FILE.is_file():
        namespace = IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or namespace
    return Connection(client.ApiClient(configuration), namespace, configuration.host)


def call(host: str, what: str, method: Any, *args: Any, timeout: Any = (5, 30), **kwargs: Any) -> Any:
    """Call one client method; turn every failure into a KubernetesError that says what it was."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return method(*args, _request_timeout=timeout, **kwargs)
    except ApiException as error:
        if not error.status:  # no HTTP answer at all, e.g. a TLS failure
            raise KubernetesError(f"cannot reach the Kubernetes API server at {host}: {error.reason}") from None
        raise api_error(what, error.status, error.reason, error.body) from None
    except (HTTPError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise KubernetesError(f"cannot reach the Kubernetes API server at {host}: {reason}") from None
    except ValueError as error:  # an answer the client's models cannot read
        raise KubernetesError(f"{what}: unexpected answer from {host}: {error}") from None


def api_error(what: str, status: int, reason: str | None, body: str | bytes | None) -> KubernetesError:
    """The API server's own Status message, with the HTTP status translated into what it means."""
    message = reason or ""
    try:
        message = json.loads(body).get("message") or message
    except (TypeError, ValueError, AttributeError):
        pass
    if status == 401:
        return AccessRefused(f"{what}: unauthorized: the API server rejected the kubeconfig's credentials ({message})")
    if status == 403:
        return AccessRefused(f"{what}: forbidden: {message}")
    if status == 404:
        return NotFound(f"{what}: not found: {message}")
    if status == 409:  # the name exists already, or the object changed since it was read
        return KubernetesError(f"{what}: conflict: {message}")
    if status == 422:  # a field's value refused, or a port already allocated
        return KubernetesError(f"{what}: invalid: {message}")
    return KubernetesError(f"{what}: HTTP {status}: {message}")
