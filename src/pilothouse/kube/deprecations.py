"""Deprecated APIs a cluster's clients still request, as the API server itself counts them.

Every kube-apiserver exports ``apiserver_requested_deprecated_apis{group, version,
resource, subresource, removed_release}`` (1 for each deprecated API version a
client has requested since the server started). The upgrade planner reads it
from ``/metrics``; prometheus-client's text parser does the parsing.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from pilothouse.kube import client as kube_client
from pilothouse.kube.credentials import ClusterCredentials

METRIC = "apiserver_requested_deprecated_apis"


@dataclass(frozen=True)
class RequestedDeprecatedApi:
    group: str
    version: str
    resource: str
    removed_release: str  # "1.37" style, "" when no removal is scheduled


def parse_requested(metrics_text: str) -> list[RequestedDeprecatedApi]:
    """The deprecated APIs in an API server's ``/metrics`` text, sorted, without duplicates."""
    found: set[RequestedDeprecatedApi] = set()
    for family in text_string_to_metric_families(metrics_text):
        if family.name != METRIC:
            continue
        for sample in family.samples:
            if sample.value <= 0:
                continue
            labels = sample.labels
            found.add(
                RequestedDeprecatedApi(
                    group=labels.get("group", ""),
                    version=labels.get("version", ""),
                    resource=labels.get("resource", ""),
                    removed_release=labels.get("removed_release", ""),
                )
            )
    return sorted(found, key=lambda a: (a.group, a.version, a.resource))


async def requested_deprecated_apis(creds: ClusterCredentials) -> list[RequestedDeprecatedApi]:
    return parse_requested(await kube_client.get_text(creds, "/metrics", timeout=15.0))
