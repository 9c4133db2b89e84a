"""What `servetune run` may do on a cluster, asked before it changes anything.

Each permission is one SelfSubjectAccessReview (authorization.k8s.io/v1, open to every authenticated user):
the API server answers whether the kubeconfig's user may do a verb on a resource, and sometimes why not.
`missing_access` returns what is refused, split into what the run cannot do without (the Role in the
README) and what it can (events, pod metrics: it carries on with less); listing nodes at the cluster scope
is needed only to find the NodePort's address when no `--url` is given. A cluster that does not answer the
review (an old or locked-down server) is not stopped here: the first refused request says the same, later.
"""

from __future__ import annotations

from dataclasses import dataclass

from servetune.deploy.kubernetes import KubernetesCluster
from servetune.deploy.kubernetes_client import KubernetesError, kubernetes_client


@dataclass(frozen=True)
class Access:
    verb: str
    group: str
    resource: str
    cluster_scope: bool = False

    def __str__(self) -> str:
        resource = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {resource}" + (" at the cluster scope" if self.cluster_scope else "")


RUN_NEEDS = [Access(verb, group, resource) for group, resource in (("apps", "deployments"), ("", "services"),
             ("autoscaling", "horizontalpodautoscalers")) for verb in ("get", "create", "patch", "delete")]
RUN_NEEDS.append(Access("list", "", "pods"))
RUN_WOULD_USE = [Access("list", "", "events"), Access("list", "metrics.k8s.io", "pods")]
NODES = Access("list", "", "nodes", cluster_scope=True)
# `tune calibrate --backend kubernetes`: a Deployment and its Service, their pods, and the pods' usage, which
# is what it measures (no autoscaler)
CALIBRATE_NEEDS = [*(a for a in RUN_NEEDS if a.resource != "horizontalpodautoscalers"),
                   Access("list", "metrics.k8s.io", "pods")]


@dataclass
class Refusal:
    access: Access
    reason: str  # the API server's, may be empty

    def __str__(self) -> str:
        return f"{self.access}" + (f" ({self.reason})" if self.reason else "")


def review(cluster: KubernetesCluster, access: Access, namespace: str) -> Refusal | None:
    """One SelfSubjectAccessReview: None when allowed, else the refusal and the server's reason."""
    api = kubernetes_client().AuthorizationV1Api(cluster.api_client)
    attributes = {"verb": access.verb, "group": access.group, "resource": access.resource}
    if not access.cluster_scope:
        attributes["namespace"] = namespace
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes}}
    answer = cluster.request(f"review access to {access}", api.create_self_subject_access_review, body)
    status = answer.status
    if status is not None and status.allowed:
        return None
    reason = (status.reason or status.evaluation_error or "") if status is not None else ""
    return Refusal(access, reason)


def missing_access(cluster: KubernetesCluster, namespace: str, needs_nodes: bool, needs: list[Access] = RUN_NEEDS,
                   would_use: list[Access] = RUN_WOULD_USE) -> tuple[list[Refusal], list[Refusal]]:
    """(refused and needed, refused and only useful); both empty when the server does not answer reviews."""
    needed = [*needs, *([NODES] if needs_nodes else [])]
    useful = [access for access in would_use if access not in needed]
    try:
        refused = [r for access in [*needed, *useful] if (r := review(cluster, access, namespace))]
    except KubernetesError:
        return [], []
    return [r for r in refused if r.access in needed], [r for r in refused if r.access not in needed]


def refused_needs(needed: list[Refusal], namespace: str, node_port: int, who: str = "a run") -> KubernetesError:
    """The error for what the kubeconfig's user may not do and the command needs: the permissions, in words."""
    problems = []
    namespaced = [str(r) for r in needed if r.access != NODES]
    if namespaced:
        problems.append(f"may not {', '.join(namespaced)} in namespace {namespace} (the README's Permissions "
                        f"section has the Role {who} needs)")
    if nodes := [r for r in needed if r.access == NODES]:
        problems.append(f"may not {nodes[0]}, which finds a node's address for the NodePort: pass --url "
                        f"http://NODE_ADDRESS:{node_port}")
    return KubernetesError("the kubeconfig's user " + "; and ".join(problems))
