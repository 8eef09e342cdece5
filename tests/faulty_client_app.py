"""A ClientApp for tests: the real one (``clients.client_app``), whose train replies are
broken as ``$FEDWSA_TEST_FAULTS`` says (``tests/faults.py``) and which sleeps
``$FEDWSA_TEST_CLIENT_DELAY_S`` seconds before training (in the rounds listed in
``$FEDWSA_TEST_DELAY_ROUNDS``, e.g. ``3``, or in every round), so a test can act in the
middle of a round; with ``$FEDWSA_TEST_CLIENT_LOG`` it appends ``start|end <time> <pid>``
lines to that file around each train call (how many clients ran at once). Launched through
Flower with ``FEDWSA_CLIENTAPP=tests.faulty_client_app:app``
(``experiments.launch.submit.stage_app``)."""

from __future__ import annotations

import os
import time

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from clients import client_app
from clients.experiment import partition_id
from fedwsa.run.wire import CONFIG, ROUND
from tests.faults import DELAY_ENV, DELAY_ROUNDS_ENV, FAULTS_ENV, LOG_ENV, inject

app = ClientApp()
app.query()(client_app.query)


@app.train()
def train(msg: Message, context: Context) -> Message:
    log = os.environ.get(LOG_ENV, "")
    _log(log, "start")
    rounds = os.environ.get(DELAY_ROUNDS_ENV, "")
    if not rounds or str(msg.content[CONFIG][ROUND]) in rounds.split(","):  # type: ignore[index]
        time.sleep(float(os.environ.get(DELAY_ENV, "0") or 0))
    reply = client_app.train(msg, context)
    _log(log, "end")
    return inject(os.environ.get(FAULTS_ENV, ""), partition_id(context, msg), reply)


def _log(path: str, what: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as f:  # one short appended line: not interleaved
            f.write(f"{what} {time.time():.6f} {os.getpid()}\n")
