"""The proximal-step kit: every policy update in proxrl is one composition of these pieces.

    θ_{k+1} = argmax_θ  L_k(θ; Â_k) − (1/η)·D(θ, θ_k) [+ extras]

| method                    | surrogate (:mod:`~proxrl.prox.surrogates`) | geometry (:mod:`~proxrl.prox.geometry`) | solver (:mod:`~proxrl.prox.solvers`) |
|---------------------------|--------------------------|-------------------------|-----------------------------------|
| EW / policy mirror descent| table                    | table KL                | closed form θ_k + η q̂              |
| PG on tables              | table                    | Euclidean               | closed form θ_k + η ∇L             |
| NPG on tables             | table                    | Fisher (per state)      | closed form θ_k + η F⁺∇L (pinv / lstsq) |
| NPG, regularisation form  | table                    | table KL, β = 1/η       | m gradient steps                   |
| REINFORCE, A2C            | score function (+ entropy) | Euclidean (preconditioned) | one optimiser step              |
| NPG / TRPO                | ratio                    | head KL → Fisher        | conjugate gradient (+ line search) |
| PPO                       | ratio / clipped ratio (+ entropy, + value) | head KL, β fixed or adaptive / none | epochs × minibatches |
| Q actor-critic            | score function / all actions | Euclidean (preconditioned) | one optimiser step            |
| DPG, DDPG, TD3            | deterministic Q(s, μ_θ(s)) | Euclidean (preconditioned) | one optimiser step              |
| SAC                       | soft E[Q − α log π]      | Euclidean (preconditioned) | one optimiser step               |
| off-policy actor-critic   | all actions (+ entropy)  | Euclidean (preconditioned) | one optimiser step               |

:mod:`~proxrl.prox.critic` holds what every critic shares (TD targets, the value loss, Polyak averaging);
critics are fitted with :func:`proxrl.prox.solvers.fit`, the same optimisation loop the inner-step solver uses.
"""

from proxrl.prox.step import Coefficient, Problem, ProxStep, Solver, StepState, Term, diagnostics, prox_step

__all__ = ["Coefficient", "Problem", "ProxStep", "Solver", "StepState", "Term", "diagnostics", "prox_step"]
