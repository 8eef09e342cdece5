"""A ClientApp for tests: the real one (``clients.client_app``), whose train replies are
broken as ``$FEDWSA_TEST_FAULTS`` says (``tests/faults.py``) and which sleeps
``$FEDWSA_TEST_CLIENT_DELAY_S`` seconds before training (so a test can kill a run in the
middle of a round). Launched through Flower with ``FEDWSA_CLIENTAPP=tests.faulty_client_app:app``
(``experiments.launch.flower.stage_app``)."""

from __future__ import annotations

import os
import time

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from clients import client_app
from tests.faults import DELAY_ENV, FAULTS_ENV, inject

app = ClientApp()
app.query()(client_app.query)


@app.train()
def train(msg: Message, context: Context) -> Message:
    time.sleep(float(os.environ.get(DELAY_ENV, "0") or 0))
    reply = client_app.train(msg, context)
    return inject(os.environ.get(FAULTS_ENV, ""), client_app._partition_id(context, msg), reply)
