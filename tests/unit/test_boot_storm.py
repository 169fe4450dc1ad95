# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of benchmarks/boot_storm.py: DHCP and TFTP packets, the iPXE scripts a
storm machine follows, the machines, and the summary of a storm."""

from __future__ import annotations

import ipaddress
import os
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "benchmarks"))
import _storm_wire as wire  # noqa: E402  pylint: disable=wrong-import-position


def _reply(message_type: int, xid: int, yiaddr: str = "198.19.0.20", siaddr: str = "192.0.2.2", file: bytes = b"",
           options: bytes = b"") -> bytes:
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 1, xid, 0, 0, b"\0" * 4,
                         ipaddress.IPv4Address(yiaddr).packed, ipaddress.IPv4Address(siaddr).packed,
                         ipaddress.IPv4Address("198.18.0.1").packed, b"\x02" * 6 + b"\0" * 10, b"\0" * 64,
                         file.ljust(128, b"\0"))
    return header + wire.MAGIC_COOKIE + bytes([53, 1, message_type]) + options + b"\xff"


def test_discover_is_relayed_with_the_pxe_options():
    packet = wire.dhcp_request_packet(wire.DISCOVER, "02:5b:00:00:00:07", 0x1234, "198.18.0.1", 7)
    assert packet[0] == 1 and packet[3] == 1  # BOOTREQUEST, hops 1 (relayed)
    assert struct.unpack_from("!I", packet, 4)[0] == 0x1234
    assert packet[24:28] == ipaddress.IPv4Address("198.18.0.1").packed  # giaddr
    assert packet[28:34] == bytes.fromhex("025b00000007")
    options = wire.parse_options(packet[240:])
    assert options[53] == b"\x01"
    assert options[93] == b"\x00\x07"
    assert options[60] == b"PXEClient:Arch:00007:UNDI:003016"
    assert 77 not in options and 50 not in options


def test_ipxe_request_names_itself_and_the_offer():
    packet = wire.dhcp_request_packet(wire.REQUEST, "02:5b:00:00:00:08", 1, "198.18.0.1", 0, ipxe=True,
                                      requested="198.19.0.20", server_id="192.0.2.2")
    options = wire.parse_options(packet[240:])
    assert options[53] == b"\x03"
    assert options[77] == b"iPXE"
    assert 175 in options
    assert options[50] == ipaddress.IPv4Address("198.19.0.20").packed
    assert options[54] == ipaddress.IPv4Address("192.0.2.2").packed


def test_mac_bytes_refuses_a_short_mac():
    with pytest.raises(ValueError):
        wire.mac_bytes("02:5b:00")


def test_parse_reply_reads_file_field_or_option_67():
    in_field = wire.parse_dhcp_reply(_reply(wire.OFFER, 9, file=b"undionly.kpxe",
                                            options=bytes([54, 4]) + ipaddress.IPv4Address("192.0.2.2").packed))
    assert in_field is not None
    assert (in_field.xid, in_field.message_type, in_field.yiaddr) == (9, wire.OFFER, "198.19.0.20")
    assert in_field.boot_file == "undionly.kpxe" and in_field.server_id == "192.0.2.2"
    url = b"http://192.0.2.2/boot.ipxe"
    in_option = wire.parse_dhcp_reply(_reply(wire.ACK, 9, siaddr="0.0.0.0",
                                             options=bytes([67, len(url)]) + url + bytes([66, 9]) + b"192.0.2.2"))
    assert in_option.boot_file == url.decode() and in_option.next_server == "192.0.2.2"


def test_parse_reply_refuses_requests_and_junk():
    request = wire.dhcp_request_packet(wire.DISCOVER, "02:5b:00:00:00:01", 1, "198.18.0.1", 0)
    assert wire.parse_dhcp_reply(request) is None
    assert wire.parse_dhcp_reply(b"\x02" * 20) is None
    no_cookie = bytearray(_reply(wire.OFFER, 1))
    no_cookie[236:240] = b"\0\0\0\0"
    assert wire.parse_dhcp_reply(bytes(no_cookie)) is None


def test_split_options_are_joined_and_pad_skipped():
    assert wire.parse_options(b"\x00\x43\x02ab\x00\x43\x01c\xff\x43\x01z") == {67: b"abc"}


def test_tftp_rrq_asks_for_blksize_and_tsize():
    assert wire.tftp_rrq("ipxe.efi", 1468) == b"\x00\x01ipxe.efi\x00octet\x00blksize\x001468\x00tsize\x000\x00"
    assert wire.tftp_rrq("undionly.kpxe", None, tsize=False) == b"\x00\x01undionly.kpxe\x00octet\x00"


def test_tftp_packets():
    assert wire.tftp_ack(65537) == b"\x00\x04\x00\x01"
    oack = wire.parse_tftp(b"\x00\x06BLKSIZE\x001468\x00tsize\x00850528\x00")
    assert oack.opcode == wire.OACK and oack.options == {"blksize": "1468", "tsize": "850528"}
    data = wire.parse_tftp(b"\x00\x03\x01\x02" + b"x" * 1468)
    assert (data.opcode, data.block, len(data.data)) == (wire.DATA, 0x0102, 1468)
    error = wire.parse_tftp(b"\x00\x05\x00\x01File not found\x00")
    assert error.opcode == wire.ERROR and error.error == "1: File not found"
    assert wire.parse_tftp(b"\x00") is None
    assert wire.parse_tftp(b"\x00\x09abc") is None
    assert wire.parse_tftp(b"\x00\x06blksize\x00") is None  # an option without its value
    assert wire.next_block(65535) == 0


ENTRY = """#!ipxe
# Entry script. Managed by centra.pxe, plan 94789013295c.
set centra-base http://192.0.2.2
:start
chain --autofree ${centra-base}/nodes/${mac:hexhyp}.ipxe || goto failed
exit 1
"""

INSTALL = """#!ipxe
set centra-base http://192.0.2.2
:install
imgfree
kernel ${centra-base}/profiles/worker/vmlinuz initrd=initrd panic=-1 centra.profile=worker centra.node=s00001 \
centra.callback=http://192.0.2.2/api/v1/callback/s00001 centra.token=abc_DEF-1 console=ttyS0,115200 || goto install_failed
initrd ${centra-base}/profiles/worker/initrd || goto install_failed
boot || goto install_failed
"""

LOCAL = """#!ipxe
set centra-base http://192.0.2.2
echo centra.pxe: node01 boots from local disk
iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||
exit
"""


def test_entry_script_chains_to_the_node_script_of_the_mac():
    assert wire.entry_chain_url(ENTRY, "02:5B:00:00:00:01") == "http://192.0.2.2/nodes/02-5b-00-00-00-01.ipxe"
    assert wire.entry_chain_url("#!ipxe\nexit\n", "02:5b:00:00:00:01") is None


def test_install_script_gives_kernel_initrd_and_callback():
    boot = wire.node_boot(INSTALL, "02:5b:00:00:00:01")
    assert boot == wire.NodeBoot(kernel="http://192.0.2.2/profiles/worker/vmlinuz",
                                 initrd="http://192.0.2.2/profiles/worker/initrd",
                                 callback="http://192.0.2.2/api/v1/callback/s00001", token="abc_DEF-1")
    assert wire.node_boot(LOCAL, "02:5b:00:00:00:01") is None


def test_machines_mix_firmware_addresses_and_profiles():
    machines = [wire.machine(i, ("a", "b", "c")) for i in range(10)]
    assert len({m.mac for m in machines}) == 10
    assert [m.arch for m in machines[:2]] == [wire.ARCH_BIOS, wire.ARCH_UEFI]
    fixed = [m for m in machines if m.fixed_ip]
    assert len(fixed) == 4 and all(ipaddress.IPv4Address(m.fixed_ip) in wire.NODE_NETWORK for m in fixed)
    pool_start, pool_end = (ipaddress.IPv4Address(a) for a in wire.POOL.split("-"))
    assert not any(pool_start <= ipaddress.IPv4Address(m.fixed_ip) <= pool_end for m in fixed)
    assert {m.profile for m in machines} == {"a", "b", "c"}
    assert wire.machine(1999, ("a",)).mac == "02:5b:00:00:07:cf"


def test_percentile_nearest_rank():
    values = list(range(1, 201))
    assert wire.percentile(values, 0.5) == 100
    assert wire.percentile(values, 0.99) == 198
    assert wire.percentile([3.0], 0.99) == 3.0
    assert wire.percentile([], 0.5) is None


def test_cpu_delta_and_parse():
    before = wire.parse_cpu_stat("nginx 1000000\nkea-dhcp4-server 500000\ngarbage\n")
    after = wire.parse_cpu_stat("nginx 3500000\nkea-dhcp4-server 200000\ntftpd-hpa 10\n")
    assert wire.cpu_delta(before, after) == {"kea-dhcp4-server": 0.2, "nginx": 2.5, "tftpd-hpa": 1e-05}


def _result(ok: bool, t_initrd: float = 1.0, t_done: float = 1.5, retries=None, error: str = "") -> dict:
    result = {"ok": ok, "retries": retries or {}, "bytes": 70_000_000,
              "phases": {"dhcp": 0.1, "tftp": 0.2, "initrd": 0.5}}
    if ok:
        result.update(t_initrd=t_initrd, t_done=t_done)
    else:
        result.update(error=error, t_end=9.0)
    return result


def test_summary_of_a_clean_storm():
    results = [_result(True, t_initrd=i, t_done=i + 0.5, retries={"dhcp": 1} if i == 3 else {}) for i in range(1, 5)]
    summary = wire.summarize(results, 70_000_000.0, {"nginx": 2.0, "kea-dhcp4-server": 0.4})
    assert (summary["completed"], summary["failed"], summary["retried_machines"]) == (4, 0, 1)
    assert summary["retries"] == {"dhcp": 1}
    assert summary["initrd_p50_s"] == 2 and summary["initrd_p99_s"] == 4
    assert summary["makespan_s"] == 4.5
    assert summary["link_bound_s"] == pytest.approx(4.0)
    assert summary["makespan_over_bound"] == pytest.approx(4.5 / 4.0)
    assert summary["cpu_s_per_boot"] == {"nginx": 0.5, "kea-dhcp4-server": 0.1}
    assert summary["phase_p50_s"]["tftp"] == 0.2 and summary["phase_p50_s"]["kernel"] is None


def test_summary_counts_failures_and_their_phase():
    results = [_result(True), _result(False, error="tftp: timed out at block 3"),
               _result(False, error="tftp: error 1: File not found"), _result(False, error="dhcp: no answer")]
    summary = wire.summarize(results, 1e9, {})
    assert (summary["completed"], summary["failed"]) == (1, 3)
    assert summary["errors"] == {"tftp": 2, "dhcp": 1}
    assert summary["makespan_s"] == 9.0  # the last machine to give up ends the storm
    assert summary["link_bound_s"] == pytest.approx(4 * 70_000_000 / 1e9)


def test_summary_without_link_or_completions():
    summary = wire.summarize([_result(False, error="dhcp: no answer")], 0.0, {})
    assert summary["link_bound_s"] is None and summary["initrd_p50_s"] is None


def test_trace_complete():
    assert wire.trace_complete(["dhcp_ack", "loader", "kernel"], ("dhcp_ack", "kernel")) == (True, [])
    assert wire.trace_complete(["dhcp_ack"], ("dhcp_ack", "initrd", "kernel")) == (False, ["initrd", "kernel"])


def test_dhcp_message_reads_requests_and_replies_and_nothing_else():
    request = wire.dhcp_request_packet(wire.REQUEST, "02:5b:00:00:00:07", 0xBEEF, "198.18.0.1", 0)
    assert wire.dhcp_message(request) == (0xBEEF, wire.REQUEST)
    assert wire.dhcp_message(_reply(wire.ACK, 7)) == (7, wire.ACK)
    assert wire.dhcp_message(b"\x01" * 300) is None          # no magic cookie
    assert wire.dhcp_message(request[:100]) is None           # too short
    assert wire.dhcp_message(b"\x03" + request[1:]) is None   # neither op


def test_server_share_times_the_answered_request_not_the_first():
    # DISCOVER at 0 lost, again at 4.0 and answered at 4.01; REQUEST at 4.05, ACK at 4.08.
    seen = [(4.08, wire.ACK), (0.0, wire.DISCOVER), (4.0, wire.DISCOVER), (4.01, wire.OFFER), (4.05, wire.REQUEST)]
    assert wire.server_share(seen) == pytest.approx(0.01 + 0.03)
    # A NAK answers a REQUEST too; an answer seen twice counts from the first.
    assert wire.server_share([(0, 1), (0.002, 2), (0.003, 2), (0.01, 3), (0.02, 6)]) == pytest.approx(0.012)


def test_server_share_is_unknown_without_both_answers():
    assert wire.server_share([]) is None
    assert wire.server_share([(0.0, wire.DISCOVER), (0.01, wire.OFFER), (0.02, wire.REQUEST)]) is None
    assert wire.server_share([(0.01, wire.OFFER), (0.02, wire.REQUEST), (0.03, wire.ACK)]) is None  # request not seen


def test_summary_reports_the_servers_share_of_dhcp_when_captured():
    results = [dict(_result(True), server={"dhcp": 0.001 * i, "dhcp_ipxe": None}) for i in range(1, 5)]
    summary = wire.summarize(results, 1e9, {})
    assert summary["server_p50_s"] == {"dhcp": pytest.approx(0.002)}
    assert summary["server_p99_s"] == {"dhcp": pytest.approx(0.004)}
    assert wire.summarize([_result(True)], 1e9, {})["server_p50_s"] == {}


def test_tftp_server_share_counts_each_answer_from_the_request_it_answers():
    rrq, oack, data, ack = wire.RRQ, wire.OACK, wire.DATA, wire.TFTP_ACK
    seen = [(0.0, rrq, 0), (0.02, oack, 0), (0.03, ack, 0), (0.035, data, 1),
            (0.10, ack, 1), (1.10, ack, 1),          # the machine was slow, then ACKed again
            (1.101, data, 2), (1.102, data, 2),      # answered, and a duplicate that counts once
            (1.20, ack, 2), (1.203, data, 3)]
    assert wire.tftp_server_share(seen, 3) == pytest.approx(0.02 + 0.005 + 0.001 + 0.003)
    assert wire.tftp_server_share(seen, 4) is None  # the capture missed the last block
    assert wire.tftp_server_share([p for p in seen if p != (1.101, data, 2)], 3) == \
        pytest.approx(0.02 + 0.005 + 0.002 + 0.003)  # the first DATA 2 missed: its duplicate answered
    # A server that ignores the options answers the RRQ with DATA 1 at once.
    assert wire.tftp_server_share([(0.0, rrq, 0), (0.004, data, 1), (0.01, ack, 1), (0.012, data, 2)], 2) == \
        pytest.approx(0.006)


def test_tftp_server_share_is_unknown_for_a_transfer_not_all_there():
    assert wire.tftp_server_share([], 1) is None
    assert wire.tftp_server_share([(0.02, wire.OACK, 0), (0.03, wire.TFTP_ACK, 0)], 1) is None    # RRQ not seen
    assert wire.tftp_server_share([(0.0, wire.RRQ, 0), (0.02, wire.OACK, 0), (0.05, wire.DATA, 1)], 1) is None
    assert wire.tftp_server_share([(0.0, wire.RRQ, 0), (0.004, wire.DATA, 1)], 0) is None       # size unknown
