"""Instance metadata: IMDSv2 (session tokens) required, PUT response hop limit 1, on templates and instances."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llmcluster.policy.core import Context, as_int, rule

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"


@rule("ec2.imdsv2-hop-limit-1",
      "Launch templates and instances require IMDSv2 (httpTokens required) with a PUT response hop limit of 1",
      LAUNCH_TEMPLATE, INSTANCE)
def imdsv2(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    md = props.get("metadataOptions")
    if md is None:
        where = " on the instance itself, not only its launch template" \
            if resource_type == INSTANCE and props.get("launchTemplate") else ""
        yield "metadataOptions", "missing: set httpTokens 'required' and httpPutResponseHopLimit 1 (AWS's " \
                                 f"default allows IMDSv1){where}"
        return
    if not isinstance(md, Mapping):
        yield "metadataOptions", f"{md!r} is not a map: cannot judge it"
        return
    if md.get("httpEndpoint") == "disabled":
        return  # no metadata service at all: nothing to steal credentials from
    if md.get("httpTokens") != "required":
        yield "metadataOptions.httpTokens", f"{md.get('httpTokens')!r}: must be 'required' (IMDSv2 only)"
    hop = as_int(md.get("httpPutResponseHopLimit"))
    if hop != 1:
        yield "metadataOptions.httpPutResponseHopLimit", \
            f"{md.get('httpPutResponseHopLimit')!r}: must be 1 (a container on the node must not reach the " \
            "node's credentials)"
