"""The emulator: a VPC in a box. The daemon (daemon.py, started and stopped by lifecycle.py) runs
moto as the control plane (control.py, with faults.py's injected errors; world.py builds the VPCs),
the hypervisor (hypervisor.py) that backs lab-tagged instances with hosts (hosts.py) and their
IMDS (imds.py), and the data plane (dataplane/)."""
