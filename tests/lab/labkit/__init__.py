"""Building blocks of the centra.pxe lab harness (driven by ``tests/lab/lab.py``).

One module per job: ``common`` (paths, commands, processes, state), ``net`` (bridge,
taps, nftables), ``rootfs`` (debootstrap, apt cache), ``container`` (systemd-nspawn),
``image`` (test kernel + initrd), ``boot`` (QEMU PXE clients), ``inventory``.
Standard library only: the harness must run on a bare Debian 12 machine as root.
"""
