#!/usr/bin/env bash
# The unit tests of the cores (tests/unit/plugins/module_utils) on the oldest boto3/botocore the
# collection declares (requirements.txt), which are what the roles install on the nodes: Debian 12's
# python3-boto3 and python3-botocore, where the OCF agents run the same code.
#   - a venv in .build/boto-min, on Debian's own python3 where there is one, with boto3==MIN,
#     botocore==MIN and tests/support/requirements-boto-min.txt;
#   - on a Debian 12 machine, apt's candidate versions must be the declared minimums;
#   - the moto server the tests start runs from the main venv (EC2HA_MOTO_PYTHON): moto's server on
#     the botocore it is released against, the code under test on the minimum;
#   - EC2HA_BOTO_MIN=1 makes test_boto_versions.py check that the run really is on the minimums.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
main_venv=${VENV:-$top/.venv}
venv=$top/.build/boto-min
work=$top/.build/boto-min-run
start=$(date +%s)

fail() { printf 'unit-boto-min FAILED: %s\n' "$*" >&2; exit 1; }

minimum() {  # the version after NAME>= in requirements.txt
  sed -n "s/^$1>=\([0-9][0-9.]*\)\s*\(#.*\)\?$/\1/p" "$top/requirements.txt"
}
boto3_min=$(minimum boto3)
botocore_min=$(minimum botocore)
[[ -n $boto3_min && -n $botocore_min ]] || fail "requirements.txt declares no boto3>=X and botocore>=Y"
echo "declared minimums (requirements.txt): boto3 $boto3_min, botocore $botocore_min"

# What the nodes get: apt's candidate, upstream part of the Debian version (1.26.27+dfsg-1 -> 1.26.27).
if grep -qs '^VERSION_CODENAME=bookworm$' /etc/os-release && command -v apt-cache >/dev/null; then
  for pkg in python3-boto3:"$boto3_min" python3-botocore:"$botocore_min"; do
    name=${pkg%%:*} declared=${pkg#*:}
    candidate=$(apt-cache policy "$name" 2>/dev/null | sed -n 's/^  Candidate: \([0-9.]*\).*/\1/p')
    if [[ -n $candidate ]]; then
      [[ $candidate == "$declared" ]] ||
        fail "Debian 12 installs $name $candidate on the nodes, requirements.txt declares $declared"
      echo "Debian 12 $name: $candidate (the declared minimum)"
    else
      echo "apt-cache knows no $name candidate (no apt-get update yet?): not compared"
    fi
  done
fi

python=/usr/bin/python3
"$python" -c 'import venv, ensurepip' 2>/dev/null || python=python3
stamp=$venv/.installed-$(cat "$top/tests/support/requirements-boto-min.txt" <(echo "$boto3_min $botocore_min $python") |
  sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  mkdir -p "$work"
  { "$venv/bin/python" -m pip install -q --upgrade pip &&
    "$venv/bin/python" -m pip install -q "boto3==$boto3_min" "botocore==$botocore_min" \
      -r "$top/tests/support/requirements-boto-min.txt"; } > "$work/pip.log" 2>&1 ||
    { grep -v '^WARNING: Location' "$work/pip.log" | tail -20; fail "pip could not install the oldest boto3 venv"; }
  touch "$stamp"
fi
"$venv/bin/python" -c 'import sys, boto3, botocore; print(f"test venv: Python {sys.version.split()[0]}, boto3 {boto3.__version__}, botocore {botocore.__version__}")'
[[ -x $main_venv/bin/python ]] || fail "no main venv at $main_venv (make venv) for the moto server"

# The checkout importable as ansible_collections.ec2ha.cluster, as make unit does it.
mkdir -p "$work/collections/ansible_collections/ec2ha"
ln -sfn "$top" "$work/collections/ansible_collections/ec2ha/cluster"
cd "$work/collections"
EC2HA_BOTO_MIN=1 EC2HA_MOTO_PYTHON=$main_venv/bin/python \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$top/tests/unit/plugins/module_utils"
echo "unit-boto-min: boto3 $boto3_min / botocore $botocore_min in $(($(date +%s) - start)) s"
