"""Runs that never lie and never lose data: kills at chosen moments, resume, locks, links, corrupt and foreign
checkpoints, non-finite values, a full disk.

Kills are real (SIGKILL) in a ``proxrl train`` subprocess, at points named by ``PROXRL_FAULT``
(:mod:`proxrl.run.faults`); the resumes run in this process. The records of every killed-and-resumed run are
compared byte for byte with one uninterrupted run of the same configuration (tiny PPO on gymnax CartPole, 2 seeds,
4 chunks of 2 updates). The runs share JAX's persistent compilation cache, so only the first run compiles.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.cli import main
from proxrl.errors import ConfigError, NonFiniteError
from proxrl.run.checkpoints import load_checkpoint, read_metadata
from proxrl.run.commands import load_run
from proxrl.run.records import event_files, read_events
from proxrl.run.runner import Runner
from proxrl.run.train import CHECKPOINT, RunConfig, train

TINY = [
    "--env",
    "CartPole-v1",
    "--num-seeds",
    "2",
    "--total-steps",
    "512",
    "--eval-every",
    "128",
    "--num-envs",
    "2",
    "--num-steps",
    "32",
    "--num-minibatches",
    "2",
    "--update-epochs",
    "1",
    "--hidden",
    "16",
    "--eval-episodes",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="module")
def args():
    """``train ppo`` with the tiny configuration (and the default compilation cache, as test_train_cli)."""
    return ["train", "ppo", *TINY]


@pytest.fixture(scope="module")
def reference(args, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main([*args, "--out", str(out)]) == 0
    return out


def _spawn(args, fault, **kw):
    env = dict(os.environ, PROXRL_FAULT=fault)
    return subprocess.Popen([sys.executable, "-m", "proxrl.cli", *args], env=env, **kw)


def _killed(args, fault):
    """``proxrl ARGS`` in a subprocess that SIGKILLs itself at ``fault``."""
    p = _spawn(args, fault, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL, err
    return p


def _error(capsys):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def _tb_points(run):
    """``{tag: [steps]}`` of every scalar in the run's event files, in file order."""
    points = {}
    for p in event_files(run / "tb"):
        for _, _, event in read_events(p):
            for v in event.summary.value if event.HasField("summary") else ():
                points.setdefault(v.tag, []).append(event.step)
    return points


def assert_same_records(run: Path, reference: Path) -> None:
    """metrics.csv and eval.csv equal the reference's byte for byte; every finite value of them is one
    TensorBoard point (no point lost, none twice); no temporary file is left."""
    for table in ("metrics.csv", "eval.csv"):
        assert (run / table).read_bytes() == (reference / table).read_bytes(), table
    expected = {}
    for table in ("metrics", "eval"):
        rows = np.atleast_1d(np.genfromtxt(run / f"{table}.csv", delimiter=",", names=True))
        for name in rows.dtype.names[1:]:
            expected[f"{table}/{name}"] = [
                int(s) for s, v in zip(rows["step"], rows[name], strict=True) if np.isfinite(v)
            ]
    assert _tb_points(run) == {k: v for k, v in expected.items() if v}
    assert not [p.name for p in [*run.glob(".*.tmp"), *run.glob("tb/.*.tmp")]]


@pytest.mark.parametrize(
    "fault",
    ["config:kill", "checkpoint-write#2:kill"],
    ids=["before-first-checkpoint", "during-checkpoint-write"],
)
def test_killed_run_resumed_equals_the_uninterrupted_run(fault, args, reference, tmp_path):
    out = tmp_path / "run"
    _killed([*args, "--out", str(out)], fault)
    if fault == "config:kill":  # a directory with config.json and no checkpoint: --resume starts it afresh
        assert (out / "config.json").exists() and not (out / CHECKPOINT).exists()
    else:  # the new checkpoint only in a temporary file
        assert len(list(out.glob(".checkpoint.safetensors.*.tmp"))) == 1
        assert read_metadata(out / CHECKPOINT)["chunk"] == 1
    assert main([*args, "--resume", str(out)]) == 0
    assert_same_records(out, reference)
    assert len(event_files(out / "tb")) == (1 if fault == "config:kill" else 2)


def test_ctrl_c_is_one_line_exit_130_and_the_run_resumes(args, reference, tmp_path, monkeypatch, capsys):
    """Ctrl-C (KeyboardInterrupt) after the second chunk's rows, before its checkpoint: one line, exit 130, the
    lock released; --resume then finishes the run with the uninterrupted run's records."""
    out = tmp_path / "run"
    monkeypatch.setenv("PROXRL_FAULT", "eval-row#2:interrupt")
    assert main([*args, "--out", str(out)]) == 130
    assert _error(capsys) == (
        f"proxrl: interrupted; continue the run from its last checkpoint with --resume {out}"
    )
    assert (out / ".lock").read_text() == "" and read_metadata(out / CHECKPOINT)["chunk"] == 1
    monkeypatch.delenv("PROXRL_FAULT")
    assert main([*args, "--resume", str(out)]) == 0
    assert_same_records(out, reference)


def test_a_second_resume_is_refused_while_the_first_runs_and_a_killed_owner_is_replaced(
    args, reference, tmp_path, monkeypatch, capsys
):
    """A run stopped by a full disk after writing its config.json; one --resume of it stops itself (SIGSTOP)
    after logging its third chunk, before that chunk's checkpoint; a second --resume meanwhile exits 2 naming
    the first's pid and changes nothing; the first is then killed (SIGKILL, between the eval row and its
    checkpoint), and a third --resume takes over the dead process's lock and completes the run."""
    out = tmp_path / "run"
    monkeypatch.setenv("PROXRL_FAULT", "config:enospc")
    assert main([*args, "--out", str(out)]) == 2
    assert "No space left on device" in _error(capsys)
    monkeypatch.delenv("PROXRL_FAULT")
    first = _spawn([*args, "--resume", str(out)], "eval-row#3:stop", stdout=subprocess.DEVNULL)
    try:
        _, status = os.waitpid(first.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        assert main([*args, "--resume", str(out)]) == 2
        assert f"is in use by process {first.pid}" in _error(capsys)
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
        assert (out / ".lock").read_text().strip() == str(first.pid)
        assert (out / "eval.csv").read_text().count("\n") == 1 + 3  # the third chunk's rows logged,
        assert read_metadata(out / CHECKPOINT)["chunk"] == 2  # its checkpoint not written
    finally:
        first.kill()
        first.wait()
    assert main([*args, "--resume", str(out)]) == 0  # the dead process's lock is taken over
    assert_same_records(out, reference)


def test_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_data(
    args, reference, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    monkeypatch.setenv("PROXRL_FAULT", "checkpoint-write#3:enospc")
    assert main([*args, "--out", str(out)]) == 2
    monkeypatch.delenv("PROXRL_FAULT")
    assert _error(capsys) == f"proxrl: error: {out / CHECKPOINT}: No space left on device"
    assert read_metadata(out / CHECKPOINT)["chunk"] == 2  # the previous checkpoint, intact
    assert main([*args, "--resume", str(out)]) == 0
    assert_same_records(out, reference)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_evaluate_refuses_corrupt_foreign_and_contradicted_checkpoints(args, reference, tmp_path, capsys):
    """evaluate rebuilds the run from its checkpoint's own configuration; a flipped bit (data or header), a
    config.json that says otherwise, or a checkpoint copied from another run (another seed; the same options but
    another run) is one line and exit 2, for evaluate and --resume alike."""
    assert main(["evaluate", str(reference), "--episodes", "1"]) == 0
    capsys.readouterr()
    cases = {}
    for case in ("data", "header", "activation", "foreign", "other-run"):
        run = tmp_path / case
        run.mkdir()
        for f in ("config.json", CHECKPOINT):
            (run / f).write_bytes((reference / f).read_bytes())
        cases[case] = run
    size = (reference / CHECKPOINT).stat().st_size
    _flip(cases["data"] / CHECKPOINT, size - 5)
    _flip(cases["header"] / CHECKPOINT, (reference / CHECKPOINT).read_bytes().index(b"tanh"))
    config = json.loads((reference / "config.json").read_text())
    assert config["algo_config"]["network"]["activation"] == "tanh"
    config["algo_config"]["network"]["activation"] = "relu"
    (cases["activation"] / "config.json").write_text(json.dumps(config))
    run_id = config["run_id"]
    config = json.loads((reference / "config.json").read_text()) | {"run_id": "0" * 32}
    (cases["other-run"] / "config.json").write_text(json.dumps(config))  # same options, another run
    other = tmp_path / "other"
    assert main([*args, "--seed", "1", "--total-steps", "128", "--out", str(other)]) == 0
    (cases["foreign"] / CHECKPOINT).write_bytes((other / CHECKPOINT).read_bytes())
    capsys.readouterr()
    expected = {
        "data": "is corrupt: tensor",
        "header": "is corrupt: its metadata does not match its hash",
        "activation": "disagrees with the checkpoint's configuration: algo_config.network.activation is 'relu' in "
        "config.json, 'tanh' in the checkpoint",
        "foreign": "disagrees with the checkpoint's configuration: run.seed is 0 in config.json, 1 in the "
        "checkpoint",
        "other-run": f"run_id is '{'0' * 32}' in config.json, '{run_id}' in the checkpoint",
    }
    for case, fragment in expected.items():
        assert main(["evaluate", str(cases[case]), "--episodes", "1"]) == 2, case
        assert fragment in _error(capsys), case
        assert main([*args, "--resume", str(cases[case])]) == 2, case
        assert fragment in _error(capsys), case


def test_divergent_ppo_stops_with_exit_3_and_its_last_checkpoint_loads(args, tmp_path, capsys):
    """PPO on Pendulum with lr 1e6: finite after its first update, NaN after the second."""
    out = tmp_path / "run"
    divergent = ["train", "ppo", "--env", "Pendulum-v1", "--lr", "1e6", "--max-grad-norm", "1e30"]
    small = ["--total-steps", "128", "--eval-every", "32", "--num-envs", "2", "--num-steps", "16"]
    small += ["--num-minibatches", "1", "--update-epochs", "1", "--hidden", "16", "--eval-episodes", "1"]
    assert main([*divergent, *small, "--no-progress", "--out", str(out)]) == 3
    err = _error(capsys)
    update = int(err.split(" at update ")[1].split()[0]) if " at update " in err else -1
    assert update >= 2, err
    good = update - 1  # one update per chunk: the checkpoint of the update before
    assert err.startswith("proxrl: error: non-finite value: ") and "of seed 0 (--seed 0)" in err
    assert err.endswith(f"(its checkpoint of step {good * 32:,} is kept)")
    assert (out / "eval.csv").read_text().count("\n") == 1 + good
    assert (out / "metrics.csv").read_text().count("\n") == 1 + good
    assert read_metadata(out / CHECKPOINT)["step"] == good * 32
    _, _, _, runner, state = load_run(out, eval_episodes=1)
    assert all(
        np.isfinite(np.asarray(x)).all()
        for x in jax.tree.leaves(state)
        if jnp.issubdtype(x.dtype, jnp.floating)
    )
    assert np.isfinite(runner.evaluate(state, jax.random.split(jax.random.key(0), 1), 0)).all()
    assert not (out / "summary.md").exists()


def test_nan_and_inf_options_are_refused_before_anything_runs(tmp_path, capsys):
    for option, value in (("--log-std-init", "nan"), ("--ent-coef", "inf"), ("--clip-eps", "nan")):
        out = tmp_path / option
        assert main(["train", "ppo", option, value, "--out", str(out)]) == 2
        assert f"{option} must be a finite number" in _error(capsys)
        assert not out.exists()


class Diverging(Runner):
    """A test-double back end: x ← x + 1 + N(0, 1) each update, evaluation returns x. From update ``at``
    (1-based) on, seed 1's weight ``w`` is NaN (``nan``) or its metric ``ratio`` is infinite (``inf``);
    ``episodic_return`` is always NaN (no episode ends), which is no fault."""

    def __init__(self, at: int, kind: str = "nan") -> None:
        self.name, self.steps_per_update, self.at, self.kind = "walk", 10, at, kind
        self._chunks = {}

    def init(self, keys):
        n = keys.shape[0]
        return {
            "key": keys,
            "x": jnp.zeros(n),
            "w": jnp.ones((n, 2)),
            "t": jnp.zeros(n, jnp.int32),
            "i": jnp.arange(n),
        }

    def chunk(self, state, updates):
        if updates not in self._chunks:

            def update(s, _):
                key, sub = jax.random.split(s["key"])
                t = s["t"] + 1
                bad = (t >= self.at) & (s["i"] == 1)
                w = jnp.where(bad & (self.kind == "nan"), jnp.nan, s["w"])
                x = s["x"] + 1.0 + jax.random.normal(sub)
                ratio = jnp.where(bad & (self.kind == "inf"), jnp.inf, 1.0)
                metrics = {"episodic_return": jnp.nan, "loss": jnp.sum(w) * x, "ratio": ratio}
                return {**s, "key": key, "x": x, "w": w, "t": t}, metrics

            self._chunks[updates] = jax.jit(jax.vmap(lambda s: jax.lax.scan(update, s, None, length=updates)))
        state, metrics = self._chunks[updates](state)
        return state, {k: np.asarray(v) for k, v in metrics.items()}

    def evaluate(self, state, keys, round_index):
        return np.asarray(state["x"])

    def mode(self, state, obs):
        raise NotImplementedError

    def close(self):
        pass


def _walk_cfg(out, **kw):
    base = dict(
        num_seeds=2,
        total_steps=400,
        eval_every=100,
        log_every=1,
        progress=False,
        compile_cache=False,
        out=out,
    )
    return RunConfig(**(base | kw))


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        (
            "nan",
            "metric 'loss' is nan at update 25 (step 250) of seed 1 (--seed 0) (parameter ['w'] is non-finite",
        ),
        ("inf", "metric 'ratio' is inf at update 25 (step 250) of seed 1 (--seed 0)"),
    ],
)
def test_first_non_finite_value_stops_the_run_and_withholds_its_chunk(tmp_path, kind, fragment):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as err:
        train(Diverging(at=25, kind=kind), _walk_cfg(out), {"lr": 0.1}, "Toy-v0")
    message = str(err.value)
    assert fragment in message and "\n" not in message
    assert message.endswith("(its checkpoint of step 200 is kept)")
    assert [r.split(",")[0] for r in (out / "eval.csv").read_text().splitlines()[1:]] == ["100", "200"]
    assert (out / "metrics.csv").read_text().count("\n") == 1 + 20
    assert max(s for steps in _tb_points(out).values() for s in steps) == 200
    state, meta = load_checkpoint(
        out / CHECKPOINT, Diverging(25).init(jax.random.split(jax.random.key(0), 2))
    )
    assert meta["step"] == 200 and np.isfinite(np.asarray(state["w"])).all()
    records = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(NonFiniteError) as again:  # the lock was released; the same seed diverges again
        train(Diverging(at=25, kind=kind), _walk_cfg(None, resume=out), {"lr": 0.1}, "Toy-v0")
    assert str(again.value) == message
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == records


def test_nan_only_in_episodic_return_is_no_fault_and_nan_options_are_refused(tmp_path):
    rd = train(Diverging(at=10**6), _walk_cfg(tmp_path / "ok"), {"lr": 0.1}, "Toy-v0")
    assert (rd.path / "eval.csv").read_text().count("\n") == 1 + 4
    with pytest.raises(ConfigError, match="lr must be a finite number, got nan"):
        train(Diverging(at=10**6), _walk_cfg(tmp_path / "bad"), {"lr": float("nan")}, "Toy-v0")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("link", ["metrics.csv", "tb"])
def test_resume_writes_nothing_through_a_symbolic_link(tmp_path, link):
    out = tmp_path / "run"
    train(Diverging(at=10**6), _walk_cfg(out, total_steps=200), {}, "Toy-v0")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / link
    (out / link).rename(target)
    (out / link).symlink_to(target)
    before = sorted((p.name, p.read_bytes()) for p in [target, *target.glob("*")] if p.is_file())
    with pytest.raises(ConfigError) as err:
        train(Diverging(at=10**6), _walk_cfg(None, resume=out), {}, "Toy-v0")
    assert f"'{link}' in run directory '{out}' is a symbolic link" in str(err.value)
    assert "\n" not in str(err.value)
    assert sorted((p.name, p.read_bytes()) for p in [target, *target.glob("*")] if p.is_file()) == before
