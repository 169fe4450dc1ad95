"""The centra.pxe lab harness and its test helpers: one package (tests/lab/README.md).

The harness, driven by ``tests/lab/lab.py`` (standard library only: it runs as root on a
bare Debian 12 machine): ``common`` (paths, names, commands, processes, state), ``net``
(bridge, taps, nftables), ``rootfs`` (debootstrap, apt cache), ``container``
(systemd-nspawn), ``far`` (the far network and its relay), ``image`` (test kernel +
initrd), ``boot`` (QEMU PXE clients), ``inventory`` (the inventory ``up`` writes), and
``nsproxy`` (the ssh ProxyCommand, run by path with /usr/bin/python3).

The test side, imported by the molecule scenarios' tests (molecule's config puts
tests/lab and the collection path on PYTHONPATH) and by the benchmarks: ``facts`` (lab
facts read from the inventories), ``client`` (lab.py's commands, boots, a PXE host's
state), ``playbook`` (ansible-playbook runs, PLAY RECAP and task results), ``ha`` (the
HA pair), and two programs run inside the lab network with ``python -m``:
``dhcp_probe`` and ``wire_fuzz``. These import the collection's MAC parser and boot
policy rather than keeping copies.
"""
