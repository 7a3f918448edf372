"""The ec2ha lab: a VPC in a box (moto + network namespaces), excluded from the built collection.

    python -m lab up       # idempotent; installs its Debian packages once, starts the lab daemon
    python -m lab status   # hosts and their power, memory of the lab's processes
    python -m lab bench    # up/down time, host boot, power-change follow latency, memory, data plane
    python -m lab down     # stops the daemon by PID; it powers off and removes every host

Layout of lab/ (each layer imports only the ones above it in this list):
    helpers.py, topology.py  run / wait_for / poll / median; the fixed names and address plan
    emulator/    the VPC in a box: daemon.py (started and stopped by lifecycle.py) runs moto as
                 the control plane (control.py, faults.py, world.py), the hypervisor (hypervisor.py,
                 hosts.py, imds.py) and the data plane (dataplane/: snapshot -> plan -> kernel,
                 the router loop, dns, partition, probe)
    pair/        an ec2ha pair built on it by site.yml: cluster.py, client.py (writes through the
                 VIP), health.py (Pacemaker's view, rejoin), cluster_state.py, fence_race.py
    bench/       figures: lab_bench.py (`lab bench`), latency.py (data plane), failover_bench.py,
                 switchover_bench.py
    matrix/      the fault matrix (make faults): catalogue.py (the faults, through pair/ and bench/),
                 invariants.py (what must hold after each run), run.py, report.py (JSON, Markdown)
    cli.py       `python -m lab up|down|status|bench|partition|heal`, thin, on top

What `up` leaves in lab/state/ (git-ignored; everything the lab writes is there):
    lab.json        endpoint_url (moto, HTTP on loopback), keys, regions, ca_cert, ssh_key,
                    ssh_config, inventory, and the ids of the lab world (lab/emulator/world.py)
    env.sh          `. lab/state/env.sh` points the controller's AWS CLI / boto3 at moto
    ssh_config      hosts by private IP, instance id and Name, through their namespaces
    inventory.yml   Ansible inventory (group lab_hosts) using that ssh_config
    hosts/<id>/     a host's disk (overlay upper dir), boot files, console.log, pid, power mark
    pids.json, daemon.log, ca/, ssh/

A lab host exists for every instance tagged topology.LAB_HOST_TAG=true; it follows
Start/Stop/Reboot/TerminateInstances within milliseconds. Hosts reach the AWS API at its real
names over TLS (lab CA trusted) and IMDSv2 at 169.254.169.254. One lab per machine: the
namespace names in lab/topology.py are fixed, and the daemon holds a machine-wide lock.
lab/topology.py is the contract between the control plane (emulator/: control, daemon,
hypervisor, hosts, imds, world) and the network data plane (emulator/dataplane/).
"""
