"""``pki.certificate-names``: validate rejects exactly the names the PKI cannot issue.

Host name prefixes, the site name, the site domain and the gateway's API host name end up in
certificate subjects and SANs (``llmcluster.plan.pki``); X.509 caps a common name at 64 characters
and DNS a label at 63, a name at 253. ``validate`` used to pass such stacks and ``plan`` then
crashed issuing the certificates. The property: for any lengths, ``validate`` says valid iff the
offline plan (which issues real certificates) succeeds.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llmcluster.errors import SpecError
from llmcluster.spec import parse_stack_file
from llmcluster.validate import check_spec, load_stack_file
from tests.conftest import STACKS

LAB = STACKS / "Pulumi.lab.yaml"


def _name(n: int, first: str = "h") -> str:
    """A DNS label of ``n`` characters."""
    return (first + "x" * (n - 1))[:n]


def _domain(label: int, labels: int) -> str:
    return ".".join([_name(label, "d")] * labels) + ".internal"


def _overrides(prefix: int, site: int, domain_label: int, domain_labels: int, api: int) -> list[str]:
    return [f"pools.gpu.hostname_prefix={_name(prefix)}", f"site.name={_name(site, 's')}",
            f"site.domain={_domain(domain_label, domain_labels)}",
            f"serving.gateway.hostname={_name(api, 'a')}"]


def _findings(overrides: list[str]) -> list:
    return [f for f in check_spec(parse_stack_file(LAB, overrides)) if f.rule == "pki.certificate-names"]


@pytest.mark.parametrize(("override", "path"), [
    (f"pools.gpu.hostname_prefix={_name(60)}", "pools.gpu.hostname_prefix"),
    (f"site.name={_name(45, 's')}", "site.name"),
    (f"site.domain={_domain(50, 1)}", "site.domain"),
    (f"serving.gateway.hostname={_name(50, 'a')}", "serving.gateway.hostname"),
])
def test_each_name_source_is_blamed_on_its_key(override, path):
    with pytest.raises(SpecError) as exc:
        load_stack_file(LAB, [override])
    at = [p for p in exc.value.problems if p.path == path]
    assert at and exc.value.rules[at[0]] == "pki.certificate-names", exc.value.problems
    assert "over the" in at[0].message and "at most" in at[0].message


def test_the_limits_are_exact():
    # gpu-01.lab.llmcluster.internal: a prefix of 37 makes the common name exactly 64 characters.
    assert not _findings([f"pools.gpu.hostname_prefix={_name(37)}"])
    assert [f.problem.path for f in _findings([f"pools.gpu.hostname_prefix={_name(38)}"])] == \
        ["pools.gpu.hostname_prefix"]
    # '<site> llmcluster Intermediate CA': 37 characters of site name fit, 38 do not.
    assert not _findings([f"site.name={_name(37, 's')}"])
    assert _findings([f"site.name={_name(38, 's')}"])


def test_the_advice_fixes_it():
    """Shortening the key to the length the message names makes the stack valid."""
    import re

    overrides = [f"pools.gpu.hostname_prefix={_name(55)}"]
    (finding,) = _findings(overrides)
    n = int(re.search(r"at most (\d+) character", finding.problem.message).group(1))
    assert not _findings([f"pools.gpu.hostname_prefix={_name(n)}"])


def test_shipped_stacks_are_unaffected():
    for path in sorted(STACKS.glob("Pulumi.*.yaml")):
        assert not [f for f in check_spec(parse_stack_file(path)) if f.rule == "pki.certificate-names"]


LABEL = st.integers(min_value=1, max_value=63)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=LABEL, site=LABEL, domain_label=LABEL, domain_labels=st.integers(1, 3), api=LABEL)
@example(prefix=37, site=3, domain_label=3, domain_labels=2, api=3)    # just fits
@example(prefix=38, site=3, domain_label=3, domain_labels=2, api=3)    # one over
@example(prefix=63, site=63, domain_label=63, domain_labels=3, api=63)  # everything over
@example(prefix=3, site=45, domain_label=3, domain_labels=1, api=3)
@example(prefix=3, site=3, domain_label=47, domain_labels=1, api=3)
@example(prefix=3, site=3, domain_label=3, domain_labels=1, api=51)
def test_validate_says_valid_iff_plan_succeeds(prefix, site, domain_label, domain_labels, api):
    from llmcluster.offline import evaluate

    spec = parse_stack_file(LAB, _overrides(prefix, site, domain_label, domain_labels, api))
    findings = check_spec(spec)
    assert all(f.rule == "pki.certificate-names" for f in findings), findings
    try:
        evaluate(spec)
        planned = True
    except Exception:  # whatever the program raises issuing an impossible certificate
        planned = False
    assert (not findings) == planned, findings
