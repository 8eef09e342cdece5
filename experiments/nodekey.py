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
import subprocess
import sys
from pathlib import Path

from experiments.launch.nodekeys import flwr_supernode, make_key, register
from experiments.launch.preflight import fail
from experiments.launch.processes import LaunchError


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
