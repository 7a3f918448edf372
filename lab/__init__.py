"""The ec2ha lab: a VPC in a box (moto + network namespaces), excluded from the built collection.

`python -m lab up` brings it up; see lab/cli.py. lab/topology.py is the shared contract between
the control plane (control, daemon, hypervisor, hosts, imds, world) and the network data plane.
"""
