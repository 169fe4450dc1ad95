# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the HA verification, for both backends: scenario ha (a Kea HA pair) and
ha-isc (an ISC dhcpd failover pair) run the same tests; the backend and the mode come
from the scenario's inventory (CENTRA_HA_MODE, see the scenarios' molecule.yml).

Kea answers on its control socket (ha-heartbeat, lease4-get, config-get); dhcpd has
none, so its failover state is read from the "I move from X to Y" lines its running
process logged, and its leases from /var/lib/dhcp/dhcpd.leases.

The shared helpers are labkit's (labkit.ha, labkit.client), on PYTHONPATH through
molecule's config (verifier.env).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import sys
from typing import Any, Dict, List, Optional

from ansible_collections.centra.pxe.plugins.plugin_utils._ha import HA_SETTINGS
from labkit.client import lab_exec, unit_state
from labkit.facts import lab_facts
from labkit.common import BRIDGE
from labkit.ha import PRIMARY, STANDBY, ssh

BACKEND = lab_facts().backend
KEA, ISC = BACKEND == "kea", BACKEND == "isc"
assert KEA or ISC, BACKEND
UNIT = "kea-dhcp4-server" if KEA else "isc-dhcp-server"
HA_PORT = HA_SETTINGS[BACKEND]["port"]  # the scenarios keep the default port
MODE = str(lab_facts().server_vars["pxe_dhcp_ha"]["mode"])
assert MODE in ("hot-standby", "load-balancing"), MODE
LOAD_BALANCING = MODE == "load-balancing"
# Kea's backup servers: the peers after the pair (pxe_dhcp_ha.peers' default order).
BACKUPS = [name for name in sorted(lab_facts().servers) if name not in (PRIMARY, STANDBY)]
assert KEA or not BACKUPS, BACKUPS
# The state of a pair that serves as configured (Kea: its mode; ISC: normal in both modes).
SERVING = MODE if KEA else "normal"

# The plan's default subnet id: the lab subnet's network address as a number.
SUBNET_ID = int(ipaddress.ip_network(lab_facts().subnets[0].cidr).network_address)

# Sent on the PXE host: one command to kea-dhcp4's unix control socket, the answer on stdout.
_KEA_CLIENT = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_UNIX)\n"
    "s.connect('/run/kea/kea4-ctrl-socket')\n"
    "s.sendall(sys.argv[1].encode())\n"
    "d=b''\n"
    "while True:\n"
    "    c=s.recv(65536)\n"
    "    if not c: break\n"
    "    d+=c\n"
    "sys.stdout.write(d.decode())\n"
)
_ISC_MOVE = re.compile(r"failover peer centra-pxe: I move from \S+ to (\S+)")


def kea(host: str, command: str, **arguments: Any) -> Dict[str, Any]:
    """The answer of the host's kea-dhcp4 to one control command."""
    request = {"command": command}
    if arguments:
        request["arguments"] = arguments
    run = ssh(host, "python3 -c %s %s" % (shlex.quote(_KEA_CLIENT), shlex.quote(json.dumps(request))), check=False)
    assert run.returncode == 0, "%s on %s failed: %s %s" % (command, host, run.stdout, run.stderr)
    return json.loads(run.stdout)


def ha_state(host: str) -> str:
    """The HA state the host's DHCP server is in ("unreachable"/"stopped" if none answers)."""
    if KEA:
        run = ssh(host, "python3 -c %s %s" % (shlex.quote(_KEA_CLIENT), shlex.quote('{"command": "ha-heartbeat"}')),
                  check=False)
        if run.returncode != 0:
            return "unreachable"
        return json.loads(run.stdout).get("arguments", {}).get("state", "unknown")
    pid = int(unit_state(UNIT, host).get("MainPID", "0"))
    if not pid:
        return "stopped"
    run = ssh(host, "journalctl --no-pager -o cat _PID=%d" % pid, check=False)
    states = _ISC_MOVE.findall(run.stdout)
    return states[-1] if states else ""


# Run on a PXE host: one command to a peer's HA listener, as plain HTTP, over TLS
# without a client certificate, with a certificate of another CA, or with the host's own
# certificate of the pair. Prints what came back ("" when the listener refused).
_HA_CHANNEL_CLIENT = (
    "import json,socket,ssl,sys\n"
    "host,port,mode,tls=sys.argv[1],int(sys.argv[2]),sys.argv[3],sys.argv[4]\n"
    "body=json.dumps({'command':'ha-heartbeat','service':['dhcp4']}).encode()\n"
    "head='POST / HTTP/1.1\\r\\nHost: %s\\r\\nContent-Type: application/json\\r\\n"
    "Content-Length: %d\\r\\nConnection: close\\r\\n\\r\\n'%(host,len(body))\n"
    "data=b''\n"
    "try:\n"
    "    s=socket.create_connection((host,port),timeout=5)\n"
    "    if mode!='plain':\n"
    "        c=ssl.create_default_context(cafile=tls+'/ca.crt')\n"
    "        c.check_hostname=False\n"
    "        if mode=='pair': c.load_cert_chain(tls+'/server.crt',tls+'/server.key')\n"
    "        if mode=='foreign': c.load_cert_chain('/tmp/foreign.crt','/tmp/foreign.key')\n"
    "        s=c.wrap_socket(s,server_hostname=host)\n"
    "    s.sendall(head.encode()+body)\n"
    "    while True:\n"
    "        d=s.recv(65536)\n"
    "        if not d: break\n"
    "        data+=d\n"
    "except (OSError,ssl.SSLError) as e:\n"
    "    sys.stderr.write('%s: %s\\n'%(type(e).__name__,e))\n"
    "sys.stdout.write(data.decode(errors='replace'))\n"
)
HA_TLS_DIR = "/etc/kea/ha-tls"  # pxe_dhcp_kea_ha_tls_dir's default


def ha_channel_answer(client: str, server_address: str, mode: str) -> str:
    """What the HA listener at server_address answers a command sent from host client
    (mode: plain, anonymous, foreign or pair; see _HA_CHANNEL_CLIENT)."""
    if mode == "foreign":
        ssh(client, "cd /tmp && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -days 1 "
                    "-subj /CN=foreign -keyout foreign.key -out foreign.crt 2>/dev/null")
    run = ssh(client, "python3 -c %s %s %d %s %s" % (shlex.quote(_HA_CHANNEL_CLIENT), server_address, HA_PORT, mode,
                                                     HA_TLS_DIR), check=False)
    return run.stdout


def lease_of(host: str, mac: str) -> Dict[str, Any]:
    """The host's lease of a MAC in the lab subnet ({} when it has none)."""
    answer = kea(host, "lease4-get", **{"identifier-type": "hw-address", "identifier": mac, "subnet-id": SUBNET_ID})
    return answer.get("arguments") or {} if answer["result"] == 0 else {}


def isc_current_leases(text: str) -> Dict[str, str]:
    """Address -> its current declaration in a dhcpd.leases text.

    dhcpd.leases is a log: dhcpd appends a declaration whenever a lease changes, and the
    last one of an *address* is that address's state (dhcpd.leases(5)). The last entry
    that names a MAC is not its lease: an address only offered to the client (the
    partner's offer it did not take, both servers offer when its secs exceed
    load_balance_max_seconds) keeps the client's hardware address in its later free or
    backup declarations, such as those pool balancing appends after the peers reconnect
    or the rewrite of the whole file when dhcpd starts. Reading "the last entry with
    the MAC" took that for the lease and had it vanish from both servers after a restart.
    """
    return dict(re.findall(r"^lease (\S+) \{(.*?)^\}", text, re.M | re.S))


def isc_active_lease(host: str, mac: str) -> Optional[str]:
    """The address the MAC holds an active lease of in the host's dhcpd.leases, if any."""
    current = isc_current_leases(ssh(host, "cat /var/lib/dhcp/dhcpd.leases").stdout)
    active = sorted(ip for ip, body in current.items()
                    if re.search(r"^\s*hardware ethernet %s;" % re.escape(mac), body, re.M | re.I)
                    and re.search(r"^\s*binding state active;", body, re.M))
    assert len(active) <= 1, "%s holds several active leases for %s: %s" % (host, mac, active)
    return active[0] if active else None


def leased_address(host: str, mac: str) -> Optional[str]:
    """The address the host holds an active lease of for this MAC, if any."""
    if KEA:
        return lease_of(host, mac).get("ip-address")
    return isc_active_lease(host, mac)


# Run in the lab network: one DISCOVER (sent twice, 2 s apart) from each given MAC, as a
# BIOS PXE ROM sends it (secs 0), and which server offered it which address.
_OFFER_PROBE = (
    "import json,random,sys,time\n"
    "from scapy.all import BOOTP,IP,AsyncSniffer,conf,get_if_hwaddr,sendp\n"
    "from labkit.dhcp_probe import dhcp_frame,message_type\n"
    "conf.verb=0\n"
    "iface=sys.argv[1]\n"
    "clients={random.getrandbits(32):bytes.fromhex(m.replace(':','')) for m in sys.argv[2:]}\n"
    "offers={xid:set() for xid in clients}\n"
    "def note(p):\n"
    "    if BOOTP in p and p[BOOTP].op==2 and p[BOOTP].xid in offers and message_type(p)=='offer':\n"
    "        offers[p[BOOTP].xid].add((p[IP].src,p[BOOTP].yiaddr))\n"
    "sniffer=AsyncSniffer(iface=iface,prn=note,store=False)\n"
    "sniffer.start()\n"
    "time.sleep(0.5)\n"
    "opts=[('message-type','discover'),('vendor_class_id',b'PXEClient:Arch:00000:UNDI:002001'),'end']\n"
    "for _ in range(2):\n"
    "    for xid,mac in clients.items():\n"
    "        sendp(dhcp_frame(get_if_hwaddr(iface),mac,xid,opts),iface=iface,verbose=False)\n"
    "    time.sleep(2)\n"
    "time.sleep(2)\n"
    "sniffer.stop()\n"
    "print(json.dumps({mac.hex(':'):sorted(offers[xid]) for xid,mac in clients.items()}))\n"
)


def offers_to(macs: List[str]) -> Dict[str, List[List[str]]]:
    """MAC -> [server address, offered address] of every offer it got (a DISCOVER only:
    nothing is leased)."""
    run = lab_exec(sys.executable, "-c", _OFFER_PROBE, BRIDGE, *macs, timeout=120)
    return json.loads(run.stdout)
