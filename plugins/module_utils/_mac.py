# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""MAC addresses: the one parser of the collection, and the forms loaders use.

Standard library only: the plan build uses it on the controller, and the programs the
roles install on a PXE host (the lifecycle service, the trace journal feeder) import
this same file, installed beside them as centra_pxe_mac.py.
"""

from __future__ import annotations

import re
from typing import Optional

CANONICAL_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# One separator throughout (52:54-00... is no notation anyone writes).
SEPARATED_RE = re.compile(r"^[0-9A-Fa-f]{1,2}([:-])[0-9A-Fa-f]{1,2}(\1[0-9A-Fa-f]{1,2}){4}$")
CISCO_RE = re.compile(r"^[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}$")
BARE_RE = re.compile(r"^[0-9A-Fa-f]{12}$")

# Each form is a function of the canonical "52:54:00:00:01:01" form.
FORMS = ("colon", "hyphen", "bare", "cisco", "pxelinux", "ipxe")


class MacError(ValueError):
    """A value that is not a MAC address; the message quotes the value."""


def parse_mac(value: object) -> str:
    """Return the canonical form (lower-case, colon-separated) of a 48-bit MAC.

    Accepts colon and hyphen notation (one or two hex digits an octet: dhcpd logs drop
    leading zeros), Cisco dotted and bare hex, in any case.
    Numbers are refused on purpose: YAML 1.1 reads an unquoted 52:54:00:00:01:01
    as a base-60 integer, and a bare-hex MAC of digits only as a decimal one, so
    the number Ansible hands over is not the MAC the operator wrote.
    """
    if isinstance(value, bool) or isinstance(value, (int, float)):
        raise MacError(
            "%r is a number, not a MAC address: YAML reads an unquoted MAC such as "
            "52:54:00:00:01:01 as a number; put the MAC in quotes" % (value,)
        )
    if not isinstance(value, str):
        raise MacError("%r is not a MAC address (expected a string)" % (value,))
    text = value.strip()
    # The length check first: the network-facing services parse what clients send.
    octets = None
    if len(text) <= 17:
        if SEPARATED_RE.match(text):
            octets = re.split(r"[:-]", text)
        elif CISCO_RE.match(text) or BARE_RE.match(text):
            bare = text.replace(".", "")
            octets = [bare[i:i + 2] for i in range(0, 12, 2)]
    if octets is None:
        raise MacError("%r is not a MAC address" % (value,))
    return _checked(":".join(octet.lower().rjust(2, "0") for octet in octets), value)


def mac_or_none(value: object) -> Optional[str]:
    """parse_mac for input from the network (URLs, logs): the canonical form, or None."""
    try:
        return parse_mac(value)
    except MacError:
        return None


def _checked(canonical: str, value: object) -> str:
    if canonical == "00:00:00:00:00:00":
        raise MacError("%r is the all-zero MAC, which no network card has" % (value,))
    if int(canonical[:2], 16) & 1:
        raise MacError("%r is a multicast or broadcast MAC, which no network card boots from" % (value,))
    return canonical


def is_canonical(mac: str) -> bool:
    return bool(CANONICAL_RE.match(mac))


def format_mac(canonical: str, form: str = "colon") -> str:
    """Return a canonical MAC in one of FORMS.

    colon 52:54:00:00:01:01 | hyphen 52-54-00-00-01-01 (iPXE ${mac:hexhyp}) |
    bare 525400000101 | cisco 5254.0000.0101 | pxelinux 01-52-54-00-00-01-01 |
    ipxe: same as colon (iPXE's ${mac}).
    """
    if not is_canonical(canonical):
        raise MacError("%r is not a canonical MAC (parse it first)" % (canonical,))
    octets = canonical.split(":")
    if form in ("colon", "ipxe"):
        return canonical
    if form == "hyphen":
        return "-".join(octets)
    if form == "bare":
        return "".join(octets)
    if form == "cisco":
        bare = "".join(octets)
        return ".".join(bare[i:i + 4] for i in range(0, 12, 4))
    if form == "pxelinux":
        return "01-" + "-".join(octets)
    raise MacError("unknown MAC form %r (one of: %s)" % (form, ", ".join(FORMS)))


def mac_forms(canonical: str) -> dict[str, str]:
    return {form: format_mac(canonical, form) for form in FORMS}
