# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pacemaker.staging on CIB XML in memory (no Pacemaker needed): replace in place, create in a
section (creating it), delete, properties where Pacemaker reads them, node attribute defaults
that keep the cluster's value, contradictions refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.staging import (
    Absent,
    Desired,
    NodeAttributeDefault,
    parse_object,
    redacted,
    stage,
)

LIVE = """<cib epoch="7" num_updates="3" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-have-watchdog" name="have-watchdog" value="false"/>
      </cluster_property_set>
      <cluster_property_set id="extra">
        <nvpair id="extra-maintenance-mode" name="maintenance-mode" value="false"/>
      </cluster_property_set>
    </crm_config>
    <nodes>
      <node id="1" uname="alpha"/>
      <node id="2" uname="bravo">
        <instance_attributes id="nodes-2"><nvpair id="nodes-2-sync" name="sync" value="0"/></instance_attributes>
      </node>
    </nodes>
    <resources>
      <primitive id="first" class="ocf" provider="heartbeat" type="Dummy"/>
      <clone id="db-clone"><primitive id="db" class="ocf" provider="heartbeat" type="Stateful"/></clone>
      <primitive id="last" class="ocf" provider="heartbeat" type="Dummy"/>
    </resources>
    <constraints>
      <rsc_order id="first-then-last" first="first" then="last"/>
    </constraints>
  </configuration>
  <status/>
</cib>"""


def live() -> ET.Element:
    return ET.fromstring(LIVE)


def ids(parent: ET.Element) -> list:
    return [child.get("id") for child in parent]


def test_an_object_replaces_its_namesake_in_place_and_an_equal_one_is_no_change():
    cib = live()
    changed = parse_object('<primitive id="first" class="ocf" provider="heartbeat" type="Stateful"/>')
    changes = stage(cib, Desired(objects=[changed]))
    assert [c.as_dict() for c in changes] == [{"action": "replace", "tag": "primitive", "id": "first"}]
    assert ids(cib.find("configuration/resources")) == ["first", "db-clone", "last"]
    assert cib.find(".//primitive[@id='first']").get("type") == "Stateful"
    # Indentation and attribute order do not make a difference.
    same = parse_object('<primitive type="Stateful"\n  provider="heartbeat" class="ocf" id="first">\n</primitive>')
    assert stage(cib, Desired(objects=[same])) == []


def test_a_new_object_goes_to_the_end_of_its_section_and_a_missing_section_is_created():
    cib = live()
    order = parse_object('<rsc_order id="db-then-last" first="db-clone" then="last"/>')
    defaults = parse_object('<meta_attributes id="rsc-options"><nvpair id="rsc-options-x" name="x" value="1"/>'
                            '</meta_attributes>', "rsc_defaults")
    changes = stage(cib, Desired(objects=[order, defaults]))
    assert [c.action for c in changes] == ["create", "create"]
    assert ids(cib.find("configuration/constraints")) == ["first-then-last", "db-then-last"]
    assert ids(cib.find("configuration/rsc_defaults")) == ["rsc-options"]


def test_a_nested_object_is_found_and_absent_ones_are_deleted_wherever_they_are():
    cib = live()
    changes = stage(cib, Desired(absent=[Absent("primitive", "db"), Absent("rsc_order", "first-then-last"),
                                         Absent("primitive", "never-there")]))
    assert [(c.action, c.id) for c in changes] == [("delete", "db"), ("delete", "first-then-last")]
    assert cib.find(".//clone[@id='db-clone']/primitive") is None
    assert list(cib.find("configuration/constraints")) == []


def test_properties_are_updated_where_set_and_new_ones_go_to_cib_bootstrap_options():
    cib = live()
    changes = stage(cib, Desired(properties={"maintenance-mode": "true", "stonith-enabled": "true",
                                             "have-watchdog": "false"}))
    assert [c.id for c in changes] == ["extra-maintenance-mode", "cib-bootstrap-options-stonith-enabled"]
    bootstrap = cib.find(".//cluster_property_set[@id='cib-bootstrap-options']")
    assert {nv.get("name"): nv.get("value") for nv in bootstrap} == {"have-watchdog": "false",
                                                                     "stonith-enabled": "true"}
    assert cib.find(".//nvpair[@id='extra-maintenance-mode']").get("value") == "true"


def test_a_blank_crm_config_gets_cib_bootstrap_options():
    cib = ET.fromstring('<cib epoch="1"><configuration><crm_config/><nodes/><resources/><constraints/>'
                        '</configuration><status/></cib>')
    stage(cib, Desired(properties={"stonith-timeout": "600s"}))
    nvpair = cib.find("configuration/crm_config/cluster_property_set[@id='cib-bootstrap-options']/nvpair")
    assert nvpair.attrib == {"id": "cib-bootstrap-options-stonith-timeout", "name": "stonith-timeout",
                             "value": "600s"}


def test_a_node_attribute_default_is_set_once_with_crm_attribute_s_ids_and_never_overwritten():
    cib = live()
    wanted = [NodeAttributeDefault("alpha", "sync", "1"), NodeAttributeDefault("bravo", "sync", "1")]
    changes = stage(cib, Desired(node_attribute_defaults=wanted))
    assert [c.id for c in changes] == ["nodes-1-sync"]
    assert cib.find(".//node[@uname='alpha']/instance_attributes[@id='nodes-1']/nvpair").get("value") == "1"
    # bravo's value is the cluster's own since: kept.
    assert cib.find(".//node[@uname='bravo']//nvpair").get("value") == "0"
    assert stage(cib, Desired(node_attribute_defaults=wanted)) == []
    with pytest.raises(PacemakerError, match="'charlie' is not in the CIB's nodes section"):
        stage(cib, Desired(node_attribute_defaults=[NodeAttributeDefault("charlie", "sync", "1")]))


@pytest.mark.parametrize("desired, message", [
    (Desired(objects=[parse_object('<primitive id="x"/>'), parse_object('<primitive id="x"/>')]), "given twice"),
    (Desired(objects=[parse_object('<primitive id="x"/>')], absent=[Absent("primitive", "x")]), "both wanted and absent"),
    (Desired(objects=[parse_object('<rsc_order id="first" first="a" then="b"/>')]), "already names a <primitive>"),
])
def test_contradictions_are_refused_before_anything_is_staged(desired, message):
    cib = live()
    with pytest.raises(PacemakerError, match=message):
        stage(cib, desired)


@pytest.mark.parametrize("xml, section, message", [
    ("<primitive id='x'", None, r"objects\[0\] is not well-formed XML \("),
    ("<primitive class='ocf'/>", None, "has no id attribute"),
    ("<meta_attributes id='m'/>", None, "needs a section, expected one of crm_config, rsc_defaults"),
    ("<primitive id='x'/>", "resource", "needs a section"),
])
def test_bad_objects_fail_with_one_sentence_naming_them(xml, section, message):
    with pytest.raises(PacemakerError, match=message):
        parse_object(xml, section, label="objects[0]")


def test_a_secret_object_s_error_and_diff_never_show_its_content():
    with pytest.raises(PacemakerError) as error:
        parse_object('<primitive id="f"><nvpair name="secret_key" value="hunter2"', secret=True, label="secret_objects[0]")
    assert str(error.value) == "secret_objects[0] is not well-formed XML."
    obj = parse_object('<primitive id="f"><instance_attributes id="f-ia">'
                       '<nvpair id="f-ia-secret_key" name="secret_key" value="hunter2"/></instance_attributes></primitive>')
    assert "hunter2" not in ET.tostring(redacted(obj.element), encoding="unicode")
    assert "hunter2" in ET.tostring(obj.element, encoding="unicode")  # the original is untouched
