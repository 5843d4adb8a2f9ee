"""Placement constraints: Swarm's grammar, its error texts, and its matching rules."""

from __future__ import annotations

import pytest
from test_scheduler_helpers import node

from swarmkit_py.manager.scheduler import (
    ConstraintError,
    node_matches,
    parse_constraint,
    parse_constraints,
    validate_constraints,
)


def matches(expr: str, n) -> bool:
    return node_matches(parse_constraints([expr]), n)


class TestParse:
    def test_operators_and_spaces(self):
        c = parse_constraint("  node.labels.zone  ==  a ")
        assert (c.key, c.op, c.value, c.attr, c.label) == (
            "node.labels.zone",
            "==",
            "a",
            "node.labels",
            "zone",
        )
        c = parse_constraint("node.role!=manager")
        assert (c.op, c.value, c.attr) == ("!=", "manager", "node.role")

    def test_prefix_is_case_insensitive_label_name_is_kept(self):
        c = parse_constraint("Node.Labels.Zone==a")
        assert (c.attr, c.label) == ("node.labels", "Zone")
        c = parse_constraint("ENGINE.labels.storage==ssd")
        assert (c.attr, c.label) == ("engine.labels", "storage")

    @pytest.mark.parametrize(
        "expr, message",
        [
            ("node.labels.zone=a", "constraint expected one operator from ==, !="),
            ("node.labels.zone", "constraint expected one operator from ==, !="),
            ("==a", "key '' is invalid"),
            ("1zone==a", "key '1zone' is invalid"),
            ("node.labels.zone==", "value '' is invalid"),
            ("node.labels.zone==a>b", "value 'a>b' is invalid"),
            ("node.labels.zone==a==b", "value 'a==b' is invalid"),
            ("node.labels.zone!=a!=b", "value 'a!=b' is invalid"),
        ],
    )
    def test_swarm_syntax_errors(self, expr, message):
        with pytest.raises(ConstraintError) as err:
            parse_constraint(expr)
        assert str(err.value) == message

    @pytest.mark.parametrize(
        "expr", ["node.label.zone==a", "node.labels.==a", "zone==a", "node.name==x"]
    )
    def test_unknown_keys_are_refused_not_silently_unmatched(self, expr):
        with pytest.raises(ConstraintError, match="is invalid: expected node.id"):
            parse_constraint(expr)

    def test_node_ip_needs_an_address(self):
        with pytest.raises(ConstraintError, match="node.ip needs an address"):
            parse_constraint("node.ip==notanaddress")

    def test_validate_constraints_is_what_the_api_calls(self):
        validate_constraints(None)
        validate_constraints([])
        validate_constraints(
            ["node.role==worker", "node.labels.zone != b", "engine.labels.disk==ssd"]
        )
        with pytest.raises(ConstraintError, match="key 'node.labels. zone' is invalid"):
            validate_constraints(["node.role==worker", "node.labels. zone==a"])
        assert issubclass(ConstraintError, ValueError)


class TestMatch:
    n = node(
        "n1",
        hostname="web-1",
        labels={"zone": "A", "Tier": "front"},
        engine_labels={"disk": "ssd"},
        role="manager",
        os="linux",
        arch="aarch64",
        addr="10.1.2.3:2377",
    )

    @pytest.mark.parametrize(
        "expr, expected",
        [
            ("node.id==n1", True),
            ("node.id!=n1", False),
            ("node.hostname==web-1", True),
            ("node.hostname==WEB-1", True),  # values compare case-insensitively (EqualFold)
            ("node.role==manager", True),
            ("node.role==worker", False),
            ("node.role!=worker", True),
            ("node.platform.os==linux", True),
            ("node.platform.arch==aarch64", True),
            ("node.platform.arch==x86_64", False),
            ("node.labels.zone==a", True),
            ("node.labels.zone!=a", False),
            ("node.labels.Tier==front", True),
            ("node.labels.tier==front", False),  # the label name itself is case-sensitive
            ("node.labels.missing==x", False),
            ("node.labels.missing!=x", True),  # an absent label is "", which != matches
            ("engine.labels.disk==ssd", True),
            ("engine.labels.disk!=ssd", False),
            ("engine.labels.gpu!=yes", True),
            ("node.ip==10.1.2.3", True),
            ("node.ip==10.1.0.0/16", True),
            ("node.ip!=10.1.0.0/16", False),
            ("node.ip==192.168.0.0/16", False),
        ],
    )
    def test_each_key(self, expr, expected):
        assert matches(expr, self.n) is expected

    def test_all_constraints_must_hold(self):
        assert node_matches(
            parse_constraints(["node.labels.zone==a", "node.role==manager"]), self.n
        )
        assert not node_matches(
            parse_constraints(["node.labels.zone==a", "node.role==worker"]), self.n
        )

    def test_node_without_description_or_labels(self):
        bare = node("n2")
        bare.description = None
        assert matches("node.hostname!=web-1", bare)
        assert not matches("node.hostname==web-1", bare)
        assert matches("engine.labels.disk!=ssd", bare)
        assert not matches("node.platform.os==linux", bare)
        assert matches("node.ip!=10.0.0.0/8", bare)  # no address: == fails, != holds
        assert not matches("node.ip==10.0.0.0/8", bare)

    def test_role_falls_back_to_spec_before_the_role_manager_writes_it(self):
        n = node("n3", role="manager")
        n.role = None
        assert matches("node.role==manager", n)
