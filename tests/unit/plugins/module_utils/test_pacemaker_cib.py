# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pacemaker.cib against a CIB file (CIB_file): the real cibadmin, crm_verify and crm_diff, no
cluster. Check mode writes nothing; a real push patches once, then nothing differs; a CIB that
moved on since it was read refuses the patch; crm_verify's errors stop a push, not a preview."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.cib import push
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError, Runner
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.staging import Absent, Desired, parse_object

TOOLS = ("cibadmin", "crm_verify", "crm_diff")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason="needs cibadmin, crm_verify and crm_diff (apt-get install pacemaker-cli-utils)")

DUMMY = '<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy"/>'
SECRET = ('<primitive id="fence" class="stonith" type="fence_dummy"><instance_attributes id="fence-ia">'
          '<nvpair id="fence-ia-password" name="password" value="hunter2"/></instance_attributes></primitive>')


@pytest.fixture
def cib_file(tmp_path: Path) -> Path:
    """A blank CIB with two joined nodes and quorum, stonith off (crm_verify wants a device otherwise)."""
    blank = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True).stdout
    states = "".join(f'<node_state id="{i}" uname="{n}" in_ccm="true" crmd="online" join="member" expected="member"/>'
                     for i, n in ((1, "alpha"), (2, "bravo")))
    path = tmp_path / "cib.xml"
    path.write_text(blank.replace("<cib ", '<cib have-quorum="1" ', 1)
                    .replace("<crm_config/>", '<crm_config><cluster_property_set id="cib-bootstrap-options">'
                             '<nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="false"/>'
                             '</cluster_property_set></crm_config>')
                    .replace("<nodes/>", '<nodes><node id="1" uname="alpha"/><node id="2" uname="bravo"/></nodes>')
                    .replace("<status/>", f"<status>{states}</status>"))
    return path


def epoch(path: Path) -> str:
    return ET.parse(path).getroot().get("epoch")


def wanted() -> Desired:
    return Desired(objects=[parse_object(DUMMY.format(id="a")), parse_object(DUMMY.format(id="b"))],
                   properties={"stonith-timeout": "600s"})


def test_check_real_check_real(cib_file: Path):
    runner = Runner(timeout=30, cib_file=str(cib_file))
    before = epoch(cib_file)
    preview = push(runner, wanted(), check_mode=True)
    assert (preview.changed, preview.patched) == (True, False)
    assert [c.as_dict()["action"] for c in preview.changes] == ["set", "create", "create"]
    assert epoch(cib_file) == before and "Dummy" not in cib_file.read_text()
    real = push(runner, wanted(), check_mode=False)
    assert (real.changed, real.patched) == (True, True)
    root = ET.parse(cib_file).getroot()
    assert [p.get("id") for p in root.iterfind("configuration/resources/primitive")] == ["a", "b"]
    assert root.find(".//nvpair[@name='stonith-timeout']").get("value") == "600s"
    patched = epoch(cib_file)
    assert int(patched) > int(before)
    for check_mode in (True, False):
        again = push(runner, wanted(), check_mode=check_mode)
        assert (again.changed, again.patched, again.changes) == (False, False, [])
    assert epoch(cib_file) == patched


def test_diff_shows_before_and_after_with_secret_values_masked(cib_file: Path):
    runner = Runner(timeout=30, cib_file=str(cib_file))
    push(runner, wanted(), check_mode=False)
    moved = Desired(objects=[parse_object(DUMMY.format(id="a").replace("Dummy", "Stateful")),
                             parse_object(SECRET, secret=True)], absent=[Absent("primitive", "b")])
    result = push(runner, moved, check_mode=True)
    diff = result.diff()
    assert 'type="Dummy"' in diff["before"] and 'id="b"' in diff["before"]
    assert 'type="Stateful"' in diff["after"] and 'id="fence"' in diff["after"]
    assert "hunter2" not in diff["before"] + diff["after"] and 'value="********"' in diff["after"]


def test_a_cib_that_moved_on_since_it_was_read_refuses_the_patch(cib_file: Path):
    class Meddling(Runner):
        """Someone else changes the CIB between our read and our patch."""

        def run(self, argv, ok=(0,), stdin=None):
            if list(argv[:2]) == ["cibadmin", "--patch"]:
                super().run(["cibadmin", "--create", "--scope", "resources", "--xml-text", DUMMY.format(id="other")])
            return super().run(argv, ok, stdin)

    with pytest.raises(PacemakerError, match="refused the patch, it may have changed since it was read"):
        push(Meddling(timeout=30, cib_file=str(cib_file)), wanted(), check_mode=False)
    resources = [p.get("id") for p in ET.parse(cib_file).getroot().iterfind("configuration/resources/primitive")]
    assert resources == ["other"]


def test_crm_verify_errors_stop_a_push_but_not_a_preview(cib_file: Path):
    runner = Runner(timeout=30, cib_file=str(cib_file))
    fencing_without_device = Desired(properties={"stonith-enabled": "true"})
    preview = push(runner, fencing_without_device, check_mode=True)
    assert preview.changed and any("STONITH" in m for m in preview.verify_messages)
    before = epoch(cib_file)
    with pytest.raises(PacemakerError, match="crm_verify refused the staged CIB"):
        push(runner, fencing_without_device, check_mode=False)
    assert epoch(cib_file) == before
