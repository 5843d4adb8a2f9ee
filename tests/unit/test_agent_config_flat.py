"""agent.yml as the deploy role writes it (`key: scalar` lines) is read without PyYAML (issue 13:
its import is ~30-45 ms of CPU on every agent start), to exactly what yaml.safe_load makes of
it; anything else is left to yaml, so every file reads as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmkit_py.agent.config import AgentConfig, read_flat

ROLE_FILE = """\
# /etc/swarmkit-py/agent.yml -- rendered by swarmkit-py deploy (roles/agent) for h7.
# Local edits are overwritten by the next bootstrap; change the inventory instead.
state_dir: /var/lib/swarmkit-py
listen_addr: "10.77.37.17:2377"
advertise_addr: "10.77.37.17:2377"
api_listen: "10.77.37.17:2376"
api_socket: /run/swarmkit-py/docker.sock
metrics_listen: "10.77.37.17:9323"
hostname: h7
log_level: INFO
heartbeat_period_s: 1.0
overlay_dataplane: true
"""

KEYS = ["state_dir", "hostname", "log_level", "heartbeat_period_s", "on", "yes", "null", "True", "x1", "_k",
        "Key", "a-b", "a b", "<<", "", "k"]
VALUES = ["/var/lib/swarmkit-py", "INFO", "h7", "true", "false", "True", "yes", "no", "on", "Off", "null", "~", "y",
          "N", "1", "0", "-0", "-12", "017", "0x1f", "1_000", "1.0", "-0.5", "1.", ".5", "1e3", "1.5e3", ".inf",
          "-.inf", ".nan", "12:30", "2001-12-14", '"10.0.0.1:2377"', '""', '"a#b"', '"with \\" esc"', '"a\\tb"',
          "'single'", "a:b", "a: b", "a #c", "#c", "- x", "[1]", "{a: 1}", "&x", "*x", "!!str 1", "|", ">", "%x",
          "@x", "`x", "swarmkit-py", "a..b", "Infinity", "NaN", "e5", "10.77.37.17", "", " x", "x ", "\t"]
FLAT_KEYS = ["state_dir", "hostname", "x1", "_k", "k"]  # what read_flat reads itself, tricky included
FLAT_VALUES = ["/var/lib/swarmkit-py", "INFO", "h7", "true", "false", "1", "0", "-0", "-12", "1.0", "-0.5", "0.50",
               '"10.0.0.1:2377"', '""', '"a#b"', '"  sp  "', "swarmkit-py", "a..b", "Infinity", "NaN", "e5", "a.", "/"]
FLAT_LINE = st.builds(lambda k, v: f"{k}: {v}", st.sampled_from(FLAT_KEYS), st.sampled_from(FLAT_VALUES))
LINES = st.one_of(
    FLAT_LINE, FLAT_LINE, FLAT_LINE, st.just("# a comment"), st.just(""),
    st.builds(lambda k, v: f"{k}: {v}", st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.sampled_from(["", "# a comment", "  # indented comment", "   ", "---", "key:", "key:value", "k:  two",
                     "  nested: 1", "\ufeffbom: 1", "# form\x0cfeed", "# next\x85line", "# caf\u00e9",
                     "k: v\rk2: w", "# \u2028 k: 1"]),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(LINES, max_size=8), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_read_flat_is_yaml_where_it_reads_at_all(lines, eol, final_eol):
    text = eol.join(lines) + (eol if final_eol else "")
    flat = read_flat(text)
    if flat is None:
        return
    assert flat == (yaml.safe_load(text) or {})
    assert all(type(flat[k]) is type(v) for k, v in (yaml.safe_load(text) or {}).items())  # 1 vs 1.0 vs True


def test_the_role_s_file_is_read_without_yaml():
    assert read_flat(ROLE_FILE) == yaml.safe_load(ROLE_FILE)


@pytest.mark.parametrize("text", ["state_dir: /x\nraft:\n  tick_s: 0.1\n", "hostname: on\n", "log_level: INFO # c\n"])
def test_anything_else_is_left_to_yaml(text):
    assert read_flat(text) is None


def test_load_reads_the_same_config_and_refuses_as_before(tmp_path):
    p = tmp_path / "agent.yml"
    p.write_text(ROLE_FILE)
    assert AgentConfig.load(p) == AgentConfig.model_validate(yaml.safe_load(ROLE_FILE))
    p.write_text("state_dir: /x\nbogus_key: 1\n")
    with pytest.raises(SystemExit, match=f"agent config {p} is invalid: bogus_key"):
        AgentConfig.load(p)
    p.write_text("state_dir: [unclosed\n")
    with pytest.raises(SystemExit, match=f"agent config {p} is not valid YAML"):
        AgentConfig.load(p)
    with pytest.raises(SystemExit, match="does not exist"):
        AgentConfig.load(Path(tmp_path / "missing.yml"))
