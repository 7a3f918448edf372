"""Lab hosts: one network namespace + private mount/UTS/IPC/PID namespaces per EC2 instance.

A host's root is an overlay over the machine's live `/` with a private upper dir (its disk),
pivot_root'ed, with tini as PID 1 running the host's init (SSH host keys, then every service
enabled with update-rc.d). Killing PID 1 is a hard power-off: the kernel kills everything else
in the PID namespace and the mounts go with the mount namespace; the upper dir stays, so the
next boot finds the disk as it was.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from lab import helpers, topology

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
AWS_API_NAMES = (
    "sts.amazonaws.com", "iam.amazonaws.com", "route53.amazonaws.com",
    *(f"{svc}.{region}.amazonaws.com"
      for region in (topology.PRIMARY_REGION, topology.DR_REGION) for svc in ("ec2", "sts")),
)
CA_NAME = "e2h-lab-ca"
# The only service a host starts on its first boot: the packages are installed on the machine
# (the overlay's lower layer), but a fresh instance has not been configured yet; roles enable
# what they need with update-rc.d, as on a Debian box without systemd.
FIRST_BOOT_SERVICES = ("ssh",)

# Runs as PID 1 of the new PID namespace, inside fresh mount/UTS/IPC namespaces, still on the
# machine's root: builds the host's root and execs tini in it. $1 host dir, $2 hostname.
BOOT_SCRIPT = r"""
set -eu
H="$1"; R="$1/root"
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=/,upperdir=$H/upper,workdir=$H/work" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
mount --bind "$R/dev/pts/ptmx" "$R/dev/ptmx"
mount -t tmpfs -o mode=755,nosuid,nodev run "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$R/tmp"
hostname "$2"
B="$H/boot"
echo "$2" > "$R/etc/hostname"
cp "$B/hosts" "$R/etc/hosts"
rm -f "$R/etc/resolv.conf"; cp "$B/resolv.conf" "$R/etc/resolv.conf"
mkdir -p -m 700 "$R/root/.ssh"
cp "$B/authorized_keys" "$R/root/.ssh/authorized_keys"; chmod 600 "$R/root/.ssh/authorized_keys"
mkdir -p "$R/usr/local/share/ca-certificates"
cp "$B/ca.crt" "$R/usr/local/share/ca-certificates/%(ca)s.crt"
grep -q '^AWS_CA_BUNDLE=' "$R/etc/environment" 2>/dev/null \
  || echo 'AWS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' >> "$R/etc/environment"
install -m 755 "$B/init" "$R/run/lab-init"
cd "$R"
pivot_root . .
umount -l .
cd /
exec /usr/bin/tini -s -- /run/lab-init
""".replace("%(ca)s", CA_NAME)

# The host's init, run by tini. First boot: own SSH host keys, the lab CA in the trust store,
# every service but ssh disabled. Then the sysvinit start sequence of runlevel 2.
INIT_SCRIPT = r"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /run/sshd /run/lock && chmod 1777 /run/lock
if [ ! -e /var/lib/e2h-lab/first-boot-done ]; then
  rm -f /etc/ssh/ssh_host_*
  ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
  ssh-keygen -q -t ecdsa -N '' -f /etc/ssh/ssh_host_ecdsa_key
  for link in /etc/rc2.d/S*; do
    svc=${link##*/S[0-9][0-9]}
    case " %(keep)s " in *" $svc "*) ;; *) update-rc.d "$svc" disable >/dev/null 2>&1 ;; esac
  done
  # What update-ca-certificates does for one added CA, without its hooks (the Java keystore
  # hook alone costs seconds per boot).
  ca=/usr/local/share/ca-certificates/%(ca)s.crt
  ln -sf "$ca" /etc/ssl/certs/%(ca)s.pem
  ln -sf %(ca)s.pem "/etc/ssl/certs/$(openssl x509 -hash -noout -in "$ca").0"
  cat "$ca" >> /etc/ssl/certs/ca-certificates.crt
  mkdir -p /var/lib/e2h-lab && touch /var/lib/e2h-lab/first-boot-done
fi
# sshd first, then the rest in rc order (Debian's startpar would run them side by side; a
# slow PostgreSQL start must not keep the host unreachable).
for script in /etc/rc2.d/S[0-9][0-9]ssh /etc/rc2.d/S*; do
  case "$script" in /etc/rc2.d/S[0-9][0-9]ssh) [ -n "${ssh_done:-}" ] && continue; ssh_done=1 ;; esac
  [ -x "$script" ] && "$script" start >/dev/null 2>&1 </dev/null
done
touch /run/lab-booted
exec sleep infinity
""".replace("%(keep)s", " ".join(FIRST_BOOT_SERVICES)).replace("%(ca)s", CA_NAME)


@dataclass(frozen=True)
class HostSpec:
    """What a host needs from its EC2 instance to boot."""

    instance_id: str
    hostname: str
    private_ip: str
    resolver: str
    keep_addresses: tuple[str, ...] = ()    # the ENIs' private IPs: everything else is dropped


@dataclass
class Host:
    """A running (or powered-off) lab host; `process` is the `unshare` parent of its PID 1."""

    spec: HostSpec
    generation: int
    process: subprocess.Popen | None = None

    @property
    def netns(self) -> str:
        return topology.host_netns(self.spec.instance_id)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def host_dir(instance_id: str) -> Path:
    return topology.STATE_DIR / "hosts" / instance_id


def read_mark(instance_id: str) -> tuple[str, float, int] | None:
    """The hypervisor's last power mark of the host: ("on"|"off", monotonic time, generation)."""
    try:
        power, stamp, generation = (host_dir(instance_id) / "power").read_text().split()
    except (OSError, ValueError):
        return None
    return power, float(stamp), int(generation)


# util-linux's unshare prints this at every power-off: noise in a console tail.
CONSOLE_NOISE = "sigprocmask unblock failed"


def console_tail(instance_id: str, count: int) -> list[str]:
    """The last `count` lines of the host's console (boot script and init errors land there)."""
    try:
        lines = (host_dir(instance_id) / "console.log").read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip() and CONSOLE_NOISE not in line][-count:]


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


NAMESPACE_RECORD = topology.STATE_DIR / "namespaces"


def ensure_netns(name: str) -> bool:
    """Create the named network namespace with lo up; True if it was created now.

    Every name is recorded in state, so `lab down` checks exactly the namespaces the lab made
    (other users of the e2h- prefix, such as the data plane's scratch tests, are not ours).
    """
    if netns_exists(name):
        return False
    with open(NAMESPACE_RECORD, "a") as record:
        record.write(name + "\n")
    helpers.run(["ip", "netns", "add", name])
    helpers.run(["ip", "-n", name, "link", "set", "lo", "up"])
    return True


def recorded_namespaces() -> set[str]:
    try:
        return set(NAMESPACE_RECORD.read_text().split())
    except OSError:
        return set()


def delete_netns(name: str) -> None:
    if netns_exists(name):
        helpers.run(["ip", "netns", "delete", name], check=False)


def in_netns(name: str, action: Callable[[], object]) -> object:
    """Run `action` in a thread that has joined network namespace `name` (setns is per thread).

    Sockets keep the namespace they were created in, so a listening socket made here serves
    that namespace while the rest of the process stays in the root namespace.
    """
    result: dict[str, object] = {}

    def worker() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(NETNS_DIR / name, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {name} failed")
            finally:
                os.close(fd)
            result["value"] = action()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=worker, name=f"netns-{name}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")


def listen_in_netns(name: str, address: str, port: int) -> socket.socket:
    """A listening TCP socket bound to address:port inside network namespace `name`."""
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(64)
        return sock
    return in_netns(name, make)  # type: ignore[return-value]


def port_open_in_netns(name: str, address: str, port: int, timeout: float = 0.2) -> bool:
    def probe() -> bool:
        try:
            with socket.create_connection((address, port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                return sock.recv(4).startswith(b"SSH")
        except OSError:
            return False
    try:
        return bool(in_netns(name, probe))
    except OSError:
        return False


def interface_addresses(netns: str) -> list[tuple[str, str]]:
    """(interface, address/prefix) of every IPv4 address in the namespace but lo's 127/8."""
    out = helpers.run(["ip", "-n", netns, "-4", "-o", "addr", "show"], check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and not (parts[1] == "lo" and parts[3].startswith("127.")):
            found.append((parts[1], parts[3]))
    return found


def drop_extra_addresses(netns: str, keep: Iterable[str]) -> list[str]:
    """Remove addresses a real stop/start would lose (a VIP added with `ip addr add`)."""
    kept = set(keep)
    dropped = []
    for dev, cidr in interface_addresses(netns):
        if cidr.split("/")[0] not in kept:
            helpers.run(["ip", "-n", netns, "addr", "del", cidr, "dev", dev], check=False)
            dropped.append(cidr)
    return dropped


def stage_boot_files(spec: HostSpec, ca_pem: bytes, authorized_key: str) -> Path:
    """Write what the boot script copies into the host's root; returns the host dir."""
    hdir = host_dir(spec.instance_id)
    for sub in ("upper", "work", "root", "boot"):
        (hdir / sub).mkdir(parents=True, exist_ok=True)
    boot = hdir / "boot"
    names = " ".join(AWS_API_NAMES)
    (boot / "hosts").write_text(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{spec.private_ip}\t{spec.hostname}\n"
        f"{topology.AWS_API_ADDRESS}\t{names}\n")
    (boot / "resolv.conf").write_text(f"nameserver {spec.resolver}\noptions timeout:1 attempts:2\n")
    (boot / "authorized_keys").write_text(authorized_key.strip() + "\n")
    (boot / "ca.crt").write_bytes(ca_pem)
    (boot / "init").write_text(INIT_SCRIPT)
    return hdir


def boot(host: Host, ca_pem: bytes, authorized_key: str) -> None:
    """Power the host on: its namespaces, its overlay root, tini + init."""
    spec = host.spec
    ensure_netns(host.netns)
    drop_extra_addresses(host.netns, spec.keep_addresses)
    hdir = stage_boot_files(spec, ca_pem, authorized_key)
    log = open(hdir / "console.log", "ab")
    try:
        host.process = subprocess.Popen(
            ["nsenter", f"--net={NETNS_DIR / host.netns}",
             "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--propagation", "private",
             "/bin/sh", "-c", BOOT_SCRIPT, "e2h-boot", str(hdir), spec.hostname],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    finally:
        log.close()
    (hdir / "pid").write_text(str(host.process.pid))


def init_pid(unshare_pid: int) -> int | None:
    """PID (root namespace view) of the host's PID 1: the child `unshare --fork` made."""
    try:
        children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def power_off(host: Host, timeout: float = 5.0) -> None:
    """Hard power-off: SIGKILL the host's PID 1; the kernel takes down the whole PID namespace."""
    proc = host.process
    if proc is None:
        return
    if proc.poll() is None:
        pid1 = init_pid(proc.pid)
        if pid1 is not None:
            kill_pid(pid1, signal.SIGKILL)
        else:  # still booting, before the fork: the parent is all there is
            kill_pid(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_pid(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    host.process = None
    pidfile = host_dir(host.spec.instance_id) / "pid"
    pidfile.unlink(missing_ok=True)


def remove(host: Host) -> None:
    """Terminate: power off, then drop the namespace and the disk."""
    power_off(host)
    delete_netns(host.netns)
    shutil.rmtree(host_dir(host.spec.instance_id), ignore_errors=True)


def kill_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def pid_matches(pid: int, marker: str) -> bool:
    """True if `pid` is alive and its command line contains `marker` (guards against PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def sweep_recorded_hosts() -> list[str]:
    """After a crashed daemon: kill each host recorded in state by its PID, drop its namespace."""
    swept = []
    root = topology.STATE_DIR / "hosts"
    if not root.is_dir():
        return swept
    for hdir in root.iterdir():
        pidfile = hdir / "pid"
        if pidfile.exists():
            pid = int(pidfile.read_text())
            if pid_matches(pid, "e2h-boot"):
                child = init_pid(pid)
                kill_pid(child or pid, signal.SIGKILL)
                wait_gone(pid, 5.0)
                swept.append(hdir.name)
        delete_netns(topology.host_netns(hdir.name))
    return swept


def wait_gone(pid: int, timeout: float) -> bool:
    """Bounded poll until `pid` no longer exists (reaped or zombie of another parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.02)
    return False
