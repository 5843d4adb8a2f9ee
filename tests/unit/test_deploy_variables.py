"""variables.render substitutes plain `{{ name }}` templates itself (a read-only command then
never imports jinja2): its answers must be jinja2's, and anything else must still go to jinja2."""

from __future__ import annotations

import sys

import jinja2
import pytest

from swarmkit_py.deploy import variables

VARS = {"dir": "/etc/swarmkit-py", "port": 2376, "on": True, "none": None, "lst": [1, "a"], "empty": ""}


@pytest.mark.parametrize("value", [
    "{{ dir }}/agent.yml", "{{dir}}", "{{   port }}:{{on}}", "x{{ none }}y{{ lst }}", "{{ empty }}",
    "no template at all", "{{ dir }}{{ dir }}",
    # not plain names: jinja2 renders them
    "{{ dir | upper }}", "{{ port + 1 }}", "{% if on %}yes{% endif %}", "{{ lst[1] }}",
])
def test_same_answer_as_jinja2(value):
    want = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(value).render(**VARS)
    assert variables.render(value, VARS) == want


def test_undefined_names_are_errors_either_way():
    with pytest.raises(variables.VariableError, match="'nope' is undefined"):
        variables.render("{{ dir }}/{{ nope }}", VARS)
    with pytest.raises(variables.VariableError, match="nope"):
        variables.render("{{ nope | upper }}", VARS)


def test_plain_templates_do_not_load_jinja2():
    import subprocess

    code = ("import sys\nfrom swarmkit_py.deploy import variables\n"
            "assert variables.render('{{ a }}/x', {'a': 1}) == '1/x'\nprint('jinja2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_filters_are_encoded_as_docker_expects():
    from swarmkit_py.engine import filters_query  # deploy/api.py's and the worker's

    assert filters_query(None) == {}
    assert filters_query({"service": "web", "desired-state": ["running", "ready"], "dangling": True}) == {
        "filters": '{"service": ["web"], "desired-state": ["running", "ready"], "dangling": ["true"]}'}


def test_role_arguments_are_compiled_once_and_render_per_host():
    """roles._expand: a role argument is compiled once per environment (every host and step
    used to compile it again), and still renders each host's own variables."""
    import jinja2

    from swarmkit_py.deploy import roles

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    assert roles._template(env, "{{ a }}") is roles._template(env, "{{ a }}")
    assert roles._template(jinja2.Environment(), "{{ a }}") is not roles._template(env, "{{ a }}")
    arg = {"x": ["{{ a }}-{{ b | upper }}", 3], "y": "plain"}
    assert roles._expand(env, arg, {"a": 1, "b": "q"}) == {"x": ["1-Q", 3], "y": "plain"}
    assert roles._expand(env, arg, {"a": 2, "b": "r"}) == {"x": ["2-R", 3], "y": "plain"}
    with pytest.raises(jinja2.UndefinedError):
        roles._expand(env, arg, {"a": 1})
