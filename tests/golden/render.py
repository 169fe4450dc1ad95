# SPDX-License-Identifier: GPL-3.0-or-later
"""The golden renderer: every config the roles write, for every case, into one tree.

    python tests/golden/render.py --update     rewrite tests/golden/expected/<case>.golden
    python tests/golden/render.py --check      render into a temporary directory and compare
    python tests/golden/render.py --out DIR    render into DIR

Each case is a list of inventory sources; render.yml runs once per case over its
pxe_servers and writes <out>/<case>/<server>/<path on the host>. The expected tree of a
case is kept as one bundle file, expected/<case>.golden: a header line
"=== <server>/<path> <length in bytes>" before each file's bytes (the iPXE scripts start
with #!ipxe, which ansible-test's shebang check refuses in a file of their own).
tests/unit/test_golden.py renders and compares on every unit run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXPECTED = HERE / "expected"
STAND_IN = "tests/golden/inventories"

# Case name -> inventory sources, relative to the repository root, in precedence order.
CASES: dict[str, list[str]] = {
    # Two sites, relays, a Kea hot-standby pair and a load-balancing pair.
    "example": ["inventories/example"],
    # The lab as tests/lab/lab.py up sets it up, with each DHCP backend.
    "lab-kea": ["inventories/lab", f"{STAND_IN}/lab"],
    "lab-isc": ["inventories/lab", f"{STAND_IN}/lab", f"{STAND_IN}/isc"],
    # molecule/relay and molecule/relay-isc.
    "relay-kea": ["inventories/lab", "molecule/relay/inventory", f"{STAND_IN}/lab"],
    "relay-isc": ["inventories/lab", "molecule/relay/inventory", f"{STAND_IN}/lab", f"{STAND_IN}/isc"],
    # molecule/ha (Kea hot-standby), and an ISC failover pair.
    "ha-kea": ["inventories/lab", f"{STAND_IN}/lab", f"{STAND_IN}/ha-kea"],
    "ha-isc": ["inventories/lab", f"{STAND_IN}/lab", f"{STAND_IN}/ha-isc"],
    # molecule/proxy: proxyDHCP (dnsmasq) beside a foreign DHCP server; MACs only.
    "proxy": ["molecule/proxy/inventory", f"{STAND_IN}/lab", f"{STAND_IN}/proxy"],
    # The grub loader chain (docs/secure-boot.md): a profile group and a node on it, Kea and dhcpd.
    "grub-kea": ["inventories/lab", f"{STAND_IN}/lab", f"{STAND_IN}/grub"],
    "grub-isc": ["inventories/lab", f"{STAND_IN}/lab", f"{STAND_IN}/grub", f"{STAND_IN}/isc"],
    # HTTPS on, other ports, and the other knobs away from their defaults.
    "lab-tls": ["inventories/lab", f"{STAND_IN}/lab", f"{STAND_IN}/tls"],
}


def _collections_path() -> str:
    """A collections path on which centra.pxe is this checkout (.ansible/collections, as scripts/test.sh makes it)."""
    for base in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep):
        link = Path(base, "ansible_collections", "centra", "pxe")
        if base and link.exists() and link.resolve() == ROOT:
            return base
    base = ROOT / ".ansible" / "collections"
    link = base / "ansible_collections" / "centra" / "pxe"
    if not (link.exists() and link.resolve() == ROOT):
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(ROOT)
    return str(base)


def _ansible_playbook() -> str:
    """The ansible-playbook of this Python's environment (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else shutil.which("ansible-playbook") or "ansible-playbook"


def _printed(stdout: str, var: str) -> dict[str, t.Any]:
    """Server -> value of `var`, from the debug task's results in the default callback's JSON output."""
    found = {}
    decoder = json.JSONDecoder()
    for marker in re.finditer(r"^ok: \[([^\]]+)\] => (?=\{)", stdout, re.M):
        result = decoder.raw_decode(stdout[marker.end():])[0]
        if var in result:
            found[marker.group(1)] = result[var]
    return found


def _render_case(name: str, out: Path) -> None:
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    command = [_ansible_playbook(), "--skip-tags", "golden_role_tasks",
               "-e", f"golden_out={target}", str(HERE / "render.yml")]
    for source in CASES[name]:
        command[1:1] = ["-i", source]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_collections_path(), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    # The working directory matters: the stand-in lab profiles name their assets under
    # /proc/self/cwd (see tests/golden/inventories/lab/group_vars/pxe_servers.yml).
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=600)
    if run.returncode != 0:
        raise RuntimeError("case %s: ansible-playbook failed (%d)\n%s\n%s"
                           % (name, run.returncode, run.stdout[-6000:], run.stderr[-3000:]))
    rendered = _printed(run.stdout, "golden_rendered")
    if sorted(rendered) != sorted(p.name for p in target.iterdir()):
        raise RuntimeError("case %s: printed files for %s, node scripts for %s"
                           % (name, sorted(rendered), sorted(p.name for p in target.iterdir())))
    for server, files_of_server in rendered.items():
        for dest, content in files_of_server.items():
            path = target / server / dest.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode("utf-8"))


def render(out: Path, cases: list[str] | None = None) -> None:
    """Render the cases (default: all) into out/<case>/..., two ansible-playbook runs at a time."""
    names = cases or list(CASES)
    workers = max(1, min(len(names), os.cpu_count() or 1, 4))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(_render_case, name, out) for name in names]:
            future.result()


def files(tree: Path) -> dict[str, Path]:
    """Every file under tree, by its path relative to tree."""
    return {p.relative_to(tree).as_posix(): p for p in sorted(tree.rglob("*")) if p.is_file()}


BUNDLE_SUFFIX = ".golden"
HEADER = re.compile(rb"=== (\S+) (\d+)\n")


def pack(tree: Path) -> bytes:
    """The files under tree as one bundle, in path order."""
    out = bytearray()
    for name, path in files(tree).items():
        data = path.read_bytes()
        out += b"=== %s %d\n" % (name.encode("utf-8"), len(data)) + data + b"\n"
    return bytes(out)


def unpack(bundle: bytes, tree: Path) -> None:
    """Write the files of a bundle under tree."""
    at = 0
    while at < len(bundle):
        match = HEADER.match(bundle, at)
        if not match:
            raise ValueError("not a golden bundle at byte %d" % at)
        start = match.end()
        end = start + int(match.group(2))
        path = tree / match.group(1).decode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bundle[start:end])
        at = end + 1


def expected_tree(out: Path, cases: list[str] | None = None) -> Path:
    """Unpack the expected bundles (default: every one there is) into out/<case>/...; returns out."""
    names = cases or sorted(p.name[:-len(BUNDLE_SUFFIX)] for p in EXPECTED.glob("*" + BUNDLE_SUFFIX))
    for name in names:
        bundle = EXPECTED / (name + BUNDLE_SUFFIX)
        (out / name).mkdir(parents=True, exist_ok=True)
        if bundle.exists():
            unpack(bundle.read_bytes(), out / name)
    return out


def compare(expected: Path, actual: Path, max_diffs: int = 5) -> list[str]:
    """The differences between two trees: missing and extra files, then unified diffs
    of the first max_diffs files whose bytes differ. Empty when identical."""
    want, got = files(expected), files(actual)
    report = ["missing (expected, not rendered): %s" % name for name in sorted(want.keys() - got.keys())]
    report += ["extra (rendered, not expected): %s" % name for name in sorted(got.keys() - want.keys())]
    differing = [name for name in sorted(want.keys() & got.keys()) if want[name].read_bytes() != got[name].read_bytes()]
    for name in differing[:max_diffs]:
        before = want[name].read_bytes().decode("utf-8", "replace").splitlines(keepends=True)
        after = got[name].read_bytes().decode("utf-8", "replace").splitlines(keepends=True)
        diff = "".join(difflib.unified_diff(before, after, "expected/" + name, "rendered/" + name))
        report.append("different: %s\n%s" % (name, diff or "(same text, different bytes)"))
    if len(differing) > max_diffs:
        more = differing[max_diffs:]
        report.append("... and %d more different files: %s" % (len(more), ", ".join(more)))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--update", action="store_true", help="rewrite tests/golden/expected")
    action.add_argument("--check", action="store_true", help="render into a temporary directory and compare")
    action.add_argument("--out", type=Path, help="render into this directory")
    parser.add_argument("--case", action="append", choices=list(CASES), help="only this case (repeatable)")
    args = parser.parse_args()
    if args.update:
        if args.case:
            parser.error("--update rewrites every case: leave out --case")
        with tempfile.TemporaryDirectory() as tmp:
            render(Path(tmp))
            if EXPECTED.exists():
                shutil.rmtree(EXPECTED)
            EXPECTED.mkdir()
            for name in CASES:
                (EXPECTED / (name + BUNDLE_SUFFIX)).write_bytes(pack(Path(tmp) / name))
            count = len(files(Path(tmp)))
        print("rewrote %s: %d files in %d bundles" % (EXPECTED, count, len(CASES)))
        return 0
    if args.out:
        render(args.out.resolve(), args.case)
        return 0
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as want:
        render(Path(tmp), args.case)
        report = compare(expected_tree(Path(want), args.case), Path(tmp))
    print("\n".join(report) or "identical")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
