#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: fat_image
short_description: A FAT disk image holding given files, rebuilt only when what it holds changes
version_added: 0.9.0
description:
  - Builds a FAT file system image (no partition table) from files and directory trees of the
    host, with C(mkfs.fat) (dosfstools) and C(mcopy) (mtools), in a temporary file renamed over
    O(dest) at the end, so a reader never sees half an image.
  - The image carries a manifest, C(/centra-pxe.manifest), with the sha256, size and path of
    every file, which the next run reads back with C(mtype). The image is rebuilt only when a
    file was added, removed or changed (FAT time stamps would make a byte comparison useless).
  - centra.pxe builds the Secure Boot HTTP boot image with it (docs/secure-boot.md); UEFI
    firmware boots a C(.img) URL as a RAM disk.
author:
  - centra.pxe engineers (@centra)
options:
  dest:
    description: The image file. Its directory must exist.
    type: path
    required: true
  files:
    description: Single files, as C(src) (a path on the host) and C(dest) (the path in the image).
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description: The file on the host.
        type: path
        required: true
      dest:
        description: Its path in the image, from the image's root (C(EFI/BOOT/BOOTX64.EFI)).
        type: str
        required: true
  trees:
    description: Directories whose files go into the image under C(dest).
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description: The directory on the host.
        type: path
        required: true
      dest:
        description: Where its files go in the image, from the image's root.
        type: str
        required: true
      recurse:
        description: Also the files of its subdirectories (else only the files directly in it).
        type: bool
        default: true
      rename:
        description:
          - Where a file of the tree goes instead, for the paths (relative to C(src), with C(/))
            that C(pattern) matches in full; C(replacement) may use its groups (C(\1)).
          - For many files whose long names start alike, 8.3 names spare mtools a short-name
            search through the whole directory per file, which makes thousands of them take minutes.
        type: dict
        suboptions:
          pattern:
            description: A Python regular expression.
            type: str
            required: true
          replacement:
            description: The path in the tree instead, relative to C(dest).
            type: str
            required: true
  label:
    description: The FAT volume label (at most 11 characters).
    type: str
    default: CENTRAPXE
  mode:
    description: Permissions of the image file.
    type: str
    default: "0644"
attributes:
  check_mode:
    description: Reads the sources and the image's manifest and reports whether it would be rebuilt.
    support: full
  diff_mode:
    description: The manifest before and after (one line per file).
    support: full
"""

EXAMPLES = r"""
- name: Build the Secure Boot HTTP boot image
  centra.pxe.fat_image:
    dest: /srv/centra-pxe/http/loaders/secureboot-x64.img
    files:
      - {src: /var/cache/centra-pxe/signed-loaders/efi64/shimx64.efi, dest: EFI/BOOT/BOOTX64.EFI}
    trees:
      - {src: /srv/centra-pxe/tftp/grub, dest: grub}
"""

RETURN = r"""
manifest_digest:
  description: sha256 of the image's manifest (what it holds).
  returned: always
  type: str
files:
  description: How many files the image holds.
  returned: always
  type: int
size:
  description: The image's size in bytes (when built or found).
  returned: always
  type: int
"""

import hashlib
import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

MANIFEST = "centra-pxe.manifest"
# FATs, root directory and room for FAT's own rounding.
SLACK = 4 << 20
# 65,536 directory entries of 32 bytes, a long file name taking up to three.
MAX_DIRECTORY_FILES = 20000


def cluster_bound(size):
    """The largest cluster mkfs.fat picks by default for an image of about size bytes (its
    table: 2 to 8 KiB below 512 MiB, FAT32's 4 KiB up to 8 GiB, then 16 and 32 KiB)."""
    return 8192 if size < 8 << 30 else 16384 if size < 16 << 30 else 32768


def _image_path(path):
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError("%r is not a path inside the image" % path)
    return "/".join(parts)


def collect(files, trees):
    """[(path in the image, source path)], sorted; raises ValueError on a clash or a bad path.

    FAT compares names without case: two sources that differ only in case would clash."""
    entries = {}
    for item in files:
        inside = _image_path(item["dest"])
        entries.setdefault(inside.lower(), []).append((inside, item["src"]))
    for tree in trees:
        top = tree["src"]
        if not os.path.isdir(top):
            raise FileNotFoundError("%s is not a directory" % top)
        for root, dirs, names in os.walk(top):
            dirs.sort()
            if not tree.get("recurse", True):
                dirs[:] = []
            for name in sorted(names):
                source = os.path.join(root, name)
                if not os.path.isfile(source):
                    continue
                relative = os.path.relpath(source, top).replace(os.sep, "/")
                rename = tree.get("rename")
                if rename and re.fullmatch(rename["pattern"], relative):
                    relative = re.sub(rename["pattern"], rename["replacement"], relative)
                inside = _image_path(tree["dest"] + "/" + relative)
                entries.setdefault(inside.lower(), []).append((inside, source))
    per_directory = {}
    for key in entries:
        per_directory[os.path.dirname(key)] = per_directory.get(os.path.dirname(key), 0) + 1
    crowded = sorted(d or "/" for d, count in per_directory.items() if count > MAX_DIRECTORY_FILES)
    if crowded:
        raise ValueError("more than %d files in %s: a FAT directory holds at most 65,536 entries, and a long"
                         " name takes up to three" % (MAX_DIRECTORY_FILES, ", ".join(crowded)))
    clashes = sorted(key for key, found in entries.items() if len(found) > 1)
    if clashes:
        raise ValueError("more than one file for %s in the image" % ", ".join(clashes))
    if MANIFEST in entries:
        raise ValueError("%s is the image's own manifest" % MANIFEST)
    return sorted(found[0] for found in entries.values())


def manifest(entries, sha256):
    """One line per file: sha256 (sha256(path), AnsibleModule's), size, path in the image."""
    return "".join("%s %d %s\n" % (sha256(source), os.path.getsize(source), inside) for inside, source in entries)


def image_size(entries, manifest_text):
    """Bytes enough for the files: each rounded up to the largest cluster mkfs.fat may pick,
    directories (a long name takes up to three 32-byte entries), the manifest, the FATs."""
    sizes = [os.path.getsize(source) for _inside, source in entries] + [len(manifest_text)]
    cluster = cluster_bound(sum(sizes) + len(sizes) * 8192)
    data = sum(-(-size // cluster) * cluster for size in sizes)
    dirs = {os.path.dirname(inside) for inside, _source in entries}
    directories = sum(-(-(96 * (len(entries) + 2)) // cluster) * cluster for _dir in dirs) + cluster
    return data + directories + SLACK


def read_manifest(module, mtype, dest):
    if not os.path.isfile(dest):
        return None
    rc, out, _err = module.run_command([mtype, "-i", dest, "::/" + MANIFEST], environ_update={"MTOOLS_SKIP_CHECK": "1"})
    return out if rc == 0 else None


def build(module, mkfs, mcopy, dest, entries, manifest_text, label, mode):
    directory = os.path.dirname(dest)
    staging = tempfile.mkdtemp(prefix=".fat-image-", dir=directory)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(dest) + ".", dir=directory)
    os.close(fd)
    try:
        for inside, source in entries:
            target = os.path.join(staging, *inside.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.link(source, target)  # no second copy on the same file system
            except OSError:
                shutil.copyfile(source, target)
        with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as handle:
            handle.write(manifest_text)
        os.unlink(tmp)  # mkfs.fat -C creates the file
        size_kib = -(-image_size(entries, manifest_text) // 1024)
        # --invariant: no time-based volume id; what changes the image is what it holds.
        module.run_command([mkfs, "-C", "--invariant", "-n", label, tmp, str(size_kib)], check_rc=True)
        tops = [os.path.join(staging, name) for name in sorted(os.listdir(staging))]
        module.run_command([mcopy, "-s", "-i", tmp] + tops + ["::/"], check_rc=True,
                           environ_update={"MTOOLS_SKIP_CHECK": "1"})
        os.chmod(tmp, int(mode, 8))
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.exists(tmp):
            os.unlink(tmp)


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "files": {"type": "list", "elements": "dict", "default": [], "options": {
                "src": {"type": "path", "required": True}, "dest": {"type": "str", "required": True}}},
            "trees": {"type": "list", "elements": "dict", "default": [], "options": {
                "src": {"type": "path", "required": True}, "dest": {"type": "str", "required": True},
                "recurse": {"type": "bool", "default": True},
                "rename": {"type": "dict", "options": {
                    "pattern": {"type": "str", "required": True},
                    "replacement": {"type": "str", "required": True}}}}},
            "label": {"type": "str", "default": "CENTRAPXE"},
            "mode": {"type": "str", "default": "0644"},
        },
        supports_check_mode=True,
    )
    params = module.params
    dest = params["dest"]
    if len(params["label"]) > 11:
        module.fail_json(msg="centra.pxe.fat_image: label %r is longer than 11 characters" % params["label"])
    try:
        entries = collect(params["files"], params["trees"])
        missing = [source for _inside, source in entries if not os.path.isfile(source)]
        if missing:
            raise FileNotFoundError("no such file: %s" % ", ".join(missing))
    except FileNotFoundError as exc:
        if module.check_mode:
            # A fresh host in check mode: the sources are written by the tasks before this one.
            module.exit_json(changed=True, msg="%s would be built (%s)" % (dest, exc), manifest_digest="", files=0, size=0)
        module.fail_json(msg="centra.pxe.fat_image: %s: %s" % (dest, exc))
    except ValueError as exc:
        module.fail_json(msg="centra.pxe.fat_image: %s: %s" % (dest, exc))
    mtype = module.get_bin_path("mtype", required=True)
    text = manifest(entries, module.sha256)
    digest = hashlib.sha256(text.encode()).hexdigest()
    before = read_manifest(module, mtype, dest)
    mode_ok = os.path.isfile(dest) and os.stat(dest).st_mode & 0o7777 == int(params["mode"], 8)
    changed = before != text or not mode_ok
    result = {"changed": changed, "manifest_digest": digest, "files": len(entries),
              "size": os.path.getsize(dest) if os.path.isfile(dest) else 0}
    if module._diff:
        result["diff"] = {"before": before or "", "after": text, "before_header": dest, "after_header": dest}
    if changed and not module.check_mode:
        if before == text:
            os.chmod(dest, int(params["mode"], 8))
        else:
            build(module, module.get_bin_path("mkfs.fat", required=True), module.get_bin_path("mcopy", required=True),
                  dest, entries, text, params["label"], params["mode"])
        result["size"] = os.path.getsize(dest)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
