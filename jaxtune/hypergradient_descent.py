r"""Online learning-rate adaptation by hypergradient descent (Baydin et al., ICLR 2018).

Baydin, Cornish, Martínez Rubio, Schmidt and Wood, "Online Learning Rate Adaptation with
Hypergradient Descent" (ICLR 2018, arXiv:1703.04782): the learning rate follows its own
gradient. An optimizer's step is :math:`\theta_t = \theta_{t-1} + u_t` with
:math:`u_t = -\alpha_t d_t`, where :math:`d_t` is the optimizer's direction (the gradient
for SGD, the Nesterov momentum direction for SGDN, :math:`\hat m_t / (\sqrt{\hat v_t} +
\epsilon)` for Adam). Since :math:`\theta_{t-1}` depends on :math:`\alpha` through
:math:`u_{t-1}`, the derivative of the loss at :math:`\theta_{t-1}` with respect to the
learning rate is

.. math:: h_t = \frac{\partial f(\theta_{t-1})}{\partial \alpha}
          = g_t \cdot \frac{\partial u_{t-1}}{\partial \alpha} = -\,g_t \cdot d_{t-1},

and the learning rate takes a gradient step of size :math:`\beta` on it before the
parameters move: :math:`\alpha_t = \alpha_{t-1} - \beta h_t = \alpha_{t-1} + \beta\,
g_t \cdot d_{t-1}`, with :math:`d_0 = 0` (the first step keeps :math:`\alpha_0`). For SGD
this is the paper's :math:`h_t = -g_t \cdot g_{t-1}`; for SGDN :math:`\partial u_{t-1} /
\partial\alpha = -(g_{t-1} + \mu v_{t-1})`; for Adam :math:`-\hat m_{t-1} / (\sqrt{\hat
v_{t-1}} + \epsilon)`: the paper's Algorithms 4-6 (SGD-HD, SGDN-HD, Adam-HD). The dot
product runs over every parameter: one global learning rate, as in the paper.

* `scale_by_hypergradient(direction, learning_rate, beta)`: the rule around any optax
  transformation that computes a direction (`optax.identity()`, `optax.trace(...)`,
  `optax.scale_by_adam(...)`, ...); its state, `HypergradientState`, holds the current
  learning rate (`learning_rate`), the previous direction and the direction's own state.
* `hd_sgd`, `hd_sgdn`, `hd_adam`: the paper's three optimizers (its SGD-HD, SGDN-HD and
  Adam-HD), with its suggested β as defaults.
* `hypergradient_learning_rate(opt_state)`: the current learning rate read from any
  optimizer state that holds one (chained, or stacked over a population).

Every numeric argument is sweepable (a number, an array, or a tracer under
``jit(vmap(...))``), so a sweep over the initial rate :math:`\alpha_0` and :math:`\beta`
is one compiled program. The learning rate lives in the optimizer state, not in a
hyperparameter: `jt.sweep` does not record optimizer state, so read it from
`PopulationState.opt_state` between `jt.Trainer.train` calls, or from the ``opt_state``
of your own loop (`jt.init_population`, `jt.step_population`), with
`hypergradient_learning_rate` (the learning-rate schedules notebook does).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxtune._checks import check_finite, check_nonnegative, check_numeric

__all__ = [
    "HypergradientState",
    "scale_by_hypergradient",
    "hd_sgd",
    "hd_sgdn",
    "hd_adam",
    "hypergradient_learning_rate",
]


class HypergradientState(NamedTuple):
    """State of `scale_by_hypergradient`."""

    learning_rate: jax.Array  # shape=(), the current learning rate alpha_t (alpha_0 at init)
    direction: Any  # the previous direction d_{t-1} (zeros at init), like the params
    inner: Any  # the state of the direction's transformation


def scale_by_hypergradient(
    direction: optax.GradientTransformation,
    learning_rate: Any,
    beta: Any,
) -> optax.GradientTransformation:
    r"""Scales a direction by ``-learning_rate``, the learning rate adapted by hypergradient descent.

    At each step, with :math:`g_t` the updates this transformation receives (the gradient)
    and :math:`d_t` what `direction` makes of them:

    .. math::
       h_t = -\,g_t \cdot d_{t-1}, \qquad
       \alpha_t = \alpha_{t-1} - \beta\, h_t, \qquad
       u_t = -\alpha_t\, d_t,

    with :math:`d_0 = 0` and :math:`\alpha_0` = `learning_rate` (see the module docstring
    for why :math:`h_t` is the derivative of the loss with respect to the learning rate).
    The learning rate is not clipped: a `beta` too large for the loss's scale can drive it
    negative (ascent) or make it oscillate; the paper's values are small (1e-3 for SGD,
    1e-7 for Adam, at :math:`\alpha_0 = 10^{-3}`).

    Args:
      direction: the optax transformation whose output is the descent direction before
        the learning rate: `optax.identity()` (SGD), `optax.trace(momentum,
        nesterov=True)` (SGDN), `optax.scale_by_adam(...)` (Adam), or any other.
      learning_rate: sweepable, finite: the initial learning rate :math:`\alpha_0`.
      beta: sweepable, non-negative: the hypergradient learning rate :math:`\beta`
        (0 gives the underlying optimizer with a constant learning rate).

    Returns:
      An `optax.GradientTransformation` whose state is a `HypergradientState`; the
      current learning rate is ``state.learning_rate``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from jaxtune.hypergradient_descent import scale_by_hypergradient
      >>> opt = scale_by_hypergradient(optax.identity(), learning_rate=0.1, beta=0.01)
      >>> params = jnp.array([1.0, -2.0])
      >>> state = opt.init(params)
      >>> for _ in range(3):  # f = |theta|^2 / 2: consecutive gradients agree, alpha grows
      ...     updates, state = opt.update(params, state)
      ...     params = optax.apply_updates(params, updates)
      >>> round(float(state.learning_rate), 4)
      0.1796
    """
    check_finite("learning_rate", learning_rate)
    check_nonnegative("beta", beta, hint="beta=0 keeps the learning rate constant.")

    def init_fn(params):
        dtype = optax.tree.dtype(params, "highest")
        return HypergradientState(
            learning_rate=jnp.asarray(learning_rate, dtype=dtype),
            direction=optax.tree.zeros_like(params),
            inner=direction.init(params),
        )

    def update_fn(updates, state, params=None):
        hypergradient = -optax.tree.vdot(updates, state.direction)
        rate = (state.learning_rate - beta * hypergradient).astype(state.learning_rate.dtype)
        step, inner = direction.update(updates, state.inner, params)
        scaled = jax.tree_util.tree_map(lambda d: (-rate * d).astype(d.dtype), step)
        return scaled, HypergradientState(learning_rate=rate, direction=step, inner=inner)

    return optax.GradientTransformation(init_fn, update_fn)


def hd_sgd(learning_rate: Any = 1e-3, beta: Any = 1e-3) -> optax.GradientTransformation:
    r"""SGD whose learning rate follows its hypergradient (the paper's SGD-HD, Algorithm 4).

    :math:`\alpha_t = \alpha_{t-1} + \beta\, g_t \cdot g_{t-1}`, then
    :math:`\theta_t = \theta_{t-1} - \alpha_t g_t`. Defaults: the paper's
    :math:`\alpha_0 = 10^{-3}`, :math:`\beta = 10^{-3}`.

    Args:
      learning_rate: sweepable, finite: the initial learning rate :math:`\alpha_0`.
      beta: sweepable, non-negative: the hypergradient learning rate (0: plain SGD).

    Returns:
      An `optax.GradientTransformation` whose state is a `HypergradientState`.
    """
    return scale_by_hypergradient(optax.identity(), learning_rate, beta)


def hd_sgdn(learning_rate: Any = 1e-3, beta: Any = 1e-3,
            momentum: Any = 0.9) -> optax.GradientTransformation:
    r"""SGD with Nesterov momentum and a hypergradient learning rate (the paper's SGDN-HD).

    :math:`v_t = \mu v_{t-1} + g_t` and direction :math:`d_t = g_t + \mu v_t` (optax's
    ``trace(momentum, nesterov=True)``); :math:`\alpha_t = \alpha_{t-1} + \beta\,
    g_t \cdot d_{t-1}` (Algorithm 5). Defaults: the paper's :math:`\alpha_0 = 10^{-3}`,
    :math:`\beta = 10^{-3}`, :math:`\mu = 0.9`.

    Args:
      learning_rate: sweepable, finite: the initial learning rate :math:`\alpha_0`.
      beta: sweepable, non-negative: the hypergradient learning rate (0: plain SGD with
        Nesterov momentum, optax's ``sgd(learning_rate, momentum, nesterov=True)``).
      momentum: sweepable: the momentum :math:`\mu`.

    Returns:
      An `optax.GradientTransformation` whose state is a `HypergradientState`.
    """
    check_numeric("momentum", momentum)
    return scale_by_hypergradient(optax.trace(momentum, nesterov=True), learning_rate, beta)


def hd_adam(learning_rate: Any = 1e-3, beta: Any = 1e-7, b1: Any = 0.9, b2: Any = 0.999,
            eps: Any = 1e-8) -> optax.GradientTransformation:
    r"""Adam whose learning rate follows its hypergradient (the paper's Adam-HD, Algorithm 6).

    Direction :math:`d_t = \hat m_t / (\sqrt{\hat v_t} + \epsilon)` (optax's
    ``scale_by_adam(b1, b2, eps)``, bias-corrected moments);
    :math:`\alpha_t = \alpha_{t-1} + \beta\, g_t \cdot d_{t-1}`. Defaults: the paper's
    :math:`\alpha_0 = 10^{-3}`, :math:`\beta = 10^{-7}`, and Adam's.

    Args:
      learning_rate: sweepable, finite: the initial learning rate :math:`\alpha_0`.
      beta: sweepable, non-negative: the hypergradient learning rate (0: plain Adam,
        optax's ``adam(learning_rate, b1, b2, eps)``).
      b1: sweepable: the decay of the first moment.
      b2: sweepable: the decay of the second moment.
      eps: sweepable: added to the root of the second moment.

    Returns:
      An `optax.GradientTransformation` whose state is a `HypergradientState`.
    """
    return scale_by_hypergradient(optax.scale_by_adam(b1, b2, eps), learning_rate, beta)


def hypergradient_learning_rate(opt_state: Any) -> jax.Array:
    """The current learning rate held in `opt_state`, e.g. ``[M]`` for a population.

    Finds the `HypergradientState` inside any optimizer state (alone, in an
    `optax.chain`, stacked over a population's members) and returns its
    ``learning_rate``.

    Args:
      opt_state: an optimizer state, e.g. ``PopulationState.opt_state`` or the state
        your own loop carries.

    Raises:
      ValueError: if `opt_state` holds no `HypergradientState`, or more than one
        (read those with ``jax.tree_util`` yourself).
    """
    found = [leaf for leaf in jax.tree_util.tree_leaves(
        opt_state, is_leaf=lambda node: isinstance(node, HypergradientState))
        if isinstance(leaf, HypergradientState)]
    if len(found) != 1:
        raise ValueError(
            f"`opt_state` must hold exactly one HypergradientState (the state of "
            f"scale_by_hypergradient, hd_sgd, hd_sgdn or hd_adam), found {len(found)}.")
    return found[0].learning_rate
