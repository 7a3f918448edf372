#!/usr/bin/env bash
# The collection as Galaxy, Automation Hub, the Ansible docsite and ansible-builder see it, with the
# tools they run (pinned in requirements-packaging.txt, installed in .build/package-tools):
#   1. ansible-galaxy collection build; the tarball holds no development pins;
#   2. galaxy-importer on the tarball (tests/support/galaxy-importer.cfg: Galaxy's and Automation
#      Hub's checks, ansible-lint and flake8 on, ansible-test off): no ERROR and no WARNING line;
#   3. antsibull-docs lint-collection-docs --plugin-docs (plugins and roles) and antsibull-changelog
#      lint (fragments and changelogs/changelog.yaml): no message;
#   4. from the installed tarball: ansible-doc renders every role, every playbook passes
#      ansible-playbook --syntax-check with no extra vars, and rejoin.yml run without its -e variable
#      stops in its first task with one sentence that names it;
#   5. ansible-builder create on docs/execution-environment.yml (the sample, with the tarball beside
#      it); the collection installed as its galaxy stage would; builder's own introspection (the
#      context's introspect.py, and ansible-builder introspect) finds exactly the collection's
#      requirements.txt and bindep.txt. No container is built (there is no container engine here).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
tools=${PACKAGE_TOOLS:-$top/.build/package-tools}
work=$top/.build/package-check
start=$(date +%s)

step() { printf '== %s (%s s)\n' "$*" "$(($(date +%s) - start))"; }
fail() { printf 'package-check FAILED: %s\n' "$*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"/{dist,import,collections,docs,ee,run}

step "tools from requirements-packaging.txt in $tools"
stamp=$tools/.installed-$(sha256sum "$top/requirements-packaging.txt" | cut -c1-16)
if [[ ! -f $stamp ]]; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  { "$tools/bin/python" -m pip install -q --upgrade pip &&
    "$tools/bin/python" -m pip install -q -r "$top/requirements-packaging.txt"; } > "$work/pip.log" 2>&1 ||
    { grep -v '^WARNING: Location' "$work/pip.log" | tail -20; fail "pip could not install requirements-packaging.txt"; }
  touch "$stamp"
fi
export PATH="$tools/bin:$PATH"
# Nothing from the checkout's own collections path (the Makefile's link) or from ~/.ansible.
unset ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
export HOME=$work/home ANSIBLE_HOME=$work/home/.ansible ANSIBLE_LOCAL_TEMP=$work/home/.ansible/tmp
export ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=false ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
mkdir -p "$ANSIBLE_LOCAL_TEMP"
for tool in galaxy-importer ansible-core ansible-lint flake8 ansible-builder antsibull-docs antsibull-changelog; do
  printf '%s %s; ' "$tool" "$(python -m pip show "$tool" 2>/dev/null | sed -n 's/^Version: //p')"
done; echo

step "build"
(cd "$top" && ansible-galaxy collection build --force --output-path "$work/dist" >/dev/null)
tarball=$(find "$work/dist" -name 'ec2ha-cluster-*.tar.gz' -print -quit)
[[ -n $tarball ]] || fail "ansible-galaxy collection build wrote no ec2ha-cluster-*.tar.gz"
tar -tzf "$tarball" | sed 's|^\./||' > "$work/contents.txt"
# Development pins and settings are the checkout's; an EE build would pick a pinned ansible-core up.
if grep -E '^(requirements-(dev|test|packaging)\.txt|\.ansible-lint)$' "$work/contents.txt"; then
  fail "the tarball holds development files (listed above)"
fi
for required in requirements.txt bindep.txt meta/execution-environment.yml docs/execution-environment.yml; do
  grep -qx "$required" "$work/contents.txt" || fail "the tarball lacks $required"
done
echo "$(basename "$tarball"): $(wc -l < "$work/contents.txt") entries"

step "galaxy-importer"
(cd "$work/import" &&
  GALAXY_IMPORTER_CONFIG=$top/tests/support/galaxy-importer.cfg \
  GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP=$work/import/ansible-tmp \
  python -m galaxy_importer.main "$tarball" > importer.log 2>&1) ||
  { cat "$work/import/importer.log"; fail "galaxy-importer exited with an error"; }
if grep -E '^(WARNING|ERROR|CRITICAL)' "$work/import/importer.log"; then
  fail "galaxy-importer reported the problems above (full log: $work/import/importer.log)"
fi
grep -q '^Linting collection via ansible-lint' "$work/import/importer.log" || fail "galaxy-importer ran no ansible-lint"
grep -q 'via flake8\.\.\.$' "$work/import/importer.log" || fail "galaxy-importer ran no flake8"
closing=$(tail -1 "$work/import/importer.log")
[[ $closing == "Importer processing completed successfully" ]] || fail "galaxy-importer ended with: $closing"
echo "galaxy-importer: $closing (no warning, no error)"

step "antsibull-docs lint-collection-docs --plugin-docs"
mkdir -p "$work/docs/ansible_collections/ec2ha"
ln -sfn "$top" "$work/docs/ansible_collections/ec2ha/cluster"
ANSIBLE_COLLECTIONS_PATH=$work/docs antsibull-docs lint-collection-docs --plugin-docs \
  --validate-collection-refs all --disallow-unknown-collection-refs --check-extra-docs-refs \
  "$work/docs/ansible_collections/ec2ha/cluster" > "$work/docs/lint.log" 2>&1 ||
  { cat "$work/docs/lint.log"; fail "antsibull-docs lint-collection-docs failed"; }
[[ ! -s $work/docs/lint.log ]] || { cat "$work/docs/lint.log"; fail "antsibull-docs lint-collection-docs reported the above"; }
echo "antsibull-docs lint-collection-docs --plugin-docs: no message"

step "antsibull-changelog lint"
(cd "$top" && antsibull-changelog lint && antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml) \
  > "$work/changelog-lint.log" 2>&1 || { cat "$work/changelog-lint.log"; fail "antsibull-changelog lint failed"; }
[[ ! -s $work/changelog-lint.log ]] || { cat "$work/changelog-lint.log"; fail "antsibull-changelog lint reported the above"; }
echo "antsibull-changelog lint: $(find "$top/changelogs/fragments" -name '*.y*ml' | wc -l) fragments and changelog.yaml, no message"

# From here on only the installed tarball is visible.
export ANSIBLE_COLLECTIONS_PATH=$work/collections
ansible-galaxy collection install --offline --no-deps --force -p "$work/collections" "$tarball" >/dev/null
installed=$work/collections/ansible_collections/ec2ha/cluster
cd "$work/run"

step "ansible-doc renders every role of the installed copy"
mapfile -t roles < <(sed -n 's|^roles/\([a-z0-9_]*\)/meta/argument_specs\.yml$|\1|p' "$work/contents.txt" | sort)
((${#roles[@]})) || fail "the tarball holds no role with meta/argument_specs.yml"
for role in "${roles[@]}"; do
  out=$(ansible-doc -t role "ec2ha.cluster.$role" 2>&1) || fail "ansible-doc -t role ec2ha.cluster.$role: $out"
  grep -q "^ENTRY POINT: .*main" <<<"$out" || fail "ansible-doc -t role ec2ha.cluster.$role shows no main entry point: $(head -3 <<<"$out")"
  echo "ok ansible-doc -t role ec2ha.cluster.$role"
done

step "ansible-playbook --syntax-check, no extra vars"
mapfile -t playbooks < <(sed -n 's|^\(playbooks/[^/]*\.yml\)$|\1|p' "$work/contents.txt" | sort)
((${#playbooks[@]})) || fail "the tarball holds no playbook"
for pb in "${playbooks[@]}"; do
  out=$(ansible-playbook --syntax-check -i localhost, "$installed/$pb" 2>&1) || fail "$pb: $out"
  if grep -E '^\[(ERROR|WARNING)\]' <<<"$out" | grep -v 'Could not match supplied host pattern'; then
    fail "$pb: the syntax check printed the above"
  fi
  echo "ok --syntax-check $pb"
done

# A variable a playbook needs on its command line: the play itself says, in one sentence, what is
# missing (its first task), before it reads or writes anything.
step "rejoin.yml without -e ec2ha_rejoin_node"
ansible-playbook -i localhost, -c local "$installed/playbooks/rejoin.yml" > rejoin.log 2>&1 &&
  fail "rejoin.yml without ec2ha_rejoin_node succeeded"
python - rejoin.log <<'EOF' || { cat rejoin.log; fail "rejoin.yml did not stop in its first task with one sentence about ec2ha_rejoin_node"; }
import json
import re
import sys

out = open(sys.argv[1]).read()
tasks = re.findall(r"^TASK \[(.*)\] \**$", out, re.M)
fatal = re.findall(r"^fatal: \[[^]]+\]: FAILED! => (\{.*\})$", out, re.M)
assert len(tasks) == 1 and len(fatal) == 1, f"expected the first task to fail and no other task to run: {tasks}"
msg = json.loads(fatal[0])["msg"].strip()
assert "ec2ha_rejoin_node" in msg and "\n" not in msg and msg.endswith(".") and ". " not in msg, msg
print(f"rejoin.yml stopped in its first task ({tasks[0]}): {msg}")
EOF

step "ansible-builder create on docs/execution-environment.yml"
cp "$installed/docs/execution-environment.yml" "$tarball" "$work/ee/"
sample_tarball=$(sed -n 's|^  - src: \(ec2ha-cluster-.*\.tar\.gz\)$|\1|p' "$work/ee/execution-environment.yml")
[[ $sample_tarball == "$(basename "$tarball")" ]] ||
  fail "docs/execution-environment.yml installs '$sample_tarball', the build makes $(basename "$tarball") (galaxy.yml version)"
(cd "$work/ee" && ansible-builder create -f execution-environment.yml --context context \
  --output-filename Containerfile > create.log 2>&1) || { cat "$work/ee/create.log"; fail "ansible-builder create failed"; }
tail -1 "$work/ee/create.log"
ctx=$work/ee/context
[[ -f $ctx/_build/collections/$(basename "$tarball") ]] || fail "the build context lacks the tarball"
grep -q 'ansible-galaxy collection install .*-r requirements.yml' "$ctx/Containerfile" ||
  fail "the Containerfile installs no collection from requirements.yml"
grep -q 'introspect.py introspect' "$ctx/Containerfile" || fail "the Containerfile runs no introspection"

# The galaxy stage, without a container: in the context's /build, the same ansible-galaxy command.
eeroot=$work/ee/root
# The image's collections path is its own, empty before this stage.
(cd "$ctx/_build" && ANSIBLE_COLLECTIONS_PATH=$eeroot/usr/share/ansible/collections ANSIBLE_GALAXY_DISABLE_GPG_VERIFY=1 \
  ansible-galaxy collection install --offline -r requirements.yml \
  --collections-path "$eeroot/usr/share/ansible/collections" > "$work/ee/galaxy.log" 2>&1) ||
  { cat "$work/ee/galaxy.log"; fail "the galaxy stage's ansible-galaxy collection install failed"; }
grep -q "^ec2ha.cluster:.* was installed successfully" "$work/ee/galaxy.log" ||
  { cat "$work/ee/galaxy.log"; fail "the galaxy stage did not install ec2ha.cluster from the tarball"; }
# The builder stage's own script, then the CLI: both must find exactly the collection's files.
python "$ctx/_build/scripts/introspect.py" introspect "$eeroot/usr/share/ansible/collections" \
  --write-pip "$work/ee/requirements.txt" --write-bindep "$work/ee/bindep.txt" > "$work/ee/introspect.yml"
ansible-builder introspect --sanitize "$eeroot/usr/share/ansible/collections" > "$work/ee/introspect-cli.yml"
python - "$work/ee" "$installed" <<'EOF' || fail "builder's introspection does not find the collection's dependencies"
import sys
from pathlib import Path

import yaml

ee, installed = Path(sys.argv[1]), Path(sys.argv[2])


def lines(path: Path) -> list:
    return [x.strip() for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]


origin = "  # from collection ec2ha.cluster"
want = {"python": [x + origin for x in lines(installed / "requirements.txt")],
        "system": [x + origin for x in lines(installed / "bindep.txt")]}
assert want["python"] == ["boto3>=1.26.27" + origin, "botocore>=1.29.27" + origin], want["python"]
assert want["system"] == ["openssh-client [platform:dpkg]" + origin, "openssh-clients [platform:rpm]" + origin], want["system"]
for name in ("introspect.yml", "introspect-cli.yml"):
    found = yaml.safe_load((ee / name).read_text())
    assert {k: found.get(k) for k in want} == want, f"{name}: {found}"
assert lines(ee / "requirements.txt") == want["python"], lines(ee / "requirements.txt")
assert lines(ee / "bindep.txt") == want["system"], lines(ee / "bindep.txt")
print("builder introspection:", "; ".join(x.replace(origin, "") for x in want["python"] + want["system"]))
EOF

echo "package-check passed in $(($(date +%s) - start)) s: galaxy-importer, antsibull-docs, antsibull-changelog," \
  "${#roles[@]} roles documented, ${#playbooks[@]} playbooks syntax-checked, ansible-builder create + introspect"
