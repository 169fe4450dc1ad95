#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection placed where ansible-test wants it
# (ansible_collections/centra/pxe), with no ignore file.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# Its own venv: ansible-test --requirements pins the sanity tools (pylint, ...)
# to versions that need not agree with ansible-lint's.
venv=${CENTRA_SANITY_VENV:-$here/.venv-sanity}
if [ ! -x "$venv/bin/ansible-test" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$(grep '^ansible-core' "$here/requirements.txt")"
fi
build=$(mktemp -d /tmp/centra-pxe-sanity.XXXXXX)
trap 'rm -rf "$build"' EXIT
dest=$build/ansible_collections/centra/pxe
mkdir -p "$dest"
# Tracked and new (not ignored) files, as CI's fresh clone will have them.
# (a file listed but gone from the work tree is skipped: cp's complaint is dropped)
(cd "$here" && git ls-files -co --exclude-standard -z) | { cd "$here" || exit 1; xargs -0 -I{} cp --parents -P {} "$dest/" 2>/dev/null; true; }
cd "$dest"
git init -q && git add -A && git -c user.email=ci@invalid -c user.name=ci commit -qm sanity
# ansible-test bootstraps pip in each venv it makes with a get-pip.py it downloads
# from outside the package registries; give it our stand-in under the cached name.
pip_version=$("$venv/bin/python" - <<'PY'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PY
)
mkdir -p ~/.ansible/test/cache
cp "$here/scripts/ansible_test_get_pip.py" ~/.ansible/test/cache/get_pip_"${pip_version//./_}".py
# --local --requirements: ansible-test's --venv bootstraps pip from outside PyPI,
# which this network does not reach.
PATH="$venv/bin:$PATH" ansible-test sanity --local --requirements --python 3.11 --color no "$@"
