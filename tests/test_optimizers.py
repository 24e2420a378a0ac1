"""The paper's optimiser against a direct NumPy transcription of RAdam and Lookahead."""

import keras
import numpy as np
import pytest

from training.optimizers import RAdamLookahead, WarmupPolyDecay

pytestmark = pytest.mark.jax  # also run under the JAX backend (make test's JAX lane)


def reference(theta, gradients, lr=0.01, b1=0.9, b2=0.999, eps=1e-7, k=6, alpha=0.5):
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    slow = theta.copy()
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, 31):
        g = gradients(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho_t > 4:
            r = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            theta = theta - lr * r * m_hat / (np.sqrt(v / (1 - b2**t)) + eps)
        else:
            theta = theta - lr * m_hat
        if t % k == 0:
            slow = slow + alpha * (theta - slow)
            theta = slow.copy()
    return theta


def test_radam_lookahead_matches_the_equations():
    target = np.array([1.0, -2.0, 3.0], "float32")
    start = np.array([0.5, 0.5, 0.5], "float32")
    gradient_of = lambda theta: 2 * (theta - target) * np.array([1.0, 3.0, 0.1], "float32")
    variable = keras.Variable(start)
    optimizer = RAdamLookahead(learning_rate=0.01)
    for _ in range(30):
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient_of(variable.numpy())), variable)])
    want = reference(start.astype("float64"), gradient_of)
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-4, atol=1e-5)
    # Guards the comparison: without Lookahead's syncs the trajectory differs.
    assert not np.allclose(want, reference(start.astype("float64"), gradient_of, k=10**6), atol=1e-3)


def test_warmup_poly_decay():
    schedule = WarmupPolyDecay(0.001, total_steps=100, warmup_steps=10, power=0.9)
    assert float(schedule(0)) == pytest.approx(0.0001)
    assert float(schedule(9)) == pytest.approx(0.001)
    assert float(schedule(10)) == pytest.approx(0.001)
    assert float(schedule(55)) == pytest.approx(0.001 * 0.5**0.9)
    assert float(schedule(100)) == pytest.approx(0.0)
    assert WarmupPolyDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
