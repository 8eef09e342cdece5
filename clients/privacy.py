"""The clients' side of differential privacy: Flower's ClientApp mods, chosen by the run's
``privacy`` (``fedwsa/privacy.py``).

``client_fixed``: Flower's ``fixedclipping_mod`` clips the update to the norm the server's
wrapper sends. ``local``: Flower's ``LocalDpMod`` clips it to ``privacy.clipping_norm`` and
adds Gaussian noise for a per-round ``privacy.epsilon`` (sensitivity ``2C``). Other kinds
and other messages pass through. Flower's mods take messages with a single ArrayRecord: the
per-client arrays some strategies add (SCAFFOLD's ``c - c_i``, MOON's previous model) are
set aside while the mod looks and given back to the app. In a simulation the noise is
seeded by ``(seeds.train, round, partition)``, in a real federation it is fresh entropy.
"""

from __future__ import annotations

from flwr.app import Context, Message, MessageType
from flwr.clientapp.mod import LocalDpMod, fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable

from clients.experiment import experiment, partition_id
from fedwsa.privacy import local_sensitivity, noise_seed
from fedwsa.run.wire import ARRAYS, CONFIG, ENGINE_KEY, ROUND
from fedwsa.train import derive_seed

CLIENT_NOISE = 1  # a client's noise stream: derive_seed(seeds.train, round, partition, this)


def privacy_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    cfg = experiment(msg, context)
    p = cfg.privacy
    if p.kind == "client_fixed":
        mod = fixedclipping_mod
    elif p.kind == "local":
        mod = LocalDpMod(p.clipping_norm, local_sensitivity(p.clipping_norm), p.epsilon, p.delta)
    else:
        return call_next(msg, context)
    seed = None
    if str(context.run_config.get(ENGINE_KEY, "")) != "deployment":
        rnd = int(msg.content[CONFIG][ROUND])  # type: ignore[arg-type,index]
        seed = derive_seed(cfg.seeds.train, rnd, partition_id(context, msg), CLIENT_NOISE)
    aside = {k: r for k, r in msg.content.array_records.items() if k != ARRAYS}
    for k in aside:
        del msg.content[k]

    def app(m: Message, c: Context) -> Message:
        for k, r in aside.items():
            m.content[k] = r
        return call_next(m, c)

    with noise_seed(seed):
        return mod(msg, context, app)
