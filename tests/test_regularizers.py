"""FedProx's proximal term and the WSA regularizer inside the one training loop."""

import copy

import numpy as np
import pytest
import torch

from fedwsa.models import MLP, build_model
from fedwsa.regularizers import make_regularizer, make_wsa, proximal_term
from fedwsa.train import train
from fedwsa.wsa import model_scope, scoped_names, wsa_penalty


def test_proximal_by_hand():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    # (0.5 / 2) * (1^2 + 2^2) = 1.25: the squared norm, not the norm (which gives 0.559)
    term = proximal_term([w], [torch.zeros(2)], 0.5)
    assert term.item() == pytest.approx(1.25)
    term.backward()
    np.testing.assert_allclose(w.grad.numpy(), [0.5, 1.0])  # mu * (w - w0)


def _setup():
    torch.manual_seed(0)
    model = MLP(8, 3, hidden=5)
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    return model, x, y


def _step(model, x, y, regularizer):
    m = copy.deepcopy(model)
    train(
        m,
        x,
        y,
        epochs=1,
        lr=0.1,
        batch_size=40,
        momentum=0.9,
        regularizer=regularizer(m) if regularizer else None,
    )
    return [p.detach() for p in m.parameters()]


def test_all_zero_settings_are_plain_training():
    model, x, y = _setup()
    names = scoped_names(model)
    assert (
        make_regularizer(model, proximal_mu=0.0, wsa_lambda=0.0, target=np.zeros((2, 2)), names=names) is None
    )
    plain = _step(model, x, y, None)
    # lambda = 0 passed straight to the WSA term also leaves the step bit-identical
    target = model_scope(model, names) * 3
    zero = _step(model, x, y, lambda m: make_wsa(target, names, 0.0, "kl"))
    for a, b in zip(plain, zero, strict=True):
        assert torch.equal(a, b)


def test_wsa_pulls_scope_toward_target():
    model, x, y = _setup()
    names = scoped_names(model)
    target = model_scope(model, names).copy()
    target[:, 1] *= 2.0  # ask for twice the spread

    def dist(m):
        return np.abs(model_scope(m, names)[:, 1] - target[:, 1]).sum()

    results = {}
    for lam in (0.0, 1.0):
        m = copy.deepcopy(model)
        reg = make_regularizer(m, wsa_lambda=lam, target=target, names=names)
        train(m, x, y, epochs=20, lr=0.05, batch_size=10, regularizer=reg)
        results[lam] = dist(m)
    assert results[1.0] < 0.5 * results[0.0]


def test_prox_and_wsa_add_up():
    model, _, _ = _setup()
    names = scoped_names(model)
    target = model_scope(model, names) * 1.5
    both = make_regularizer(model, proximal_mu=0.1, wsa_lambda=0.2, target=target, names=names)
    wsa = make_wsa(target, names, 0.2, "kl")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    # at the anchor shifted by 0.1 everywhere: prox = 0.05 * n_params * 0.01
    n = sum(p.numel() for p in model.parameters())
    assert both(model).item() == pytest.approx(wsa(model).item() + 0.05 * n * 0.01, rel=1e-5)
    with pytest.raises(ValueError):
        make_regularizer(model, wsa_lambda=1.0, target=None, names=names)


class _Layer(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        # w = [1, 2, 3, 4]: mu = 2.5, sigma = sqrt(1.25); target (0, 1)
        # KL: dD/dmu = 2.5, dD/dsigma = sigma - 1/sigma = 0.2236068;
        #     grad_i = 2.5 / 4 + 0.2236068 (w_i - 2.5) / (4 sigma) = 0.625 + 0.05 (w_i - 2.5)
        ("kl", [0.55, 0.60, 0.65, 0.70]),
        # W2: dD/dmu = 5, dD/dsigma = 2 (sigma - 1) = 0.2360680;
        #     grad_i = 5 / 4 + 0.2360680 (w_i - 2.5) / (4 sigma) = 1.25 + 0.0527864 (w_i - 2.5)
        ("w2", [1.1708204, 1.2236068, 1.2763932, 1.3291796]),
    ],
)
def test_fused_wsa_gradient_by_hand(distance, expected):
    layer = _Layer([1.0, 2.0, 3.0, 4.0])
    make_wsa(np.array([[0.0, 1.0]]), ["w"], 1.0, distance).add_grad(layer)
    np.testing.assert_allclose(layer.w.grad.numpy(), expected, rtol=1e-6)


def _grads(model, fn):
    for p in model.parameters():
        p.grad = None
    fn()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("distance", ["kl", "w2"])
def test_fused_gradient_equals_autograd(distance):
    torch.manual_seed(1)
    model = build_model("cnn", (1, 28, 28), 10)
    names = scoped_names(model)
    target = model_scope(model, names) * np.array([[0.5, 1.7]])  # away from the current scope
    anchor = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # away from the proximal anchor too
    reg = make_regularizer(
        anchor, proximal_mu=0.3, wsa_lambda=2.0, target=target, names=names, distance=distance
    )
    reference = _grads(model, lambda: reg(model).backward())
    fused = _grads(model, lambda: reg.add_grad(model))
    for a, b in zip(reference, fused, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)


def test_fused_and_autograd_training_agree():
    model, x, y = _setup()
    names = scoped_names(model)
    target = model_scope(model, names) * 1.5
    out = {}
    for fused in (True, False):
        m = copy.deepcopy(model)
        reg = make_regularizer(m, proximal_mu=0.1, wsa_lambda=0.5, target=target, names=names)
        train(m, x, y, epochs=3, lr=0.05, batch_size=10, momentum=0.9, regularizer=reg, fused=fused)
        out[fused] = [p.detach() for p in m.parameters()]
    for a, b in zip(out[True], out[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # float rounding only


@pytest.mark.parametrize(
    ("distance", "mu", "sigma"),
    [("kl", 0.3, 0.0), ("w2", 0.3, 0.0), ("kl", 0.5, 1e-3), ("w2", 0.5, 1e-3), ("kl", -2.0, 1e-2)],
)
def test_fused_gradient_keeps_its_precision_when_sigma_is_much_smaller_than_mu(distance, mu, sigma):
    """The fused gradient in float32 against float64 autograd, where ``c1 * w + c0`` (with
    ``c0 = ... - c1 * mu``) cancels: a constant tensor (sigma 0) and sigma << |mu|."""
    torch.manual_seed(3)
    w32 = (mu + sigma * torch.randn(4096)).float()
    w32 = (w32 - w32.mean() + mu) if sigma else torch.full((4096,), mu)
    target = np.array([[0.4, 0.05]])
    layer = _Layer(w32.tolist())
    make_wsa(target, ["w"], 1.0, distance).add_grad(layer)
    w64 = w32.double().requires_grad_(True)
    wsa_penalty([w64], torch.as_tensor(target), distance).backward()  # lambda 1, float64
    ref = w64.grad.numpy()
    err = np.abs(layer.w.grad.double().numpy() - ref).max() / np.abs(ref).max()
    assert err < 1e-6, err
