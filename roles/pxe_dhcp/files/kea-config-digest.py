# SPDX-License-Identifier: GPL-3.0-or-later
"""Print the centra.pxe plan digest of the configuration kea-dhcp4 is running.

Usage: kea-config-digest.py CONTROL_SOCKET. Sends config-get to Kea's unix control
socket and prints user-context["centra.pxe"]["plan"]; exits 1 with a message on
stderr when Kea does not answer or runs a configuration without a digest.
"""

import json
import socket
import sys


def config_get(path: str) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(json.dumps({"command": "config-get"}).encode())
        data = b""
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            try:
                return json.loads(data)
            except ValueError:
                continue  # not all of it yet
    return json.loads(data)


def main() -> int:
    try:
        reply = config_get(sys.argv[1])
    except (OSError, ValueError, IndexError) as exc:
        print("kea-config-digest: no answer from Kea: %s" % exc, file=sys.stderr)
        return 1
    try:
        print(reply["arguments"]["Dhcp4"]["user-context"]["centra.pxe"]["plan"])
    except (KeyError, TypeError):
        print("kea-config-digest: Kea runs a configuration without a centra.pxe plan digest: %.200s" % reply,
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
