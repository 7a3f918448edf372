# shellcheck shell=sh
# Helpers sourced by the CIB staging scripts of ec2ha.cluster roles.
# They only ever write to the offline copy named by $CIB_file: the live CIB is
# changed later, by one `cibadmin --patch` of the crm_diff between the two.
: "${CIB_file:?CIB_file must name the offline CIB copy to stage into}"

# cib_section NAME: make sure configuration/NAME exists (a blank CIB has no
# rsc_defaults or op_defaults, and cibadmin cannot create into a missing one).
cib_section() {
    if ! cibadmin --query --scope "$1" >/dev/null 2>&1; then
        cibadmin --create --scope configuration --xml-text "<$1/>"
    fi
}

# cib_put SCOPE < XML: replace the object with the same tag and id in place
# (so its position, and thus crm_diff, stays stable), or create it in SCOPE
# when it does not exist yet (cibadmin exit code 105, ENXIO).
cib_put() {
    __cib_xml=$(cat)
    __cib_rc=0
    __cib_err=$(printf '%s\n' "$__cib_xml" | cibadmin --replace --xml-pipe 2>&1 >/dev/null) || __cib_rc=$?
    case $__cib_rc in
        0) ;;
        105)
            cib_section "$1"
            printf '%s\n' "$__cib_xml" | cibadmin --create --scope "$1" --xml-pipe >/dev/null
            ;;
        *)
            printf 'cib_put %s failed (%s): %s\n' "$1" "$__cib_rc" "$__cib_err" >&2
            return "$__cib_rc"
            ;;
    esac
}

# cib_property NAME VALUE: one cluster property in cib-bootstrap-options, the
# set Pacemaker itself uses, so the value is the one that takes effect.
cib_property() {
    crm_attribute --type crm_config --name "$1" --update "$2"
}

# cib_delete TAG ID: remove an object the role no longer wants (a missing one
# is not an error: cibadmin --delete exits 0).
cib_delete() {
    cibadmin --delete --xml-text "<$1 id=\"$2\"/>" >/dev/null
}

# cib_node_attr_default NODE NAME VALUE: set a permanent node attribute only
# when it is not defined yet, so a value the cluster wrote since is kept.
cib_node_attr_default() {
    if ! crm_attribute --node "$1" --name "$2" --lifetime forever --query --quiet >/dev/null 2>&1; then
        crm_attribute --node "$1" --name "$2" --lifetime forever --update "$3"
    fi
}
