"""Implicit policies a = g_θ(s, ξ): a network fed the state and a noise input ξ, whose density π_θ(a|s) is unknown.

The lecture's "Implicitly modeling π_θ(a|s): can sample from it, but do not know the function π_θ(·|s)". Without
log π_θ the score-function estimators (REINFORCE, A2C, PPO) do not apply; two routes do:

- :mod:`proxrl.deep.implicit.es`: the one-point (zeroth-order) estimator in parameter space, evolution
  strategies / augmented random search — only returns of perturbed policies are needed;
- :mod:`proxrl.deep.implicit.ac`: the deterministic-policy-gradient route, through a learned Q_φ by
  reparameterisation, ∇_θ Q_φ(s, g_θ(s, ξ)).
"""
