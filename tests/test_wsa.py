"""WSA math against numbers computed by hand (see the docstrings in fedwsa/wsa.py)."""

import math

import numpy as np
import pytest
import torch

from fedwsa.wsa import (
    EPS,
    align_to_scope,
    array_scope,
    fuse_scopes,
    kl_distance,
    layer_factors,
    next_target,
    scoped_names,
    stable_lambda,
    tensor_scope,
    w2_distance,
    wsa_penalty,
)  # fmt: skip

T = torch.tensor


def test_tensor_scope_by_hand():
    # w = 1,2,3,4: mu = 2.5; mean squared deviation = (2.25+0.25+0.25+2.25)/4 = 1.25
    mu, sigma = tensor_scope(T([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64))
    assert mu.item() == 2.5
    assert sigma.item() == pytest.approx(math.sqrt(1.25 + EPS), abs=1e-15)
    assert array_scope(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx((2.5, math.sqrt(1.25 + EPS)))


def test_kl_by_hand():
    # log(1/2) + (2^2 + 1^2) / (2 * 1^2) - 1/2 = -0.693147... + 2.5 - 0.5
    d = kl_distance(T(1.0), T(2.0), T(0.0), T(1.0))
    assert d.item() == pytest.approx(2.0 - math.log(2.0), rel=1e-6)
    assert kl_distance(T(0.3), T(0.7), T(0.3), T(0.7)).item() == pytest.approx(0.0, abs=1e-7)


def test_w2_by_hand():
    # (1 - 0)^2 + (2 - 1)^2 = 2;  (0.1 - 0.4)^2 + (0.5 - 0.1)^2 = 0.09 + 0.16
    assert w2_distance(T(1.0), T(2.0), T(0.0), T(1.0)).item() == 2.0
    assert w2_distance(T(0.1), T(0.5), T(0.4), T(0.1)).item() == pytest.approx(0.25, rel=1e-6)


def test_penalty_sums_layers():
    w1 = T([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)  # scope (2.5, sqrt(1.25))
    w2 = T([0.0, 2.0], dtype=torch.float64)  # scope (1, 1)
    target = T([[2.5, math.sqrt(1.25)], [0.0, 1.0]], dtype=torch.float64)
    # layer 1 matches (w2 distance ~0); layer 2: (1-0)^2 + (sqrt(1+eps)-1)^2 ~ 1
    assert wsa_penalty([w1, w2], target, "w2").item() == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(ValueError):
        wsa_penalty([w1], target, "kl")


@pytest.mark.parametrize("distance", ["kl", "w2"])
def test_gradcheck(distance):
    torch.manual_seed(0)
    w = [torch.randn(3, 4, dtype=torch.float64, requires_grad=True),
         torch.randn(5, 2, dtype=torch.float64, requires_grad=True)]  # fmt: skip
    target = T([[0.1, 0.8], [-0.2, 1.3]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: wsa_penalty([a, b], target, distance), tuple(w))


def test_kl_gradient_closed_form():
    # dD/dw_i = (dD/dmu)/n + (dD/dsigma) (w_i - mu)/(n sigma), with
    # dD/dmu = (mu - mu*)/sigma*^2 and dD/dsigma = -1/sigma + sigma/sigma*^2
    w = T([0.5, -1.0, 2.0, 0.25], dtype=torch.float64, requires_grad=True)
    mu_t, s_t = 0.2, 0.7
    wsa_penalty([w], T([[mu_t, s_t]], dtype=torch.float64), "kl").backward()
    x = w.detach().numpy()
    n, mu = x.size, x.mean()
    sigma = math.sqrt(((x - mu) ** 2).mean() + EPS)
    expected = ((mu - mu_t) / s_t**2) / n + (-1 / sigma + sigma / s_t**2) * (x - mu) / (n * sigma)
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-12)


def test_fusion_by_hand():
    a, b = np.array([[0.0, 1.0]]), np.array([[2.0, 3.0]])
    # p = (1/4, 3/4): mu* = 1.5; mean sigma* = 0.25*1 + 0.75*3 = 2.5
    np.testing.assert_allclose(fuse_scopes([a, b], [1, 3], "mean"), [[1.5, 2.5]])
    # mixture: 0.25*(1 + 0) + 0.75*(9 + 4) - 1.5^2 = 7.75
    np.testing.assert_allclose(fuse_scopes([a, b], [1, 3], "mixture"), [[1.5, math.sqrt(7.75)]])
    # one model: both fusions return its scope
    np.testing.assert_allclose(fuse_scopes([b], [5], "mixture"), b)
    with pytest.raises(ValueError):
        fuse_scopes([a, b], [0, 0], "mean")
    glob = np.array([[9.0, 9.0]])
    np.testing.assert_array_equal(next_target("global", [a, b], [1, 3], glob), glob)


def test_align_to_scope_by_hand():
    arrays = {"w": np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32), "b": np.array([7.0])}
    out = align_to_scope(arrays, ["w"], np.array([[0.0, 1.0]]))
    # (w - 2.5) * 1 / sqrt(1.25): -1.3416, -0.4472, 0.4472, 1.3416
    np.testing.assert_allclose(out["w"], np.array([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(1.25 + EPS), rtol=1e-6)
    assert out["w"].dtype == np.float32 and out["b"] is arrays["b"]
    mu, sigma = array_scope(out["w"])
    assert mu == pytest.approx(0.0, abs=1e-7) and sigma == pytest.approx(1.0, abs=1e-6)


def test_scoped_names():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    assert scoped_names(model) == ["0.weight", "1.weight"]
    assert scoped_names(model, include_all=True) == ["0.weight", "0.bias", "1.weight", "1.bias"]


# --- wsa_normalize: one lambda, the same pull per weight in every layer -----------------


def test_layer_factors_by_hand():
    target, sizes = np.array([[0.0, 0.1], [0.3, 0.5]]), [100, 4]
    np.testing.assert_allclose(layer_factors(target, sizes, "kl", "none"), [1.0, 1.0])
    np.testing.assert_allclose(layer_factors(target, sizes, "kl", "per_weight"), [100 * 0.01, 4 * 0.25])
    np.testing.assert_allclose(layer_factors(target, sizes, "w2", "per_weight"), [100, 4])


def test_stable_lambda_by_hand():
    # KL, none: h_l = 2 / (n sigma*^2) = 2 / 1 = 2 and 2 / (4 * 0.04) = 12.5; the second sets
    # lambda < 2 (1 + 0.9) / (0.05 * 12.5) = 6.08
    target, sizes = np.array([[0.0, 0.1], [0.0, 0.2]]), [100, 4]
    bound, worst = stable_lambda(target, sizes, "kl", "none", lr=0.05, momentum=0.9)
    assert bound == pytest.approx(6.08) and worst == 1
    # per_weight: h_l = 2 in every layer, so lambda < 2 (1 + 0.9) / (0.05 * 2) = 38
    assert stable_lambda(target, sizes, "kl", "per_weight", 0.05, 0.9)[0] == pytest.approx(38.0)
    assert stable_lambda(target, sizes, "w2", "per_weight", 0.05, 0.9)[0] == pytest.approx(38.0)
    # W2, none: h_l = 2 / n: the smallest layer, 2 / 4, gives 3.8 / (0.05 * 0.5) = 152
    assert stable_lambda(target, sizes, "w2", "none", 0.05, 0.9) == (pytest.approx(152.0), 1)


def _at_target(n, mu, sigma, seed):
    """A float64 tensor of n weights whose scope is exactly (mu, sigma) (up to eps)."""
    z = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    z = (z - z.mean()) / z.std(correction=0)
    return (mu + z * math.sqrt(sigma**2 - EPS)).requires_grad_(True)


@pytest.mark.parametrize("distance", ["kl", "w2"])
@pytest.mark.parametrize("normalize", ["none", "per_weight"])
def test_curvature_per_weight_against_autograd(distance, normalize):
    """Second derivative of lambda * c_l * D_l along the direction that changes sigma, by
    double backward, at the target: 2 lambda with per_weight in every layer, whatever its
    size and spread; 2 lambda / (n sigma*^2) (KL) or 2 lambda / n (W2) without."""
    lam, layers = 3.0, [(50, 0.1, 0.05), (800, -0.2, 0.3)]
    ws = [_at_target(n, mu, s, seed) for seed, (n, mu, s) in enumerate(layers)]
    target = torch.tensor([[mu, s] for _, mu, s in layers], dtype=torch.float64)
    c = layer_factors(target.numpy(), [n for n, _, _ in layers], distance, normalize)
    for i, (n, _, s) in enumerate(layers):
        w = ws[i]
        v = (w - w.mean()).detach()
        v = v / v.norm()
        loss = lam * wsa_penalty(ws, target, distance, c.tolist())
        (g,) = torch.autograd.grad(loss, w, create_graph=True)
        (hv,) = torch.autograd.grad(g @ v, w)
        expected = (
            2 * lam if normalize == "per_weight" else 2 * lam / (n * (s**2 if distance == "kl" else 1.0))
        )
        assert float(hv @ v) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("distance", ["kl", "w2"])
def test_per_weight_fused_gradient_equals_autograd(distance):
    from fedwsa.regularizers import make_wsa

    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(20, 8), torch.nn.Linear(8, 3))
    names = scoped_names(model)
    target = np.array([[0.01, 0.08], [-0.02, 0.3]])
    reg = make_wsa(target, names, 2.0, distance, "per_weight")
    params = dict(model.named_parameters())
    reg(model).backward()
    reference = {n: params[n].grad.clone() for n in names}  # biases are not scoped
    for p in model.parameters():
        p.grad = None
    reg.add_grad(model)
    for n in names:
        torch.testing.assert_close(params[n].grad, reference[n], rtol=1e-4, atol=1e-7)
    assert reg.factors(params) == pytest.approx(
        [160 * 0.08**2, 24 * 0.3**2] if distance == "kl" else [160, 24]
    )


def test_moving_target_by_hand():
    """One layer of n = 4 weights at sigma* = 0.5, KL, lambda 1: h_sigma = 2 / (4 * 0.25) = 2,
    h_mu = 1; lr 0.1, no momentum (eta = 0.1), K = 3 steps: kappa_sigma = 3 * 0.2 / (1 - 0.8^3)
    = 0.6 / 0.488, kappa_mu = 0.3 / (1 - 0.9^3) = 0.3 / 0.271."""
    from fedwsa.moving_target import curvatures, moving_target, shrink_factor

    target = np.array([[0.0, 0.5]])
    h_mu, h_sigma = curvatures(target, [4], "kl", "none", 1.0)
    np.testing.assert_allclose([h_mu[0], h_sigma[0]], [1.0, 2.0])
    k_mu, k_sigma = (shrink_factor(h, 0.1, 0.0, 3) for h in (h_mu, h_sigma))
    np.testing.assert_allclose([k_mu[0], k_sigma[0]], [0.3 / 0.271, 0.6 / 0.488])
    fused = np.array([[0.1, 0.6]])
    np.testing.assert_allclose(
        moving_target(target, fused, k_mu, k_sigma), [[0.1 * 0.3 / 0.271, 0.5 + 0.1 * 0.6 / 0.488]]
    )
    # no pull (lambda 0): kappa 1, today's rule; momentum 0.5 doubles eta; past eta h >= 1: K eta h
    assert shrink_factor(np.array([0.0]), 0.1, 0.0, 3)[0] == 1.0
    np.testing.assert_allclose(shrink_factor(np.array([2.0]), 0.05, 0.5, 3), [0.6 / 0.488])
    np.testing.assert_allclose(shrink_factor(np.array([20.0]), 0.1, 0.0, 3), [6.0])
    # W2: the mean's direction has the spread's curvature; per_weight: 2 lambda in every layer
    np.testing.assert_allclose(curvatures(target, [4], "w2", "none", 1.0), [[0.5], [0.5]])
    np.testing.assert_allclose(curvatures(target, [4], "kl", "per_weight", 3.0), [[3.0], [6.0]])
    # a spread the step would collapse stops at half the smaller of T's and F's
    shrunk = moving_target(target, np.array([[0.0, 0.2]]), np.array([1.0]), np.array([5.0]))
    assert shrunk[0, 1] == 0.1
