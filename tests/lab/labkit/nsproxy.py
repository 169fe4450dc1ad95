"""SSH ProxyCommand into the lab network namespace: ``nsproxy.py [NETNS] HOST PORT``.

Run by path with Debian's python (``/usr/bin/python3 tests/lab/labkit/nsproxy.py``), so
it imports nothing, not even the rest of labkit. Without NETNS, the namespace of the lab
that CENTRA_LAB_NAME names (the rule of labkit.common.NETNS): molecule's config uses
that form, so one config serves every lab.

The PXE hosts live on 192.0.2.0/24 inside the ``cpxe-lab`` network namespace, which
the build machine cannot route to (it may use 192.0.2.0/24 itself). The inventory
written by ``lab.py up`` therefore tells ssh to reach them through this relay:
it enters the namespace, connects, and copies bytes between stdin/stdout and the
socket. Standard library only; needs root (setns).
"""
from __future__ import annotations

import ctypes
import os
import select
import socket
import sys

CLONE_NEWNET = 0x40000000
CHUNK = 65536


def enter(netns: str) -> None:
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into network namespace {netns} failed")
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def relay(sock: socket.socket) -> None:
    """Copy both ways until the server closes; half-close when stdin ends."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    stdin_open = True
    while True:
        watched = [sock, stdin] if stdin_open else [sock]
        readable, _writable, _errors = select.select(watched, [], [])
        if stdin_open and stdin in readable:
            data = os.read(stdin, CHUNK)
            if data:
                sock.sendall(data)
            else:
                stdin_open = False
                sock.shutdown(socket.SHUT_WR)
        if sock in readable:
            data = sock.recv(CHUNK)
            if not data:
                return
            write_all(stdout, data)


def main() -> int:
    if len(sys.argv) == 3:
        lab_name = os.environ.get("CENTRA_LAB_NAME", "")
        sys.argv.insert(1, f"cpxe-lab-{lab_name}" if lab_name else "cpxe-lab")
    if len(sys.argv) != 4:
        print("usage: nsproxy.py [NETNS] HOST PORT", file=sys.stderr)
        return 2
    netns, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        enter(netns)
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as err:
        print(f"nsproxy: {host}:{port} in namespace {netns}: {err}", file=sys.stderr)
        return 1
    sock.settimeout(None)
    with sock:
        relay(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
