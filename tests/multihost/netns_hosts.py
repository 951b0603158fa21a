"""Several "hosts" on one Linux machine, for testing multi-host SCOOP for real.

Each host is a network namespace joined to a bridge in the machine's own namespace by a veth pair,
with its own hostname (a UTS namespace: ``socket.gethostname()`` there says ``node1``), its own
``/etc/hosts`` (``/etc/netns/NS/hosts``, which ``ip netns exec`` mounts there; every host knows every
other by name) and its own ``sshd`` accepting a fresh key for root.  ``node0`` is where you launch
(SCOOP's broker and origin run there: :meth:`NamespaceHosts.command`); ``node1`` ... are reached
over ssh.  The origin is a namespace host too, so that its name resolves to an address the others
can reach, whatever this machine's own ``/etc/hosts`` says.  All hosts share the file system, as
hosts with the same software installed at the same paths would.  Only loopback and the bridge's
private subnet carry traffic.

Needs Linux, root, ``ip`` (iproute2) and ``unshare`` (util-linux); ``openssh-server`` is installed with
``apt-get`` when ``sshd`` is missing.  Everything is removed again on exit, also when the command
fails or the script is stopped (SIGINT, SIGTERM, SIGHUP); a later run also removes what a killed
one (SIGKILL) left behind.

As a script::

    sudo python tests/multihost/netns_hosts.py --hosts 3 -- sh -c 'hostname; cat $DEAPNOS_HOSTFILE; ssh node1 hostname'
    sudo python tests/multihost/netns_hosts.py --hosts 3 -- \\
        deapnos run --hostfile '{hostfile}' --workers 3 search.particles=2
    sudo python tests/multihost/netns_hosts.py --hosts 3 --shell     # look around; exit to clean up

The command runs on ``node0`` with ``DEAPNOS_HOSTFILE`` (a SCOOP hostfile: ``node0 1``, ``node1 1``
...), ``DEAPNOS_HOSTS`` (the hosts' names) and a ``PATH`` whose ``ssh`` knows the hosts and the key;
``{hostfile}`` in the command is replaced by the hostfile's path.  As a module:
:class:`NamespaceHosts` (a context manager), used by ``tests/multihost/test_multihost.py`` and
``benchmarks/dispatch_overhead.py``.
"""
from __future__ import annotations

import argparse
import atexit
import ipaddress
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREFIX = "dnh"              # names of everything made here: dnh<pid><k>-h<i>, dnh<pid><k>br, dnh<pid><k>v<i>
_COUNT = [0]                # k: a letter per NamespaceHosts of this process
NETNS_ETC = Path("/etc/netns")


class Unavailable(RuntimeError):
    """This machine cannot host namespace hosts (the message says why)."""


def _run(*cmd, check=True, timeout=60, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited with {r.returncode}: {r.stderr.strip()[-500:]}")
    return r


def find_sshd() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)),
                                        None)


def ensure_sshd(install: bool = True) -> str:
    """The path of sshd, installing openssh-server with apt-get when it is missing."""
    sshd = find_sshd()
    if sshd:
        return sshd
    if not install or not shutil.which("apt-get"):
        raise Unavailable("sshd is not installed (install openssh-server)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (("apt-get", "install", "-y", "-q", "openssh-server"),
                 ("apt-get", "update", "-q"), ("apt-get", "install", "-y", "-q", "openssh-server")):
        r = _run(*args, check=False, timeout=600, env=env)
        if args[1] == "install" and r.returncode == 0 and find_sshd():
            return find_sshd()
    raise Unavailable(f"sshd is missing and apt-get could not install openssh-server: {r.stderr.strip()[-300:]}")


def unavailable_reason() -> str | None:
    """Why namespace hosts cannot be made here (None: they can).  Cheap; makes nothing that stays."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    r = _run("ip", "netns", "add", probe, check=False)
    if r.returncode:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    r = _run("unshare", "--uts", "true", check=False)
    if r.returncode:
        return f"cannot create a UTS namespace: {r.stderr.strip()}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_netns(ns: str) -> None:
    r = _run("ip", "netns", "pids", ns, check=False)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def remove_stale() -> list[str]:
    """Remove namespaces, links and /etc/netns folders left by a NamespaceHosts whose process is
    gone (killed with SIGKILL).  Returns what was removed."""
    removed = []
    owners = set()
    r = _run("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        m = re.match(rf"({PREFIX}(\d+)[a-z]?-\S+)", line.strip())
        if m and not _pid_alive(int(m.group(2))):
            _kill_netns(m.group(1))
            _run("ip", "netns", "del", m.group(1), check=False)
            owners.add(m.group(2))
            removed.append(m.group(1))
    r = _run("ip", "-o", "link", "show", check=False)
    for m in re.finditer(rf"^\d+:\s+({PREFIX}(\d+)[a-z]?(?:br|v\d+))[@:]", r.stdout, re.M):
        if not _pid_alive(int(m.group(2))):
            _run("ip", "link", "del", m.group(1), check=False)
            removed.append(m.group(1))
    if NETNS_ETC.is_dir():
        for p in NETNS_ETC.glob(f"{PREFIX}*-*"):
            m = re.match(rf"{PREFIX}(\d+)[a-z]?-", p.name)
            if m and not _pid_alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)
    return removed


class NamespaceHosts:
    """``count`` namespace hosts named ``node0`` ... (a context manager); ``node0`` is the origin.

    ``env``: variables every ssh session on every host gets (sshd ``SetEnv``: what a user puts in
    the hosts' shell profiles); ``host_env``: extra ones per host name; ``host_mounts``: ``{host:
    {path: source}}`` bind-mounts ``source`` over ``path`` for everything that host runs (its own
    mount namespace: another version of a file or package, installed on that host only).  After ``__enter__``:
    ``names``, ``origin`` (``node0``), ``address[name]``, :meth:`command` (an argv that runs on a
    host), :meth:`hostfile`, :meth:`environ` (for subprocesses: ``PATH`` with an ``ssh`` that
    reaches the hosts), :meth:`ssh`, :meth:`kill_host`, :meth:`link_down`."""

    def __init__(self, count: int = 3, env: dict | None = None, host_env: dict | None = None,
                 host_mounts: dict | None = None, name: str = "node", install: bool = True):
        self.count = int(count)
        self.base_env = dict(env or {})
        self.host_env = dict(host_env or {})
        self.host_mounts = dict(host_mounts or {})     # {host: {path: what to mount there}} (bind mounts)
        self.names = [f"{name}{i}" for i in range(self.count)]
        self.origin = self.names[0]
        self.install = install
        self.tag = f"{PREFIX}{os.getpid()}{'abcdefghijklmnopqrstuvwxyz'[_COUNT[0] % 26]}"
        _COUNT[0] += 1
        self.bridge = f"{self.tag}br"
        self.netns = {n: f"{self.tag}-h{i}" for i, n in enumerate(self.names, 1)}
        self.veth = {n: f"{self.tag}v{i}" for i, n in enumerate(self.names, 1)}
        self.address: dict[str, str] = {}
        self.gateway = ""
        self.dir: Path | None = None
        self.sshd: dict[str, subprocess.Popen] = {}
        self._made: list[tuple] = []       # what to undo, in order of making
        self._closed = True

    # -- making --------------------------------------------------------------------------------

    def _subnet(self) -> ipaddress.IPv4Network:
        used = _run("ip", "-4", "-o", "addr", check=False).stdout + _run("ip", "-4", "route", check=False).stdout
        start = os.getpid() % 200
        for k in range(250):
            net = ipaddress.ip_network(f"10.213.{(start + k) % 250 + 1}.0/24")
            if f"10.213.{(start + k) % 250 + 1}." not in used:
                return net
        raise Unavailable("no free 10.213.x.0/24 subnet for the bridge")

    def __enter__(self) -> NamespaceHosts:
        reason = unavailable_reason()
        if reason:
            raise Unavailable(reason)
        remove_stale()
        sshd = ensure_sshd(self.install)
        self._closed = False
        atexit.register(self.close)
        try:
            self._make(sshd)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _make(self, sshd: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self._made.append(("dir", self.dir))
        net = self._subnet()
        hosts = list(net.hosts())
        self.gateway = str(hosts[0])
        self.address = {n: str(hosts[10 + i]) for i, n in enumerate(self.names)}
        d = self.dir
        # keys: one client key (authorized on every host), one host key per host
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "deapnos-test", "-f", d / "id_ed25519")
        (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
        (d / "authorized_keys").chmod(0o600)
        bindir = d / "bin"
        bindir.mkdir()
        ssh_config = [f"Host {n}\n  HostName {a}\n" for n, a in self.address.items()]
        ssh_config.append(f"Host *\n  User root\n  IdentityFile {d / 'id_ed25519'}\n  IdentitiesOnly yes\n"
                          "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
                          "  BatchMode yes\n  ConnectTimeout 10\n")
        (d / "ssh_config").write_text("".join(ssh_config))
        (bindir / "ssh").write_text(f"#!/bin/sh\nexec {shutil.which('ssh')} -F {d / 'ssh_config'} \"$@\"\n")
        (bindir / "ssh").chmod(0o755)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)       # sshd's privilege-separation folder
        # the bridge, in this machine's namespace
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", self.bridge))
        _run("ip", "addr", "add", f"{self.gateway}/{net.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        etc_hosts = ["127.0.0.1 localhost"]
        etc_hosts += [f"{a} {n}" for n, a in self.address.items()]
        for n in self.names:
            ns, veth = self.netns[n], self.veth[n]
            _run("ip", "netns", "add", ns)
            self._made.append(("netns", ns))
            etc = NETNS_ETC / ns
            etc.mkdir(parents=True, exist_ok=True)
            self._made.append(("etc", etc))
            (etc / "hosts").write_text("\n".join(etc_hosts) + "\n")
            (etc / "hostname").write_text(n + "\n")
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._made.append(("link", veth))
            _run("ip", "link", "set", veth, "master", self.bridge)
            _run("ip", "link", "set", veth, "up")
            _run("ip", "-n", ns, "addr", "add", f"{self.address[n]}/{net.prefixlen}", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "route", "add", "default", "via", self.gateway, check=False)
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / f"host_key_{n}")
            env = {**self.base_env, **self.host_env.get(n, {})}
            setenv = "".join(f"SetEnv {k}={v}\n" for k, v in env.items())
            cfg = d / f"sshd_config_{n}"
            cfg.write_text(
                f"ListenAddress {self.address[n]}\nPort 22\nHostKey {d / f'host_key_{n}'}\n"
                f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                f"UsePAM no\nStrictModes no\nPidFile {d / f'sshd_{n}.pid'}\nLogLevel ERROR\n"
                f"ClientAliveInterval 5\nClientAliveCountMax 3\nMaxStartups 100\nMaxSessions 100\n{setenv}")
            _run(sshd, "-t", "-f", cfg)                       # a bad config says why, here
            log = open(d / f"sshd_{n}.log", "wb")
            mounts = "".join(f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))} && "
                             for dst, src in self.host_mounts.get(n, {}).items())
            self.sshd[n] = subprocess.Popen(
                ["ip", "netns", "exec", ns, "unshare", "--uts", "--mount", "sh", "-c",
                 f"{mounts}hostname {n} && exec {sshd} -D -e -f {cfg}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
        for n in self.names:
            self._wait_for_sshd(n)

    def _wait_for_sshd(self, n: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.sshd[n].poll() is not None:
                raise Unavailable(f"sshd on {n} exited: {self.sshd_log(n)}")
            try:
                socket.create_connection((self.address[n], 22), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise Unavailable(f"sshd on {n} does not accept connections: {self.sshd_log(n)}") from None
                time.sleep(0.1)
        r = self.ssh(n, "hostname", check=False)
        if r.returncode or r.stdout.strip() != n:
            raise Unavailable(f"ssh root@{n} hostname gave {r.returncode}: {r.stdout.strip()} {r.stderr.strip()} "
                              f"{self.sshd_log(n)}")

    def sshd_log(self, n: str) -> str:
        try:
            return (self.dir / f"sshd_{n}.log").read_text(errors="replace").strip()[-500:]
        except OSError:
            return ""

    # -- using -----------------------------------------------------------------------------------

    def environ(self, base: dict | None = None) -> dict:
        """Environment for processes that use the hosts: an ``ssh`` that knows them first on PATH."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def command(self, host: str, argv: list) -> list[str]:
        """An argv that runs ``argv`` on ``host``: in its network namespace (and ``/etc/hosts``),
        under its hostname.  The process is ``argv`` itself (each step execs the next), so its pid
        is the Popen's."""
        return ["ip", "netns", "exec", self.netns[host], "unshare", "--uts", "sh", "-c",
                'hostname "$1" && shift && exec "$@"', "sh", host, *map(str, argv)]

    def hostfile(self, workers: int | dict = 1, hosts: list[str] | None = None, path: Path | None = None) -> Path:
        """A SCOOP hostfile of ``hosts`` (default: all, the origin first), ``workers`` each (a
        number, or ``{name: number}``)."""
        hosts = self.names if hosts is None else hosts
        lines = []
        for n in hosts:
            lines.append(f"{n} {workers.get(n, 1) if isinstance(workers, dict) else workers}")
        path = Path(path) if path is not None else self.dir / f"hosts-{len(list(self.dir.glob('hosts-*')))}.txt"
        path.write_text("\n".join(lines) + "\n")
        return path

    def ssh(self, host: str, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return _run("ssh", host, command, check=check, timeout=timeout, env=self.environ())

    def pids(self, host: str) -> list[int]:
        """Every process in the host's network namespace (its sshd, sessions, workers)."""
        r = _run("ip", "netns", "pids", self.netns[host], check=False)
        return [int(p) for p in r.stdout.split()]

    def kill_host(self, host: str, keep_sshd: bool = False) -> list[int]:
        """SIGKILL every process of the host (the machine died); returns the pids killed."""
        keep = {self.sshd[host].pid} if keep_sshd else set()
        killed = []
        for pid in self.pids(host):
            if pid in keep:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        return killed

    def link_down(self, host: str) -> None:
        """Cut the host's cable (its veth end on the bridge goes down)."""
        _run("ip", "link", "set", self.veth[host], "down")

    def link_up(self, host: str) -> None:
        _run("ip", "link", "set", self.veth[host], "up")

    # -- unmaking ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything made (idempotent; also at exit)."""
        if self._closed:
            return
        self._closed = True
        for n in list(self.sshd):
            if n in self.netns:
                _kill_netns(self.netns[n])
            p = self.sshd[n]
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for kind, what in reversed(self._made):
            if kind == "netns":
                _kill_netns(what)
                _run("ip", "netns", "del", what, check=False)
            elif kind == "link":
                _run("ip", "link", "del", what, check=False)
            elif kind == "etc":
                shutil.rmtree(what, ignore_errors=True)
            elif kind == "dir":
                shutil.rmtree(what, ignore_errors=True)
        self._made.clear()
        try:
            NETNS_ETC.rmdir()            # only when empty
        except OSError:
            pass
        atexit.unregister(self.close)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="namespace hosts with sshd, for multi-host SCOOP tests")
    parser.add_argument("--hosts", type=int, default=3, help="number of namespace hosts (node0 ... ; the "
                        "command runs on node0)")
    parser.add_argument("--workers", type=int, default=1, help="workers per host in the hostfile")
    parser.add_argument("--setenv", action="append", default=[], metavar="NAME=VALUE",
                        help="a variable every ssh session on the hosts gets (repeatable)")
    parser.add_argument("--shell", action="store_true", help="run an interactive shell with the hosts up")
    parser.add_argument("--check", action="store_true", help="print why namespace hosts cannot be made here and "
                        "exit 1; exit 0 (printing nothing) when they can")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS... to run with the hosts up")
    args = parser.parse_args(argv)
    if args.check:
        reason = unavailable_reason()
        if reason:
            print(reason)
        return 1 if reason else 0
    command = args.command[1:] if args.command[:1] == ["--"] else list(args.command)
    if not command and not args.shell:
        parser.error("give a command after --, or --shell")

    def stop(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    env = dict(kv.split("=", 1) for kv in args.setenv)
    try:
        with NamespaceHosts(args.hosts, env=env) as hosts:
            hostfile = hosts.hostfile(args.workers)
            run_env = hosts.environ()
            run_env.update(DEAPNOS_HOSTFILE=str(hostfile), DEAPNOS_HOSTS=" ".join(hosts.names))
            print("hosts up: " + ", ".join(f"{n} ({a})" for n, a in hosts.address.items())
                  + f"; running on {hosts.origin}; hostfile {hostfile}", file=sys.stderr)
            if args.shell:
                command = [os.environ.get("SHELL", "/bin/sh")]
            command = [c.replace("{hostfile}", str(hostfile)) for c in command]
            return subprocess.call(hosts.command(hosts.origin, command), env=run_env)
    except Unavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
