# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to the centra.pxe collection: controller-side code of its plugins, never
# shipped to a managed host. Not an API: it may change in any release.
"""The one adapter between the collection's filters and its Python core.

A filter file is its documentation and one call:

    kea_config = DocumentedFilter("kea_config", DOCUMENTATION, kea_dhcp4_config, plan=True)

The filter's arguments are checked against the options of its own DOCUMENTATION
(types, required, choices, defaults), so the docs and the behaviour cannot drift;
positional arguments take the options in the order the documentation lists them.
With plan=True the input is the boot plan, decoded once per distinct plan string.
ValueError, KeyError and TypeError from the core become AnsibleFilterError, named
after the filter.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Dict, Optional, Tuple

import yaml
from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.centra.pxe.plugins.module_utils._plan import load_plan

# libyaml's loader when PyYAML has it (as Ansible's own loader does): a filter's docs are
# parsed in every worker process that uses it, and the pure-Python loader takes milliseconds.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Keys of a DOCUMENTATION option that mean something to ArgumentSpecValidator.
_SPEC_KEYS = ("type", "required", "default", "choices", "elements", "options")
PLAN_CACHE_SIZE = 4


class PlanCache:
    """Decoded plans by their exact JSON string, the most recently used kept.

    load_plan() parses the string and re-hashes the whole plan to check its digest:
    for 10,000 nodes that is a noticeable fraction of a second, and a play calls
    several filters on the same plan. Keyed by the string itself (a dict lookup
    hashes it once per string object and compares bytes), not by the digest it
    claims: a plan edited after it was built must still fail its digest check.
    Bounded, since a long-lived controller process may see several plans.

    The cached plan is shared by every caller: the renderers only read it.
    """

    def __init__(self, size: int = PLAN_CACHE_SIZE):
        self.size = size
        self._plans: "OrderedDict[Any, Dict[str, Any]]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, value: Any) -> Dict[str, Any]:
        if not isinstance(value, (str, bytes)):
            return load_plan(value)  # an already decoded mapping: nothing to key it by
        # Ansible 2.19 may hand a tagged str subclass; key by the plain value.
        key = bytes(value) if isinstance(value, bytes) else str.__str__(value)
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                self.hits += 1
                return plan
        plan = load_plan(key)  # raises ValueError for a plan that is not one: never cached
        with self._lock:
            self.misses += 1
            self._plans[key] = plan
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return plan

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
            self.hits = self.misses = 0


PLANS = PlanCache()


def _plain(value: Any) -> Any:
    """Mappings and sequences as plain dicts and lists (Ansible's lazy containers are not)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _argument_spec(options: Mapping[str, Any]) -> Dict[str, Any]:
    spec = {}
    for name, option in options.items():
        entry = {k: v for k, v in (option or {}).items() if k in _SPEC_KEYS and k != "options"}
        if (option or {}).get("options"):
            entry["options"] = _argument_spec(option["options"])
        spec[name] = entry
    return spec


class DocumentedFilter:
    """A filter whose arguments are its DOCUMENTATION's options (see the module docstring).

    function(input, **options) does the work; it receives every documented option
    by keyword (None, or the documented default, for those not given). The input
    (_input) is not converted: its checks are the core's, with messages that quote it.
    """

    def __init__(self, name: str, documentation: str, function: Callable[..., Any], plan: bool = False,
                 plans: Optional[PlanCache] = None):
        self.name = name
        self.function = function
        self.plan = plan
        self._plans = plans or PLANS
        self._documentation = documentation
        self._parsed: Optional[Tuple[Dict[str, Any], ArgumentSpecValidator]] = None

    def _spec(self) -> Tuple[Dict[str, Any], ArgumentSpecValidator]:
        # Parsed on first use: Ansible imports every filter file of the collection to find one.
        if self._parsed is None:
            doc = yaml.load(self._documentation, Loader=_YamlLoader)  # nosec B506: a safe loader
            if doc.get("name") != self.name:
                raise AnsibleFilterError("centra.pxe.%s: its DOCUMENTATION is that of %r" % (self.name, doc.get("name")))
            options = {k: v for k, v in (doc.get("options") or {}).items() if k != "_input"}
            self._parsed = (options, ArgumentSpecValidator(_argument_spec(options)))
        return self._parsed

    def arguments(self, args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> Dict[str, Any]:
        """The filter's arguments by option name, checked and completed with the documented defaults."""
        options, validator = self._spec()
        names = list(options)
        if len(args) > len(names):
            raise AnsibleFilterError("centra.pxe.%s: takes at most %d argument(s) (%s), got %d"
                                     % (self.name, len(names), ", ".join(names) or "none", len(args)))
        params = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise AnsibleFilterError("centra.pxe.%s: unknown argument %r (known: %s)"
                                         % (self.name, key, ", ".join(names) or "none"))
            if key in params:
                raise AnsibleFilterError("centra.pxe.%s: argument %r given twice" % (self.name, key))
            params[key] = value
        # ArgumentSpecValidator deep-copies what it checks. Ansible 2.19 hands filters lazy
        # containers that reach its templating engine and plugin loaders, whose copies break
        # the worker's filter loader; and ansible_facts is large. So a mapping given for a
        # dict option (nothing to convert) is checked through an empty stand-in and passed on
        # as it is; other values are checked as plain data.
        as_given = {}
        for key, value in params.items():
            spec = options[key]
            if isinstance(value, Mapping) and spec.get("type") == "dict" and not spec.get("options"):
                as_given[key], params[key] = value, {}
            else:
                params[key] = _plain(value)
        result = validator.validate(params)
        if result.error_messages:
            raise AnsibleFilterError("centra.pxe.%s: %s" % (self.name, "; ".join(result.error_messages)))
        arguments = result.validated_parameters
        arguments.update(as_given)
        return arguments

    def __call__(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = self.arguments(args, kwargs)
        try:
            if self.plan:
                data = self._plans.get(data)
            return self.function(data, **arguments)
        except (KeyError, TypeError, ValueError) as exc:
            raise AnsibleFilterError("centra.pxe.%s: %s" % (self.name, exc)) from None
