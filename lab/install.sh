#!/usr/bin/env bash
# Install the Debian packages the lab needs on the machine, idempotently.
# The hosts' root filesystem is an overlay over the live `/`, so whatever is installed here is
# what every lab host has. A policy-rc.d that answers 101 keeps apt from starting any daemon on
# the machine itself (openssh, corosync, postgresql would otherwise start in the root namespace).
set -euo pipefail

STATE_DIR="${LAB_STATE_DIR:-$(cd "$(dirname "$0")" && pwd)/state}"
PACKAGES=(
  openssh-server tini iproute2 socat netcat-openbsd ca-certificates python3-boto3 fence-agents
  nftables iptables conntrack
  corosync pacemaker pacemaker-cli-utils crmsh resource-agents resource-agents-paf drbd-utils postgresql
  bind9-dnsutils  # dig: the stock aws-vpc-route53 agent (the bench compares against it) requires it
)

# One dpkg-query for the lot: an installed machine costs `up` a few milliseconds here.
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null \
            | awk '$4 == "installed" {print $1}' || true)
missing=()
for p in "${PACKAGES[@]}"; do
  grep -qx "$p" <<<"$installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

mkdir -p "$STATE_DIR"
policy=/usr/sbin/policy-rc.d
restore=""
if [ -e "$policy" ]; then
  restore="$STATE_DIR/policy-rc.d.saved"
  cp -p "$policy" "$restore"
fi
cleanup() {
  if [ -n "$restore" ]; then mv -f "$restore" "$policy"; else rm -f "$policy"; fi
}
trap cleanup EXIT
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 755 "$policy"

# Package lists are refreshed once, only when something is missing: an installed machine costs
# `up` a dpkg query and nothing else.
apt-get -o DPkg::Lock::Timeout=600 update -qq
echo "lab: installing ${missing[*]}" >&2
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
