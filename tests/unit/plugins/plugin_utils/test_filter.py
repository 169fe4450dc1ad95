# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter helper: one decode per plan, arguments checked against DOCUMENTATION, core errors
turned into AnsibleFilterError."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.centra.pxe.plugins import filter as filters
from ansible_collections.centra.pxe.plugins.module_utils._plan import dump_plan
from ansible_collections.centra.pxe.plugins.plugin_utils import _filter
from ansible_collections.centra.pxe.plugins.plugin_utils._filter import DocumentedFilter, PlanCache
from ansible_collections.centra.pxe.plugins.plugin_utils._plan_build import build_plan

ASSET = {"url": "http://192.0.2.1/a", "checksum": "sha256:" + "cd" * 32}

DOC = r"""
name: probe
options:
  _input:
    description: The input.
    type: raw
    required: true
  count:
    description: A number.
    type: int
    required: true
  form:
    description: A choice.
    type: str
    default: short
    choices: [short, long]
  extra:
    description: Optional.
    type: dict
"""


def plan_text(mac="52:54:00:00:00:01"):
    return dump_plan(build_plan([{"cidr": "192.0.2.0/24"}], {"worker": {"kernel": ASSET, "initrd": ASSET}},
                                {"n1": {"groups": ["worker"], "pxe_mac": mac}}))


def echo(data, **options):
    return data, options


def test_positional_and_keyword_arguments_follow_the_documentation():
    probe = DocumentedFilter("probe", DOC, echo)
    assert probe("x", 3) == ("x", {"count": 3, "form": "short", "extra": None})
    assert probe("x", "4", "long", extra={"a": 1}) == ("x", {"count": 4, "form": "long", "extra": {"a": 1}})
    assert probe("x", count=5, form="long")[1]["count"] == 5


@pytest.mark.parametrize("args, kwargs, message", [
    ((), {}, "centra.pxe.probe: missing required arguments: count"),
    (("many",), {}, "centra.pxe.probe: argument 'count' is of type str and we were unable to convert to int"),
    ((1, "medium"), {}, "centra.pxe.probe: value of form must be one of: short, long, got: medium"),
    ((1,), {"colour": "red"}, "centra.pxe.probe: unknown argument 'colour' \\(known: count, form, extra\\)"),
    ((1,), {"count": 2}, "centra.pxe.probe: argument 'count' given twice"),
    ((1, "short", {}, "more"), {}, "centra.pxe.probe: takes at most 3 argument\\(s\\) \\(count, form, extra\\), got 4"),
    ((1, "short", "notadict"), {}, "centra.pxe.probe: argument 'extra' is of type str"),
])
def test_a_wrong_argument_names_the_filter_and_the_argument(args, kwargs, message):
    called = []
    probe = DocumentedFilter("probe", DOC, lambda data, **o: called.append(o))
    with pytest.raises(AnsibleFilterError, match=message):
        probe("x", *args, **kwargs)
    assert not called, "the core must not run on wrong arguments"


def test_the_input_is_left_to_the_core():
    """_input is not converted: the core's own message quotes what it was given."""
    probe = DocumentedFilter("probe", DOC, echo)
    assert probe(525400000001, 1)[0] == 525400000001


def test_core_errors_become_filter_errors():
    def core(data, **_options):
        raise {"v": ValueError("bad value"), "k": KeyError("address"), "t": TypeError("bad type")}[data]
    probe = DocumentedFilter("probe", DOC, core)
    for data, message in (("v", "bad value"), ("k", "'address'"), ("t", "bad type")):
        with pytest.raises(AnsibleFilterError, match="^centra.pxe.probe: %s$" % message):
            probe(data, 1)


def test_documentation_of_another_filter_is_refused():
    with pytest.raises(AnsibleFilterError, match="its DOCUMENTATION is that of 'probe'"):
        DocumentedFilter("other", DOC, echo)("x", 1)


def test_a_plan_is_decoded_once_per_distinct_string(monkeypatch):
    loads = []
    real = _filter.load_plan
    monkeypatch.setattr(_filter, "load_plan", lambda value: loads.append(value) or real(value))
    cache = PlanCache(size=2)
    probe = DocumentedFilter("probe", DOC, lambda plan, **_o: plan, plan=True, plans=cache)
    one, two, three = plan_text("52:54:00:00:00:01"), plan_text("52:54:00:00:00:02"), plan_text("52:54:00:00:00:03")
    first = probe(one, 1)
    # An equal string that is another object (as each templating hands over) hits too.
    assert probe("".join(list(one)), 2) is first and probe(one, 3) is first
    assert (cache.hits, cache.misses, len(loads)) == (2, 1, 1)
    probe(two, 1)
    probe(one, 1)  # one becomes the most recently used ...
    probe(three, 1)  # ... so two is dropped: the cache holds at most two plans
    assert len(loads) == 3
    probe(one, 1)
    assert len(loads) == 3
    probe(two, 1)
    assert len(loads) == 4
    assert probe(one.encode(), 1) == first  # bytes are keyed apart from str, and decode the same


def test_a_tampered_or_broken_plan_is_never_cached():
    cache = PlanCache()
    probe = DocumentedFilter("probe", DOC, lambda plan, **_o: plan, plan=True, plans=cache)
    tampered = plan_text().replace("52:54:00:00:00:01", "52:54:00:00:00:09")
    for _attempt in range(2):
        with pytest.raises(AnsibleFilterError, match="centra.pxe.probe: the boot plan does not match its digest"):
            probe(tampered, 1)
    with pytest.raises(AnsibleFilterError, match="not valid JSON"):
        probe("{nope", 1)
    assert cache.misses == cache.hits == 0


def test_a_decoded_plan_is_checked_every_time():
    cache = PlanCache()
    probe = DocumentedFilter("probe", DOC, lambda plan, **_o: plan["digest"], plan=True, plans=cache)
    plan = build_plan([{"cidr": "192.0.2.0/24"}], {"worker": {"kernel": ASSET, "initrd": ASSET}}, {})
    assert probe(plan, 1) == plan["digest"]
    with pytest.raises(AnsibleFilterError, match="does not match its digest"):
        probe(dict(plan, nodes=[{"name": "x"}]), 1)
    assert cache.misses == cache.hits == 0


def _collection_filters():
    for info in pkgutil.iter_modules(filters.__path__):
        module = importlib.import_module("%s.%s" % (filters.__name__, info.name))
        yield info.name, module


@pytest.mark.parametrize("name, module", list(_collection_filters()))
def test_every_filter_is_its_docs_plus_one_documented_filter(name, module):
    """The function behind each filter takes exactly the options its DOCUMENTATION lists, in order."""
    function = module.FilterModule().filters()[name]
    assert isinstance(function, DocumentedFilter) and function.name == name
    options = [o for o in yaml.safe_load(module.DOCUMENTATION)["options"] if o != "_input"]
    parameters = list(inspect.signature(function.function).parameters)
    assert parameters[1:] == options


class _Uncopyable(dict):
    """Stands for Ansible 2.19's lazy containers: deep-copying one copies the templating engine."""

    def __deepcopy__(self, memo):
        raise AssertionError("the filter helper deep-copied a container Ansible handed it")


def test_arguments_are_checked_without_deep_copying_what_ansible_hands_over():
    probe = DocumentedFilter("probe", DOC, echo)
    extra = _Uncopyable(facts=_Uncopyable(eth0={"ipv4": {"address": "192.0.2.2"}}))
    _data, options = probe("x", 1, extra=extra)
    assert options["extra"] is extra, "a mapping for a dict option is passed on as given"
    with pytest.raises(AnsibleFilterError, match="argument 'count' is of type dict"):
        probe("x", _Uncopyable(a=1))
