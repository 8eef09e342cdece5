"""The local training loop: ``local_steps`` against ``epochs``."""

import torch

from fedwsa.models import MLP
from fedwsa.train import train


def _fit(**kw):
    torch.manual_seed(0)
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    torch.manual_seed(1)
    model = MLP(4, 3, 8)
    result = train(
        model, x, y, lr=0.1, batch_size=4, momentum=0.9, generator=torch.Generator().manual_seed(2), **kw
    )
    return result, model.state_dict()


def test_local_steps_continue_into_the_next_reshuffled_pass():
    # 10 samples, batches of 4: a pass is 3 steps (4 + 4 + 2 samples)
    r, _ = _fit(epochs=1, steps=4)
    assert (r.steps, r.num_examples) == (4, 10)  # FedAvg's weight stays the partition size
    r5, _ = _fit(epochs=9, steps=5)  # epochs is ignored when steps is set
    assert r5.steps == 5


def test_steps_of_whole_passes_are_the_same_training_as_epochs():
    by_epochs, a = _fit(epochs=2)
    by_steps, b = _fit(epochs=1, steps=6)  # 2 passes x 3 steps
    assert by_epochs == by_steps  # same loss (same batches seen) and counts
    assert all(torch.equal(a[k], b[k]) for k in a)
    _, c = _fit(epochs=1, steps=5)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_local_steps_on_an_empty_partition_do_nothing():
    model = MLP(4, 3, 8)
    r = train(
        model, torch.empty(0, 4), torch.empty(0, dtype=torch.long), epochs=1, steps=3, lr=0.1, batch_size=4
    )
    assert (r.steps, r.num_examples, r.loss) == (0, 0, 0.0)
