# ec2ha.cluster — every target installs what it needs.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export PATH := $(VENV)/bin:$(PATH)

.PHONY: help venv collection test unit unit-boto-min integration sanity lint lab-test build build-check package-check demo demo-moto bench faults lab-up lab-cluster lab-down lab-bench clean

help:
	@echo "make demo       - the lab: site.yml builds the pair, the primary is powered off under client writes, timeline"
	@echo "make test       - every test: unit (also on the oldest boto3), integration (moto), sanity, lint, tarball, Galaxy import, lab"
	@echo "make bench      - lab figures, medians of 3 unplanned failovers, a lost standby, agent starts vs the stock agents, 6 planned switchovers"
	@echo "make faults     - the lab fault matrix: each fault 10 times (RUNS=, FAULTS=a,b), table in .build/faults/faults.{json,md}"
	@echo "make lab-cluster - the lab with the pair built, left running, and the commands to try (a switchover); make lab-down ends it"
	@echo "make demo-moto  - moto only: two nodes, all three endpoints moved and back with the modules"

venv: $(STAMP)
$(STAMP): requirements-dev.txt requirements-test.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

# Make the checkout importable as ec2ha.cluster for ansible-playbook / ansible-doc, and for the
# venv's Python (the lab, the demo): a .pth file in its site-packages names .build/collections.
collection: venv
	mkdir -p .build/collections/ansible_collections/ec2ha
	ln -sfn $(CURDIR) .build/collections/ansible_collections/ec2ha/cluster
	echo $(CURDIR)/.build/collections > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/ec2ha-collection.pth"

test: unit unit-boto-min integration sanity lint build-check package-check lab-test

unit: collection
	cd .build/collections && $(PY) -m pytest -q $(CURDIR)/tests/unit

# The cores' unit tests again on the oldest boto3/botocore requirements.txt declares, Debian 12's
# (what the roles install on the nodes), in their own venv under .build.
unit-boto-min: venv
	tests/support/boto_min.sh

integration: venv
	tests/support/ansible_test.sh integration

sanity: venv
	tests/support/ansible_test.sh sanity

lint: collection
	ansible-lint --profile production playbooks/ roles/

lab-test: collection
	$(PY) -m pytest -q tests/lab

build: venv
	mkdir -p .build/dist
	ansible-galaxy collection build --force --output-path .build/dist

# The built tarball installs, documents every module and runs one against moto.
build-check: venv
	tests/support/build_check.sh

# The tarball as Galaxy, Automation Hub, the docsite and ansible-builder see it: galaxy-importer,
# antsibull-docs and antsibull-changelog lint, playbook syntax checks, ansible-builder create and
# introspect. Its tools (requirements-packaging.txt) install themselves in .build/package-tools.
package-check:
	tests/support/package_check.sh

lab-up: collection
	$(PY) -m lab up

# The lab with the pair built by site.yml, left running for a switchover by hand (make lab-down ends it).
lab-cluster: collection
	$(PY) -m demo.lab_cluster

lab-down: collection
	$(PY) -m lab down

lab-bench: collection
	$(PY) -m lab bench

bench: collection
	$(PY) -m lab bench
	$(PY) -m lab.bench.failover_bench 3 --standby-loss --agents 3
	$(PY) -m lab.bench.switchover_bench 6

# The fault matrix: every fault of lab/matrix/catalogue.py RUNS times (a subset: FAULTS=a,b).
RUNS ?= 10
faults: collection
	$(PY) -m lab.matrix $(RUNS) $(if $(FAULTS),--only $(FAULTS))

demo: collection
	$(PY) -m demo.cluster_demo

demo-moto: collection
	PYTHONPATH=$(CURDIR)/tests/support $(PY) demo/demo.py

clean:
	-$(PY) -m lab down
	rm -rf .build
