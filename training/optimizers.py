"""The paper's panoptic optimiser: "a linear warm up Radam [56] Lookahead [90] optimizer (with the
same learning rate 0.001)" (Sec. 4), with Panoptic-DeepLab's poly decay [18].

- RAdam (Liu et al. 2020): Adam whose step is rectified by r_t while the variance estimate
  is reliable (rho_t > 4) and plain momentum SGD before that.
- Lookahead (Zhang et al. 2019): every `sync_period` steps the slow weights move
  `slow_step_size` of the way to the fast weights, and the fast weights restart from them.
- WarmupPolyDecay: linear warm-up to the base rate, then (1 - progress) ** power.
Keras 3 has none of the three built in; deeplab2 offers Adam/SGD/AdamW only.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="axial_deeplab")
class WarmupPolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, base_learning_rate: float, total_steps: int, warmup_steps: int = 0,
                 power: float = 0.9, end_learning_rate: float = 0.0):
        self.base_learning_rate = base_learning_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.power = power
        self.end_learning_rate = end_learning_rate

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.base_learning_rate * (step + 1) / max(self.warmup_steps, 1)
        progress = ops.clip((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        decayed = (self.base_learning_rate - self.end_learning_rate) * (1 - progress) ** self.power \
            + self.end_learning_rate
        return ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {"base_learning_rate": self.base_learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "power": self.power,
                "end_learning_rate": self.end_learning_rate}


@keras.saving.register_keras_serializable(package="axial_deeplab")
class RAdamLookahead(keras.optimizers.Optimizer):
    """RAdam with Lookahead.  Defaults: beta 0.9 / 0.999, epsilon 1e-7, Lookahead k = 6,
    alpha = 0.5 (TensorFlow Addons' defaults, which the paper's TF implementation had)."""

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, sync_period: int = 6, slow_step_size: float = 0.5,
                 name: str = "radam_lookahead", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.sync_period, self.slow_step_size = sync_period, slow_step_size

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._m = [self.add_variable_from_reference(v, "m") for v in variables]
        self._v = [self.add_variable_from_reference(v, "v") for v in variables]
        self._slow = [self.add_variable_from_reference(v, "slow") for v in variables]
        for slow, v in zip(self._slow, variables):
            # A copy: under JAX, assigning v itself would make both variables one buffer,
            # which a jitted step cannot donate twice.
            slow.assign(ops.copy(v))

    def update_step(self, gradient, variable, learning_rate):
        # Variables are read once as tensors: arithmetic on the variables themselves is not
        # traceable under JAX's jit.
        i = self._get_variable_index(variable)
        m_var, v_var, slow_var = self._m[i], self._v[i], self._slow[i]
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        step = ops.cast(ops.add(self.iterations, 1), dtype)
        b1, b2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        m = b1 * ops.convert_to_tensor(m_var) + (1 - b1) * gradient
        v = b2 * ops.convert_to_tensor(v_var) + (1 - b2) * ops.square(gradient)
        self.assign(m_var, m)
        self.assign(v_var, v)
        b1_t, b2_t = ops.power(b1, step), ops.power(b2, step)
        m_hat = m / (1 - b1_t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * step * b2_t / (1 - b2_t)
        rectifier = ops.sqrt(ops.maximum((rho_t - 4) * (rho_t - 2) * rho_inf, 0.0)
                             / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        adaptive = rectifier * m_hat / (ops.sqrt(v / (1 - b2_t)) + self.epsilon)
        fast = ops.convert_to_tensor(variable) - lr * ops.where(rho_t > 4, adaptive, m_hat)
        # Lookahead: on every sync_period-th step, slow += alpha (fast - slow); fast = slow.
        sync = ops.equal(ops.mod(ops.add(self.iterations, 1), self.sync_period), 0)
        slow = ops.convert_to_tensor(slow_var)
        new_slow = slow + self.slow_step_size * (fast - slow)
        self.assign(slow_var, ops.where(sync, new_slow, slow))
        self.assign(variable, ops.where(sync, new_slow, fast))

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                      sync_period=self.sync_period, slow_step_size=self.slow_step_size)
        return config
