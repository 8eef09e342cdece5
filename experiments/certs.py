"""Self-signed TLS material for a loopback federation: a CA, the SuperLink's certificate and
one certificate per SuperNode (for the SuperNode's own Runtime API, which its ClientApp
processes connect to; Flower 1.42 has no client-certificate mTLS on the SuperLink link and
authenticates SuperNodes with keys instead, see the README).

Uses ``cryptography`` (already a Flower dependency) instead of shelling out to openssl.
To bring your own certificates, put ``ca.crt``, ``server.pem`` and ``server.key`` in one
folder and pass ``federation.certs=/that/folder``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REQUIRED = ("ca.crt", "server.pem", "server.key")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, hosts: tuple[str, ...] = (),
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:  # every leaf certificate here serves an API
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if hosts:
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_certs(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), nodes: int = 0) -> Path:
    """Write ``ca.crt``, ``server.pem``/``.key`` and ``supernode-<i>.pem``/``.key`` to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("fedwsa run CA", ca_key, None, ca_key, ca=True)
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, folder / "ca.key")
    for stem in ["server", *(f"supernode-{i}" for i in range(nodes))]:
        key = _key()
        cert = _cert(f"fedwsa {stem}", key, ca, ca_key, ca=False, hosts=hosts)
        (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, folder / f"{stem}.key")
    return folder


def check_certs(folder: Path, need: tuple[str, ...] = REQUIRED) -> Path:
    """Return ``folder`` if it holds the files ``need``, else raise FileNotFoundError."""
    missing = [f for f in need if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"federation.certs: {folder} lacks {', '.join(missing)} (needs {', '.join(need)})"
        )
    return folder


def main(argv: list[str] | None = None) -> None:
    """``python -m experiments.certs FOLDER --host NAME ... [--nodes N]``: certificates to deploy."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m experiments.certs", description=main.__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--host", action="append", required=True, help="SuperLink DNS name or IP (repeatable)")
    p.add_argument("--nodes", type=int, default=0, help="also make supernode-<i> certificates")
    a = p.parse_args(argv)
    make_certs(a.folder, tuple(a.host), a.nodes)
    print(f"wrote {', '.join(sorted(f.name for f in a.folder.iterdir()))} to {a.folder}; keep ca.key private")


if __name__ == "__main__":
    main()
