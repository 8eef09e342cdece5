"""SuperNode key pairs and their registration with a SuperLink (Flower's ``flwr supernode``
commands), for ``experiments.nodekey`` and the local federation of ``experiments.federate``."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from experiments.launch.processes import LaunchError, last_error_line, strip_ansi
from experiments.launch.superlink import flower_env, write_connection

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
