#!/usr/bin/env bash
# Check the collection as users get it: the built tarball, installed, not the checkout.
#   1. ansible-galaxy collection build, and the tarball holds no lab, demo, venv, build or test output;
#   2. the tarball installs into a scratch collections path;
#   3. ansible-doc renders every module in it, from that installed copy;
#   4. vip_route, run from that installed copy against a moto server on loopback, moves a route,
#      and boto3 reads the new route back from moto.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$top/.venv}
work=$top/.build/build-check
export PATH="$venv/bin:$PATH"

rm -rf "$work"
mkdir -p "$work/dist" "$work/collections" "$work/run"

step() { printf '== %s\n' "$*"; }
fail() { printf 'build-check FAILED: %s\n' "$*" >&2; exit 1; }

step "build"
(cd "$top" && ansible-galaxy collection build --force --output-path "$work/dist" >/dev/null)
tarball=$(find "$work/dist" -name 'ec2ha-cluster-*.tar.gz' -print -quit)
[[ -n $tarball ]] || fail "ansible-galaxy collection build wrote no ec2ha-cluster-*.tar.gz"
tar -tzf "$tarball" | sed 's|^\./||' > "$work/contents.txt"
echo "$(basename "$tarball"): $(wc -l < "$work/contents.txt") entries"

# Development-only content that must never ship (galaxy.yml build_ignore keeps it out).
forbidden='^(lab|demo|\.venv|\.build|\.ci|\.git|\.ansible|tests/output|tests/lab|tests/support)(/|$)|(^|/)(__pycache__|\.pytest_cache)(/|$)|\.pyc$|^tests/integration/integration_config\.yml$'
if grep -E "$forbidden" "$work/contents.txt" > "$work/forbidden.txt"; then
  fail "the tarball holds development files: $(head -5 "$work/forbidden.txt" | tr '\n' ' ')"
fi
for required in MANIFEST.json FILES.json meta/runtime.yml plugins/module_utils/aws.py plugins/doc_fragments/aws.py; do
  grep -qx "$required" "$work/contents.txt" || fail "the tarball lacks $required"
done
mapfile -t modules < <(sed -n 's|^plugins/modules/\([a-z0-9_]*\)\.py$|\1|p' "$work/contents.txt" | grep -v '^__init__$' | sort)
((${#modules[@]})) || fail "the tarball holds no module"
echo "modules: ${modules[*]}"

# From here on, only the installed copy is visible: no checkout link, no collections on sys.path.
export ANSIBLE_COLLECTIONS_PATH=$work/collections ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export ANSIBLE_HOME=$work/ansible-home ANSIBLE_LOCAL_TEMP=$work/ansible-home/tmp
export ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=false
cd "$work/run"

step "install into a scratch collections path"
ansible-galaxy collection install --offline --no-deps --force -p "$work/collections" "$tarball" >/dev/null
installed=$work/collections/ansible_collections/ec2ha/cluster
[[ -f $installed/MANIFEST.json ]] || fail "no MANIFEST.json under $installed after install"

step "ansible-doc renders each module from the installed copy"
for m in "${modules[@]}"; do
  out=$(ansible-doc -t module "ec2ha.cluster.$m" 2>&1) || fail "ansible-doc ec2ha.cluster.$m: $out"
  head -1 <<<"$out" | grep -q "ec2ha.cluster.$m" || fail "ansible-doc ec2ha.cluster.$m printed no header: $(head -3 <<<"$out")"
  grep -q "$installed/plugins/modules/$m.py" <<<"$out" || fail "ansible-doc ec2ha.cluster.$m did not read the installed copy"
  grep -q "^EXAMPLES" <<<"$out" || fail "ansible-doc ec2ha.cluster.$m rendered no EXAMPLES"
  echo "ok ansible-doc ec2ha.cluster.$m"
done
listed=$(ansible-doc -t module -l ec2ha.cluster 2>&1)
for m in "${modules[@]}"; do
  grep -q "^ec2ha\.cluster\.$m " <<<"$listed" || fail "ansible-doc -l ec2ha.cluster does not list $m"
done

step "vip_route from the installed copy against moto"
[[ " ${modules[*]} " == *" vip_route "* ]] || fail "vip_route is not in the tarball"
state=$work/moto
url=$(python "$top/tests/support/moto_server.py" start "$state")
trap 'python "$top/tests/support/moto_server.py" stop "$state"' EXIT
python "$top/tests/integration/targets/setup_world/files/world.py" --endpoint-url "$url" > world.json
cat > move_vip.yml <<'EOF'
---
- name: Move the VIP to node2 with the installed collection
  hosts: localhost
  gather_facts: false
  vars:
    world: "{{ lookup('ansible.builtin.file', 'world.json') | from_json }}"
  tasks:
    - name: Route the VIP to node2 in every table that routes it
      ec2ha.cluster.vip_route:
        vip: "{{ world.vip }}"
        node: "{{ world.node2.id }}"
        endpoint_url: "{{ world.endpoint_url }}"
        region: "{{ world.region }}"
        access_key: testing
        secret_key: testing
      register: moved

    - name: The module reports the change
      ansible.builtin.assert:
        that:
          - moved is changed
          - moved.network_interface_id == world.node2.eni
EOF
# The controller's own Python has boto3; interpreter discovery could pick one that lacks it.
ansible-playbook -i localhost, -c local -e ansible_python_interpreter="$(command -v python)" move_vip.yml > playbook.log 2>&1 || { cat playbook.log; fail "the vip_route playbook failed"; }
# What moto now holds, read with boto3 and not through the collection.
python - "$url" <<'EOF' || fail "moto does not show the VIP routed to node2"
import json
import sys

import boto3

world = json.load(open("world.json"))
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name=world["region"],
                   aws_access_key_id="testing", aws_secret_access_key="testing")
tables = ec2.describe_route_tables(RouteTableIds=list(world["route_tables"].values()))["RouteTables"]
dest = world["vip"] + "/32"
targets = {t["RouteTableId"]: [r.get("NetworkInterfaceId") for r in t["Routes"] if r.get("DestinationCidrBlock") == dest]
           for t in tables}
print(f"routes for {dest}: {targets}")
wrong = {rtb: eni for rtb, eni in targets.items() if eni != [world["node2"]["eni"]]}
if len(targets) != 3 or wrong:
    raise SystemExit(f"expected every table to route {dest} to {world['node2']['eni']}; wrong: {wrong}")
EOF
echo "build-check passed: $(basename "$tarball"), ${#modules[@]} module(s) documented, vip_route moved the VIP in moto"
