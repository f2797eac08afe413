"""CrossGuard wrappers: one ResourceValidationPolicy per rule in `rules`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pulumi
from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from starling_policy import rules

PodRule = Callable[[Mapping[str, Any]], list[str]]


def current_stack(urn: str) -> str:
    """The stack being previewed or updated.

    The policy runtime configures `pulumi.get_stack()` from the engine's environment;
    the resource URN (`urn:pulumi:<stack>::<project>::...`) names it too, which keeps
    the rule working where the runtime was not configured.
    """
    stack = pulumi.get_stack()
    if stack:
        return stack
    prefix = "urn:pulumi:"
    if urn.startswith(prefix):
        return urn[len(prefix) :].split("::", 1)[0]
    return ""


def _pod_policy(name: str, description: str, rule: PodRule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        spec = rules.pod_spec(args.resource_type, args.props)
        if spec is None:
            return
        for message in rule(spec):
            report_violation(message, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate)


def _validate_kafka_listeners(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if not rules.is_strimzi_kafka(args.resource_type):
        return
    for message in rules.unauthenticated_kafka_listeners(args.props, current_stack(args.urn)):
        report_violation(message, None)


POLICIES: list[ResourceValidationPolicy] = [
    _pod_policy(
        "no-privileged-containers",
        "Containers must not run privileged: that is root on the node.",
        rules.privileged_containers,
    ),
    _pod_policy(
        "no-root-containers",
        "Containers must run as non-root (runAsNonRoot: true on the pod or container, no UID 0).",
        rules.root_containers,
    ),
    _pod_policy(
        "no-privilege-escalation",
        "Containers must set allowPrivilegeEscalation: false.",
        rules.privilege_escalation,
    ),
    _pod_policy(
        "resources-required",
        "Containers must set CPU and memory requests and limits.",
        rules.missing_resources,
    ),
    _pod_policy(
        "pinned-image-tags",
        "Images must carry a tag other than 'latest' (or a digest).",
        rules.unpinned_images,
    ),
    ResourceValidationPolicy(
        name="kafka-listeners-authenticated",
        description=(
            "Every Strimzi Kafka listener must require authentication outside the dev stack."
        ),
        validate=_validate_kafka_listeners,
    ),
]
