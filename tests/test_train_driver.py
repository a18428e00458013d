"""The shared training driver, with a small test-double back end (a noisy random walk)."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.config import override
from proxrl.deep.on_policy.a2c import A2CConfig
from proxrl.deep.on_policy.ppo import PPOConfig
from proxrl.errors import ConfigError
from proxrl.run.checkpoints import read_metadata
from proxrl.run.runner import Runner
from proxrl.run.train import RunConfig, make_train, train


class Walk(Runner):
    """A test-double back end: state = (key, x); update: x ← x + 1 + N(0, 1); evaluation returns x."""

    def __init__(self, name: str = "walk") -> None:
        self.name, self.steps_per_update = name, 10

    def init(self, keys):
        return jax.vmap(lambda key: {"key": key, "x": jnp.zeros(())})(keys)

    def chunk(self, state, updates):
        def update(s, _):
            key, sub = jax.random.split(s["key"])
            x = s["x"] + 1.0 + jax.random.normal(sub)
            return {"key": key, "x": x}, {"episodic_return": x, "approx_kl": jnp.abs(x) * 0.0}

        run = jax.jit(jax.vmap(lambda s: jax.lax.scan(update, s, None, length=updates)))
        state, metrics = run(state)
        return state, {k: np.asarray(v) for k, v in metrics.items()}

    def evaluate(self, state, keys, round_index):
        return np.asarray(state["x"])

    def mode(self, state, obs):
        raise NotImplementedError

    def close(self):
        pass


def walk() -> Walk:
    return Walk()


def _cfg(tmp_path, name, **kw):
    base = dict(
        num_seeds=3,
        total_steps=400,
        eval_every=100,
        log_every=1,
        out=tmp_path / name,
        progress=False,
        compile_cache=False,
    )
    return RunConfig(**(base | kw))


def _rows(path):
    return list(csv.DictReader(path.open()))


def test_budget_is_exact_and_metric_rows_average_their_updates(tmp_path):
    """395 steps at 10 per update: 39 updates (not 40, not a rounded number of chunks), evaluations every 100
    steps and at the end (the last interval cut short); with log_every 50 each metrics row is the mean over
    seeds of the 5 updates before it (the last row over the 4 left), read back from the per-update run."""
    per_update = train(walk(), _cfg(tmp_path, "u", total_steps=395), {"lr": 0.1}, "Toy-v0")
    grouped = train(walk(), _cfg(tmp_path, "g", total_steps=395, log_every=50), {"lr": 0.1}, "Toy-v0")
    evals = _rows(grouped.path / "eval.csv")
    assert [int(r["step"]) for r in evals] == [100, 200, 300, 390]
    fine = np.array([float(r["episodic_return"]) for r in _rows(per_update.path / "metrics.csv")])
    rows = _rows(grouped.path / "metrics.csv")
    assert len(fine) == 39
    assert [int(r["step"]) for r in rows] == [50, 100, 150, 200, 250, 300, 350, 390]
    expected = [fine[i : i + 5].mean() for i in (0, 5, 10, 15, 20, 25, 30)] + [fine[35:39].mean()]
    np.testing.assert_allclose([float(r["episodic_return"]) for r in rows], expected, rtol=1e-5)


def test_records_metrics_eval_checkpoint_and_plot(tmp_path):
    rd = train(walk(), _cfg(tmp_path, "a"), {"lr": 0.1}, "Toy-v0")
    metrics, evals = _rows(rd.path / "metrics.csv"), _rows(rd.path / "eval.csv")
    assert len(metrics) == 40 and metrics[-1]["step"] == "400"
    assert len(evals) == 4 and {"eval_return_seed0", "eval_return_seed2"} <= set(evals[0])
    # x after 40 updates ≈ 40 ± √40·1.96 per seed
    finals = [float(evals[-1][f"eval_return_seed{i}"]) for i in range(3)]
    assert all(40 - 4 * np.sqrt(40) < f < 40 + 4 * np.sqrt(40) for f in finals)
    assert len(set(finals)) == 3  # seeds differ
    assert read_metadata(rd.path / "checkpoint.safetensors")["chunk"] == 4
    for f in ("config.json", "learning_curve.png", "summary.md"):
        assert (rd.path / f).exists()
    assert list((rd.path / "tb").iterdir())
    assert "3 seeds × 400 environment steps, seeds trained together" in (rd.path / "summary.md").read_text()


def test_one_seed_reports_no_interval(tmp_path):
    rd = train(walk(), _cfg(tmp_path, "one", num_seeds=1, total_steps=200), {}, "Toy-v0")
    evals = _rows(rd.path / "eval.csv")
    assert evals[-1]["eval_return_lo"] == evals[-1]["eval_return_hi"] == "nan"
    summary = (rd.path / "summary.md").read_text()
    assert "1 seed × 200 environment steps." in summary
    assert (
        f"final evaluation return: {float(evals[-1]['eval_return_mean']):.1f} (one seed: no interval)"
        in summary
    )


def test_same_seed_same_numbers_and_resume_equals_uninterrupted(tmp_path):
    a = train(walk(), _cfg(tmp_path, "a"), {}, "Toy-v0")
    b = train(walk(), _cfg(tmp_path, "b"), {}, "Toy-v0")
    for table in ("metrics.csv", "eval.csv"):
        assert (a.path / table).read_bytes() == (b.path / table).read_bytes(), table
    half = train(walk(), _cfg(tmp_path, "c", total_steps=200), {}, "Toy-v0")
    assert len(_rows(half.path / "eval.csv")) == 2
    resumed = train(walk(), _cfg(tmp_path, "unused", out=None, resume=half.path), {}, "Toy-v0")
    assert resumed.path == half.path
    for table in ("metrics.csv", "eval.csv"):
        assert (half.path / table).read_bytes() == (a.path / table).read_bytes(), table
    assert len(_rows(half.path / "metrics.csv")) == 40


def test_rows_logged_after_the_last_checkpoint_are_cut_on_resume(tmp_path):
    """A run killed after logging chunk 3 but before checkpointing it resumes from chunk 2: the rows logged
    after the checkpoint (here a lost eval row, a lost metrics row and a torn line) are cut before the resumed
    run logs chunk 3 again, so the tables equal an uninterrupted run's."""
    whole = train(walk(), _cfg(tmp_path, "whole"), {}, "Toy-v0")
    half = train(walk(), _cfg(tmp_path, "c", total_steps=200), {}, "Toy-v0")
    for table in ("eval", "metrics", "timing"):
        with (half.path / f"{table}.csv").open() as f:
            header = f.readline().strip().split(",")
        lost = {name: "-999" for name in header} | {"step": "300"}
        with (half.path / f"{table}.csv").open("a") as f:
            f.write(",".join(lost[name] for name in header) + "\n" + "310,-9")  # and a torn last line
    train(walk(), _cfg(tmp_path, "unused", out=None, resume=half.path), {}, "Toy-v0")
    rows = _rows(half.path / "eval.csv")
    assert [r["step"] for r in rows] == ["100", "200", "300", "400"]
    assert (half.path / "eval.csv").read_bytes() == (whole.path / "eval.csv").read_bytes()
    assert (half.path / "metrics.csv").read_bytes() == (whole.path / "metrics.csv").read_bytes()
    timing = _rows(half.path / "timing.csv")
    assert [r["step"] for r in timing] == ["100", "200", "300", "400"]
    summary = (half.path / "summary.md").read_text()
    assert f"{float(rows[3]['eval_return_seed0']):.1f}" in summary
    total = sum(float(r["chunk_seconds"]) for r in timing)  # the lost chunk's time is not counted
    assert f"training time: {total:.1f} s" in summary


def test_a_run_whose_last_interval_was_short_is_extended_from_where_it_stopped(tmp_path):
    """A budget of 250 steps ends with a short interval (evaluations at 100, 200, 250); resumed with 400 it goes on
    in whole intervals from 250 (350, then 400), continuing the walk from its checkpoint: its updates after 250
    equal those of a run cut into other intervals (250, then 400)."""
    short = train(walk(), _cfg(tmp_path, "short", total_steps=250), {}, "Toy-v0")
    assert [r["step"] for r in _rows(short.path / "eval.csv")] == ["100", "200", "250"]
    train(walk(), _cfg(tmp_path, "unused", out=None, resume=short.path, total_steps=400), {}, "Toy-v0")
    assert [r["step"] for r in _rows(short.path / "eval.csv")] == ["100", "200", "250", "350", "400"]
    assert read_metadata(short.path / "checkpoint.safetensors")["chunk"] == 5
    two = train(walk(), _cfg(tmp_path, "two", total_steps=250, eval_every=250), {}, "Toy-v0")
    train(
        walk(), _cfg(tmp_path, "u", out=None, resume=two.path, total_steps=400, eval_every=250), {}, "Toy-v0"
    )
    tail = lambda rd: [r for r in _rows(rd / "metrics.csv") if int(r["step"]) > 250]
    assert tail(short.path) == tail(two.path) and len(tail(short.path)) == 15


def test_resume_errors(tmp_path):
    """The messages name RunConfig's field (the command line writes it as the flag typed, --resume)."""
    rd = train(walk(), _cfg(tmp_path, "a", total_steps=100), {"lr": 0.1}, "Toy-v0")
    with pytest.raises(ConfigError, match=r"^resume '.*' was run with another configuration"):
        train(walk(), _cfg(tmp_path, "x", out=None, resume=rd.path), {"lr": 0.2}, "Toy-v0")
    with pytest.raises(ConfigError, match=r"^resume '.*' is not a run directory"):
        train(walk(), _cfg(tmp_path, "x", out=None, resume=tmp_path / "missing"), {}, "Toy-v0")

    def other():
        return Walk("other")

    with pytest.raises(ConfigError, match="holds a 'walk' run, not 'other'"):
        train(other(), _cfg(tmp_path, "x", out=None, resume=rd.path), {"lr": 0.1}, "Toy-v0")
    with pytest.raises(ConfigError, match="num_seeds"):
        train(walk(), _cfg(tmp_path, "y", num_seeds=0), {}, "Toy-v0")
    more = train(walk(), _cfg(tmp_path, "more", total_steps=300), {}, "Toy-v0")
    with pytest.raises(
        ConfigError, match=r"is at step 300, beyond this budget of 200 steps: give total_steps >= 300"
    ):
        train(walk(), _cfg(tmp_path, "x", out=None, resume=more.path, total_steps=200), {}, "Toy-v0")


@pytest.mark.parametrize(
    ("config", "field", "values"),
    [
        (override(PPOConfig(), num_envs=2, num_steps=32, hidden=(16,)), "lr", (1e-3, 3e-3)),
        (override(A2CConfig(), num_envs=2, num_steps=16, hidden=(16,)), "ent_coef", (0.0, 0.05)),
    ],
    ids=["ppo-lr", "a2c-ent_coef"],
)
def test_train_vmaps_traced_hyperparameters_and_each_lane_equals_its_own_run(config, field, values):
    """train(key, hyper) of any algorithm: one compiled call vmapped over two values of a hyperparameter gives, in
    each lane, the run of the config with that value (compiled on its own), and the lanes differ."""
    train = make_train(config, "CartPole-v1", 640)
    key = jax.random.key(0)
    both, metrics = jax.jit(jax.vmap(lambda v: train(key, {field: v})))(jnp.asarray(values, jnp.float32))
    assert metrics["env_steps"].shape[0] == 2
    for lane, value in enumerate(values):
        alone, _ = jax.jit(make_train(override(config, **{field: value}), "CartPole-v1", 640))(key)
        for a, b in zip(
            jax.tree.leaves(alone.carry.learner.params),
            jax.tree.leaves(jax.tree.map(lambda x, i=lane: x[i], both.carry.learner.params)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    first = jax.tree.leaves(both.carry.learner.params)[0]
    assert not np.allclose(first[0], first[1])
