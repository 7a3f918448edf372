#!/usr/bin/env bash
# Run ansible-test on a copy of the collection laid out as ansible_collections/ec2ha/cluster.
#   ansible_test.sh integration [targets...]   (starts and stops a moto server on loopback)
#   ansible_test.sh sanity|units [args...]
# Python: 3.11 only (the machine's python3). SANITY_EXTRA_PYTHONS="3.9 3.10 3.12 3.13" also runs the
# two multi-version sanity tests (compile, import) on each listed version that has an interpreter
# (on PATH as pythonX.Y, or under ~/.pyenv/versions); a version without one is reported as skipped.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$top/.venv}
work=$top/.build/ansible-test
kind=$1; shift
# One copy per kind, so a sanity run and an integration run do not remove each other's tree.
coll=$work/$kind/ansible_collections/ec2ha/cluster

# A fresh copy of what git tracks or would track (not ignored files), so ansible-test sees the real layout.
rm -rf "$coll"; mkdir -p "$coll"
# Files deleted from the work tree but still tracked are skipped; any other copy error stops the run.
(cd "$top" && git ls-files -co --exclude-standard -z |
  while IFS= read -r -d '' f; do if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi; done |
  xargs -0 -r cp --parents -P -t "$coll")
# ansible-test lists a collection's files with git, so the copy gets its own index.
(cd "$coll" && git init -q && git add -A)

# pythonX.Y for ansible-test: a working one on PATH, else pyenv's build (its shims fail for versions
# that are not selected, so they do not count).
find_python() {
  local v=$1 p
  for p in $(type -ap "python$v") "${real_home:-$HOME}"/.pyenv/versions/"$v".*/bin/"python$v"; do
    if [[ -x $p ]] && "$p" -c 'import venv' >/dev/null 2>&1; then echo "$p"; return 0; fi
  done
  return 1
}

# compile and import are the sanity tests that run once per Python version.
extra_sanity_pythons() {
  local v p bin=$work/pythons rc=0
  for v in $SANITY_EXTRA_PYTHONS; do
    if ! p=$(find_python "$v"); then
      echo "SKIPPED: sanity compile and import on Python $v (no python$v interpreter)"
      continue
    fi
    mkdir -p "$bin"; ln -sfn "$p" "$bin/python$v"
    PATH="$bin:$PATH" ansible-test sanity --local --python "$v" --color no --test compile --test import "$@" || rc=$?
  done
  return "$rc"
}

real_home=$HOME
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
    rc=0
    ansible-test "$kind" --local --python 3.11 --color no "$@" || rc=$?
    if [[ $kind == sanity && -n ${SANITY_EXTRA_PYTHONS:-} ]]; then
      extra_sanity_pythons "$@" || rc=$?
    fi
    exit "$rc"
    ;;
esac
