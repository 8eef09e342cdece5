"""A real federation on Flower's Deployment Engine: one SuperLink and one SuperNode process
per client on this machine (TLS and SuperNode authentication by default with certificates),
or a run submitted to a remote SuperLink."""

from __future__ import annotations

import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments.certs import check_certs, make_certs
from experiments.launch.nodekeys import make_key, register
from experiments.launch.processes import LaunchError, free_port, process_group
from experiments.launch.submit import check_finished, submit, write_run_config
from experiments.launch.superlink import flower_env, probe, start_superlink, start_supernode, write_connection
from fedwsa.run.config import ExperimentConfig


def register_nodes(folder: Path, n: int, superlink: str, certs: Path | None) -> tuple[list[Path], list[int]]:
    """Make ``n`` SuperNode key pairs in ``folder`` and register their public keys with the
    SuperLink (concurrently: each is a ``flwr`` command); the private keys' paths and the
    node ids the SuperLink gave them."""
    pubs = [folder / f"supernode-{i}.pub" for i in range(n)]  # a resumed run's keys are reused
    pubs = [p if p.is_file() and p.with_suffix("").is_file() else make_key(folder, p.stem) for p in pubs]
    with ThreadPoolExecutor(max_workers=min(n, 8)) as pool:
        ids = list(pool.map(lambda pub: register(pub, superlink, certs), pubs))
    return [p.with_suffix("") for p in pubs], ids


def federate(cfg: ExperimentConfig) -> None:
    """Run ``cfg`` as a real federation: one SuperLink and one SuperNode process per client.

    With TLS, SuperNode authentication is on unless ``federation.auth=false``: one key
    pair per SuperNode in ``<out_dir>/keys`` (owner-only), the SuperLink started with
    authentication, each public key registered before its SuperNode starts with its
    private key; nothing else can join. With ``federation.superlink`` set, nothing is
    started: the run is submitted to that SuperLink (its SuperNodes were started and
    registered by hand, on other machines: ``experiments.nodekey``).
    """
    out, fed = Path(cfg.out_dir), cfg.federation
    folder = Path(fed.certs).expanduser().resolve() if fed.certs else None
    if fed.superlink:
        if folder is None and not fed.insecure:
            raise LaunchError(
                "federation.certs: a remote SuperLink needs the folder holding its ca.crt "
                "(or federation.insecure=true for plain HTTP)"
            )
        certs = check_certs(folder, ("ca.crt",)) if folder else None
    elif folder:
        certs = check_certs(folder)
    else:
        certs = make_certs(out / "certs", nodes=cfg.num_clients) if fed.tls else None
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedwsa-flwr-") as home, process_group() as procs:
        env = flower_env(Path(home))
        if fed.superlink:
            probe(fed.superlink)
            address = fed.superlink
        else:
            port = fed.port or free_port()
            auth = fed.auth and certs is not None
            start_superlink(procs, env, port, logs / "superlink.log", simulation=False, certs=certs,
                            host=fed.host, auth=auth)  # fmt: skip
            address = f"127.0.0.1:{port}"
            keys, node_ids = (
                register_nodes(out / "keys", cfg.num_clients, address, certs) if auth else ([], [])
            )
            nodes = [start_supernode(procs, env, address, i, cfg.num_clients, logs / f"supernode-{i}.log",
                                     certs=certs, key=keys[i] if auth else None)
                     for i in range(cfg.num_clients)]  # fmt: skip
            record = {"superlink": address, "tls": certs is not None, "auth": auth, "node_ids": node_ids,
                      "supernodes": {i: p.pid for i, p in enumerate(nodes)}}  # fmt: skip
            (out / "federation.json").write_text(json.dumps(record, indent=1))
        write_connection(Path(home), "fedwsa", address, certs / "ca.crt" if certs else None)
        log = logs / "flower.log"
        run_config = write_run_config(cfg, out / "run_config.toml")
        code = submit(procs, env, "fedwsa", run_config, log, out, verbose=cfg.verbose)
        if not fed.superlink:
            check_finished(out, log, code)
        elif code != 0:
            raise LaunchError(f"flwr run exited with {code}; see {log}")
