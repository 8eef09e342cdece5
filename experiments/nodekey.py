"""SuperNode keys: only SuperNodes whose public key the SuperLink has registered may join.

    python -m experiments.nodekey make keys/ --name hospital-a           # on the node's host
    python -m experiments.nodekey register keys/hospital-a.pub --superlink server:9093 --certs certs/
    python -m experiments.nodekey list --superlink server:9093 --certs certs/
    python -m experiments.nodekey remove NODE_ID --superlink server:9093 --certs certs/

``make`` writes a P-384 key pair in OpenSSH format (what Flower 1.42 reads): the private
key (owner-only, 0600, in an owner-only folder) stays on the node's host and is passed to
``flower-supernode --auth-supernode-private-key``; the ``.pub`` file is what the SuperLink's
operator registers. ``register``, ``list`` and ``remove`` wrap Flower's ``flwr supernode``
commands with a connection made for the call (TLS with ``certs/ca.crt``). A private key is
never printed. Errors are one line, exit 1.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from experiments.launch.flower import flower_env, write_connection
from experiments.launch.preflight import fail
from experiments.launch.processes import LaunchError, last_error_line, strip_ansi

_NODE_ID = re.compile(r"SuperNode (\d+) registered")


def make_key(folder: Path, name: str) -> Path:
    """Write ``folder/name`` (private, 0600) and ``folder/name.pub``; return the public key's path."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    private, public = folder / name, folder / f"{name}.pub"
    if private.exists():
        raise LaunchError(f"{private} exists; choose another --name (keys are never overwritten)")
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return public


def flwr_supernode(args: list[str], superlink: str, certs: Path | None) -> str:
    """``flwr supernode <args> <connection>`` against ``superlink``; its output, or LaunchError."""
    with tempfile.TemporaryDirectory(prefix="fedwsa-flwr-") as home:
        run_env = flower_env(Path(home))
        ca = certs / "ca.crt" if certs else None
        if ca is not None and not ca.is_file():
            raise LaunchError(f"--certs: {certs} has no ca.crt")
        write_connection(Path(home), "nodekey", superlink, ca)
        proc = subprocess.run(["flwr", "supernode", *args, "nodekey"], env=run_env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        lines = [ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip()]
        why = last_error_line(text) or (lines or ["no output"])[-1]
        raise LaunchError(f"flwr supernode {args[0]} failed (exit {proc.returncode}): {why}")
    return proc.stdout


def register(public_key: Path, superlink: str, certs: Path | None) -> int:
    """Register ``public_key`` with the SuperLink; the node id it gives that SuperNode."""
    if not public_key.is_file():
        raise LaunchError(f"{public_key}: no such public key file")
    if not public_key.read_bytes().startswith(b"ecdsa-sha2-"):
        raise LaunchError(f"{public_key}: not an OpenSSH EC public key (make one with `nodekey make`)")
    out = flwr_supernode(["register", str(public_key)], superlink, certs)
    found = _NODE_ID.search(out)
    if not found:
        raise LaunchError(f"flwr supernode register printed no node id for {public_key}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.nodekey", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="make a SuperNode key pair (on the node's host)")
    mk.add_argument("folder", type=Path)
    mk.add_argument("--name", required=True, help="file name of the key (the node's name)")
    for name, what in (("register", "public_key"), ("remove", "node_id"), ("list", None)):
        sp = sub.add_parser(name, help=f"{name} SuperNodes of a SuperLink")
        if what:
            sp.add_argument(what, type=Path if what == "public_key" else int)
        sp.add_argument("--superlink", required=True, help="host:port of the SuperLink")
        sp.add_argument("--certs", type=Path, help="folder holding the SuperLink's ca.crt (TLS)")
    a = p.parse_args(argv)
    try:
        if a.command == "make":
            pub = make_key(a.folder, a.name)
            print(f"wrote {a.folder / a.name} (private, keep it on this host) and {pub} (register this one)")
        elif a.command == "register":
            print(f"registered {a.public_key}: node id {register(a.public_key, a.superlink, a.certs)}")
        elif a.command == "remove":
            flwr_supernode(["unregister", str(a.node_id)], a.superlink, a.certs)
            print(f"removed node {a.node_id}: it can no longer connect")
        else:
            print(flwr_supernode(["ls"], a.superlink, a.certs), end="")
    except (LaunchError, OSError, subprocess.TimeoutExpired) as e:
        fail(str(e), 1)


if __name__ == "__main__":
    main(sys.argv[1:])
