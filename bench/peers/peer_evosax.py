"""evosax's OpenAI-ES on gymnax, set up like ``proxrl train es``: the peer of bench/bench_es_peers.py.

Run it with the evosax venv's python (``bash bench/setup_peers.sh evosax``: evosax 0.3.x and gymnax 1.x):

    ~/.cache/proxrl-peers/evosax/bin/python bench/peers/peer_evosax.py --env Pendulum-v1 --seeds 4 \
        --generations 300 --population 64 --rollouts 5 --sigma 0.1 --lr 0.05

The same population of antithetic pairs, the same network as proxrl's implicit policy (an MLP on [s, ξ],
ξ ∼ N(0, 1) drawn at every step, tanh hidden layers with orthogonal(√2) weights, an orthogonal(0.01) output
squashed into the action box or argmaxed), centered ranks, Adam on the mean, a constant σ, observations
standardised by evosax's running statistics. evosax scores every member on ``rollouts`` whole episodes started
from the same reset keys for the whole population (its "Pegasus" common random numbers); evosax minimises, so the
fitness handed to it is the negated return. Seeds are vmapped and the generations run in one ``lax.scan``, as
proxrl's run is. Prints one JSON line: compile and run seconds (wall and CPU), per seed the population mean return
of every generation's members (for the time to a threshold) and a final evaluation of the mean (ξ = 0).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from evosax.algorithms import Open_ES
from evosax.problems import GymnaxProblem


class Policy(nn.Module):
    """a = g_θ(s, ξ) as in proxrl.deep.implicit.policy.ImplicitPolicy."""

    num_outputs: int
    discrete: bool
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    hidden: tuple[int, ...] = (32, 32)
    noise_dim: int = 1
    deterministic: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        xi = jax.random.normal(key, (*obs.shape[:-1], self.noise_dim))
        x = jnp.concatenate([obs, jnp.zeros_like(xi) if self.deterministic else xi], axis=-1)
        for width in self.hidden:
            x = nn.tanh(nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)))(x))
        raw = nn.Dense(self.num_outputs, kernel_init=nn.initializers.orthogonal(0.01))(x)
        if self.discrete:
            return jnp.argmax(raw, axis=-1)
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        return low + 0.5 * (jnp.tanh(raw) + 1.0) * (high - low)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--generations", type=int, default=300)
    p.add_argument("--population", type=int, default=64)
    p.add_argument("--rollouts", type=int, default=5, help="whole episodes per member and generation")
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--hidden", default="32,32")
    p.add_argument("--noise-dim", type=int, default=1)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--raw-obs", action="store_true", help="no observation normalisation (use_normalize_obs=False)"
    )
    args = p.parse_args()

    import gymnax

    env, env_params = gymnax.make(args.env)
    space = env.action_space(env_params)
    discrete = not hasattr(space, "low")
    hidden = tuple(int(h) for h in args.hidden.split(","))
    kw = dict(
        num_outputs=int(space.n) if discrete else int(np.prod(space.shape)),
        discrete=discrete,
        low=() if discrete else tuple(np.broadcast_to(space.low, space.shape).tolist()),
        high=() if discrete else tuple(np.broadcast_to(space.high, space.shape).tolist()),
        hidden=hidden,
        noise_dim=args.noise_dim,
    )
    norm = not args.raw_obs
    problem = GymnaxProblem(args.env, Policy(**kw), num_rollouts=args.rollouts, use_normalize_obs=norm)
    evaluator = GymnaxProblem(
        args.env, Policy(**kw, deterministic=True), num_rollouts=args.eval_episodes, use_normalize_obs=norm
    )
    solution = problem.sample(jax.random.key(0))
    es = Open_ES(
        population_size=args.population,
        solution=solution,
        optimizer=optax.adam(args.lr),
        std_schedule=optax.constant_schedule(args.sigma),
    )
    params = es.default_params

    def run(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        k_init, k_state, k_prob, key = jax.random.split(key, 4)
        state = es.init(k_state, problem.sample(k_init), params)
        pstate = problem.init(k_prob)

        def generation(carry, k):
            state, pstate = carry
            k_ask, k_eval, k_tell = jax.random.split(k, 3)
            population, state = es.ask(k_ask, state, params)
            returns, pstate, _ = problem.eval(k_eval, population, pstate)
            state, _ = es.tell(k_tell, population, -returns, state, params)
            return (state, pstate), jnp.mean(returns)

        (state, pstate), curve = jax.lax.scan(
            generation, (state, pstate), jax.random.split(key, args.generations)
        )
        mean = jax.tree.map(lambda x: x[None], es.get_mean(state))
        final, _, _ = evaluator.eval(jax.random.key(1), mean, pstate)
        return curve, final[0]

    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    fn = jax.jit(jax.vmap(run))
    t0, c0 = time.perf_counter(), time.process_time()
    compiled = fn.lower(keys).compile()
    t1, c1 = time.perf_counter(), time.process_time()
    curve, final = jax.block_until_ready(compiled(keys))
    t2, c2 = time.perf_counter(), time.process_time()
    print(
        json.dumps(
            dict(
                lib="evosax",
                version=importlib.metadata.version("evosax"),
                env=args.env,
                seeds=args.seeds,
                generations=args.generations,
                population=args.population,
                rollouts=args.rollouts,
                sigma=args.sigma,
                lr=args.lr,
                hidden=hidden,
                noise_dim=args.noise_dim,
                num_params=int(sum(x.size for x in jax.tree.leaves(solution))),
                compile_wall=t1 - t0,
                compile_cpu=c1 - c0,
                run_wall=t2 - t1,
                run_cpu=c2 - c1,
                curve=np.asarray(curve).round(2).tolist(),
                final=np.asarray(final).round(2).tolist(),
            )
        )
    )


if __name__ == "__main__":
    main()
