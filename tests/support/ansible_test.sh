#!/usr/bin/env bash
# Run ansible-test on a copy of the collection laid out as ansible_collections/ec2ha/cluster.
#   ansible_test.sh integration [targets...]   (starts and stops a moto server on loopback)
#   ansible_test.sh sanity|units [args...]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$top/.venv}
work=$top/.build/ansible-test
coll=$work/ansible_collections/ec2ha/cluster
kind=$1; shift

# A fresh copy of what git tracks or would track (not ignored files), so ansible-test sees the real layout.
rm -rf "$coll"; mkdir -p "$coll"
# Files deleted from the work tree but still tracked are skipped; any other copy error stops the run.
(cd "$top" && git ls-files -co --exclude-standard -z |
  while IFS= read -r -d '' f; do if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi; done |
  xargs -0 -r cp --parents -P -t "$coll")
# ansible-test lists a collection's files with git, so the copy gets its own index.
(cd "$coll" && git init -q && git add -A)

export HOME=$work/home PATH="$venv/bin:$PATH"
mkdir -p "$HOME"
cd "$coll"
case "$kind" in
  integration)
    state=$work/moto
    url=$(python "$top/tests/support/moto_server.py" start "$state")
    trap 'python "$top/tests/support/moto_server.py" stop "$state"' EXIT
    sed "s|@ENDPOINT@|$url|" tests/integration/integration_config.yml.template > tests/integration/integration_config.yml
    ansible-test integration --local --python 3.11 --color no "$@"
    ;;
  *)
    # Sanity/units build virtual environments and bootstrap pip into them from a cached get-pip
    # script; provide a stand-in that installs pip from the PyPI wheel (see sanity_bootstrap.py).
    python "$top/tests/support/sanity_bootstrap.py" "$HOME" >/dev/null
    ansible-test "$kind" --local --python 3.11 --color no "$@"
    ;;
esac
