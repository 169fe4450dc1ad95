# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.centra.pxe.plugins.module_utils._mac import MacError, format_mac, mac_forms, parse_mac

CANONICAL = "52:54:00:ab:01:0f"


@pytest.mark.parametrize("written", [
    "52:54:00:ab:01:0f", "52:54:00:AB:01:0F", "52-54-00-ab-01-0f", "5254.00ab.010f", "525400ab010f",
    "525400AB010F", "  52:54:00:ab:01:0f  ", "52:54:0:ab:1:f",
])
def test_common_notations_parse_to_the_canonical_form(written):
    assert parse_mac(written) == CANONICAL


@pytest.mark.parametrize("bad", [
    "", "52:54:00:ab:01", "52:54:00:ab:01:0f:11", "52:54:00:ab:01:0g", "0x525400ab010f", "hello",
    "52:54:00:ab:01:0f\n52:54:00:ab:01:10", "52::54:00:ab:01:0f",
])
def test_non_macs_are_refused_quoting_the_value(bad):
    with pytest.raises(MacError) as info:
        parse_mac(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("number", [670000000, 5254000001, 12.5])
def test_numbers_are_refused_with_the_yaml_hint(number):
    with pytest.raises(MacError, match="quotes"):
        parse_mac(number)


@pytest.mark.parametrize("value", [None, ["52:54:00:ab:01:0f"], {"mac": 1}, True])
def test_non_strings_are_refused(value):
    with pytest.raises(MacError):
        parse_mac(value)


@pytest.mark.parametrize("mac", ["00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"])
def test_macs_no_card_boots_from_are_refused(mac):
    with pytest.raises(MacError):
        parse_mac(mac)


def test_forms():
    assert mac_forms(CANONICAL) == {
        "colon": "52:54:00:ab:01:0f",
        "hyphen": "52-54-00-ab-01-0f",
        "bare": "525400ab010f",
        "cisco": "5254.00ab.010f",
        "pxelinux": "01-52-54-00-ab-01-0f",
        "ipxe": "52:54:00:ab:01:0f",
    }


def test_format_refuses_unparsed_input_and_unknown_forms():
    with pytest.raises(MacError):
        format_mac("52-54-00-ab-01-0f", "colon")
    with pytest.raises(MacError, match="unknown MAC form"):
        format_mac(CANONICAL, "dotted")


unicast = st.binary(min_size=6, max_size=6).filter(lambda b: not b[0] & 1 and any(b))


@given(unicast, st.sampled_from(["colon", "hyphen", "bare", "cisco"]), st.booleans())
def test_every_form_round_trips(raw, form, upper):
    canonical = ":".join("%02x" % b for b in raw)
    written = format_mac(canonical, form)
    assert parse_mac(written.upper() if upper else written) == canonical


@given(st.text(max_size=20))
def test_arbitrary_text_parses_or_raises_mac_error(text):
    try:
        result = parse_mac(text)
    except MacError:
        return
    assert format_mac(result) == result
