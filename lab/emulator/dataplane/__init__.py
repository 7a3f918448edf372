"""The data plane: moto's EC2 state read (snapshot.py), planned (plan.py) and applied to one router
namespace (kernel.py, the loop in router.py); the VPC resolvers (dns.py); partitions between hosts
(partition.py); what a client in a namespace sees (probe.py)."""
