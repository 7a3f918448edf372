"""The lab's AWS control plane: moto server, a lab CA, and a TLS front under the real AWS names.

moto runs inside the lab daemon (werkzeug, threaded) so the hypervisor can read instance state
from moto's backends directly and be told of every power change the moment the API call lands:
polling alone would miss a stop+start pair that fence_aws makes within one poll interval, and
RebootInstances changes nothing that a describe call shows. The controller reaches moto over
plain HTTP on 127.0.0.1:<port>; the hosts reach the very same backends over HTTPS at
topology.AWS_API_ADDRESS:443 inside the router namespace, under ec2.<region>.amazonaws.com etc.,
with a certificate from the lab CA they trust.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import BaseWSGIServer, make_server

from lab import topology
from lab.emulator import faults, hosts

CA_DIR = topology.STATE_DIR / "ca"
ACCOUNT_ID = "123456789012"      # moto's default account: the keys the lab hands out map to it
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


# ---------------------------------------------------------------- lab CA

def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def ensure_ca() -> tuple[Path, Path]:
    """The lab CA (kept across `up`s, so hosts' trust stays valid) and a fresh server
    certificate for every AWS name; returns (ca.crt, server.pem with key and chain)."""
    CA_DIR.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key_path = CA_DIR / "ca.crt", CA_DIR / "ca.key"
    now = datetime.datetime.now(datetime.timezone.utc)
    if not ca_crt.exists() or not ca_key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec2ha lab CA")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                             False), critical=True)
                .sign(key, hashes.SHA256()))
        _write_key(ca_key_path, key)
        ca_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    server_pem = CA_DIR / "server.pem"
    _issue_server_cert(ca_crt, ca_key_path, server_pem, now)   # milliseconds; names stay current
    return ca_crt, server_pem


def _issue_server_cert(ca_crt: Path, ca_key_path: Path, out: Path,
                       now: datetime.datetime) -> None:
    ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(n) for n in hosts.AWS_API_NAMES]
    names += [x509.DNSName(f"*.{r}.amazonaws.com")
              for r in (topology.PRIMARY_REGION, topology.DR_REGION)]
    names.append(x509.IPAddress(ipaddress.ip_address(topology.AWS_API_ADDRESS)))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amazonaws.com")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
                    + cert.public_bytes(serialization.Encoding.PEM) + ca_crt.read_bytes())
    out.chmod(0o600)


# ---------------------------------------------------------------- power-change hooks

def install_power_hooks(notify: Callable[[], None]) -> None:
    """Count every effective power change on moto's Instance and wake the hypervisor.

    The count (`lab_power_generation`) lets the hypervisor tell "still running" from "stopped and
    started again" or "rebooted", which moto's state alone cannot show.
    """
    from moto.ec2.models.instances import Instance, InstanceBackend
    from moto.ec2.models.tags import TagBackend

    if getattr(Instance, "_lab_hooked", False):
        return

    def hooked(original: Callable, changes_power: Callable[[str], bool]) -> Callable:
        def wrapper(self, *args, **kwargs):
            before = self._state.name
            result = original(self, *args, **kwargs)
            if changes_power(before):
                self.lab_power_generation = getattr(self, "lab_power_generation", 0) + 1
                notify()
            return result
        return wrapper

    # New instances and new tags only need a prompt look, not a power count.
    for cls, name in ((InstanceBackend, "run_instances"), (TagBackend, "create_tags")):
        setattr(cls, name, _notifying(getattr(cls, name), notify))
    Instance.start = hooked(Instance.start, lambda s: s not in ("running", "pending"))
    Instance.stop = hooked(Instance.stop, lambda s: s in ("running", "pending"))
    Instance.reboot = hooked(Instance.reboot, lambda s: s == "running")
    Instance.terminate = hooked(Instance.terminate, lambda s: s != "terminated")
    Instance._lab_hooked = True


# ---------------------------------------------------------------- moto corrections

def install_moto_fixes() -> None:
    """Where moto 5.2.5 differs from AWS in ways the lab's users would meet, it is corrected here,
    once per process. Every moto app the lab makes installs them, so the daemon's moto and the tests'
    moto (tests/support/moto_server.py) both have them."""
    _free_ips_on_terminate()
    _clear_eip_from_the_old_interface()


def _clear_eip_from_the_old_interface() -> None:
    """AWS takes an Elastic IP off the ENI it leaves; moto 5.2.5 re-associates it without clearing
    the old ENI's public IP, so DescribeInstances showed it on both nodes (and the stock awseip
    agent, which greps DescribeInstances, thought it already held the address)."""
    from moto.ec2.models.elastic_ip_addresses import ElasticAddressBackend

    original = ElasticAddressBackend.associate_address
    if getattr(original, "_lab_fixed", False):
        return

    def associate_address(self, *args, **kwargs):
        address, allocation_id = kwargs.get("address"), kwargs.get("allocation_id")
        found = (self.address_by_ip([address]) if address else
                 self.address_by_allocation([allocation_id]) if allocation_id else [])
        before = found[0].eni if found else None
        eip = original(self, *args, **kwargs)
        if before is not None and before is not eip.eni and before.public_ip == eip.public_ip:
            before.public_ip = None
        return eip

    associate_address._lab_fixed = True
    ElasticAddressBackend.associate_address = associate_address


def _free_ips_on_terminate() -> None:
    """AWS frees a terminated instance's private IPs; moto 5.2.5 frees them only when the Instance
    object is garbage collected, which never happens while it is listed as terminated, so a
    pair built again on the same fixed addresses failed with "IP already in use"."""
    from moto.ec2.models.instances import Instance

    original = Instance.terminate
    if getattr(original, "_lab_fixed", False):
        return

    def terminate(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        subnet = self.ec2_backend.get_subnet(self.subnet_id) if self.subnet_id else None
        for ip in getattr(self, "_private_ips", ()) if subnet else ():
            subnet.del_subnet_ip(ip)
        return result

    terminate._lab_fixed = True
    Instance.terminate = terminate


def _notifying(original: Callable, notify: Callable[[], None]) -> Callable:
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        notify()
        return result
    return wrapper


# ---------------------------------------------------------------- servers

def share_region_lookups() -> None:
    """Answer boto3's get_available_regions from one shared botocore session, memoised.

    moto asks a fresh boto3 Session for the EC2 regions three times while importing its EC2
    backend, and each fresh session parses botocore's EC2 model again: seconds of `lab up`.
    Only the daemon process is patched; the answers are the same.
    """
    import functools

    import boto3.session
    import botocore.session

    shared = botocore.session.get_session()

    @functools.lru_cache(maxsize=None)
    def regions(service: str, partition: str, non_regional: bool) -> tuple[str, ...]:
        return tuple(shared.get_available_regions(service, partition, non_regional))

    def get_available_regions(self, service_name, partition_name="aws",
                              allow_non_regional=False):
        return list(regions(service_name, partition_name, allow_non_regional))

    boto3.session.Session.get_available_regions = get_available_regions


# One lock for every moto app in the process: the HTTP and the TLS servers share moto's backends;
# the hypervisor and the hosts' IMDS hold it too while they read them (reentrant: IMDS reads
# through the hypervisor's lab_instances()).
MOTO_LOCK = threading.RLock()


def _one_request_at_a_time(app: Callable) -> Callable:
    """moto 5.2.5 is not safe under concurrent requests. Some EC2 handlers (the first
    CreateVpcPeeringConnection, DescribeKeyPairs) add keys to a response-transformer dict shared by
    every EC2 response while other requests iterate it: "dictionary changed size during iteration",
    an HTML 500 that botocore reports as an unparsable response. The lab's data plane polls moto
    while the API is written, so it met that 500. Requests are served one at a time, the body read
    while the lock is held; each takes milliseconds."""
    def serialized(environ, start_response):
        with MOTO_LOCK:
            return list(app(environ, start_response))
    return serialized


def _moto_app(fault_table: faults.FaultTable | None = None):
    """moto behind the fault-injection middleware (lab/emulator/faults.py), which stays outside the
    one-request-at-a-time lock: a delayed or dropped call holds up no other. Without a table,
    the app gets its own."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    install_moto_fixes()
    table = fault_table if fault_table is not None else faults.FaultTable()
    return faults.middleware(table,
                             _one_request_at_a_time(DomainDispatcherApplication(create_backend_app)))


def _quiet_handler():
    """moto's request handler without a log line per request (the daemon log stays readable)."""
    from moto.moto_server.threaded_moto_server import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args, **kwargs) -> None:
            pass

    return QuietHandler


def _serve(server: BaseWSGIServer, name: str) -> threading.Thread:
    # A short poll interval: shutdown() waits for the serving loop's next turn.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=name, daemon=True)
    thread.start()
    return thread


def start_moto(address: str = "127.0.0.1", port: int = 0,
               fault_table: faults.FaultTable | None = None) -> BaseWSGIServer:
    """moto over HTTP on loopback: the controller's endpoint_url. Its faults are switched at
    <endpoint_url>/_ec2ha/faults; pass the table another front uses to share its rules."""
    server = make_server(address, port, _moto_app(fault_table), threaded=True,
                         request_handler=_quiet_handler())
    _serve(server, "moto-http")
    return server


def start_tls_front(server_pem: Path, netns: str = topology.ROUTER_NS,
                    address: str = topology.AWS_API_ADDRESS, port: int = 443,
                    fault_table: faults.FaultTable | None = None) -> BaseWSGIServer:
    """moto over HTTPS at address:port inside `netns`, the AWS API the hosts see; with the HTTP
    front's fault table, a rule injected by the controller applies to the hosts' calls too."""
    sock = hosts.listen_in_netns(netns, address, port)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_pem)
    try:
        server = make_server(address, port, _moto_app(fault_table), threaded=True,
                             request_handler=_quiet_handler(), ssl_context=context,
                             fd=sock.fileno())
    finally:
        sock.close()     # make_server duplicated the descriptor
    _serve(server, "moto-tls")
    return server


def stop_server(server: BaseWSGIServer) -> None:
    server.shutdown()
    server.server_close()
