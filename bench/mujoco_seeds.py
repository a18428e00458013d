"""Seeds and intervals of the 1M-step TD3/SAC figures on HalfCheetah-v5 and Hopper-v5 (bench/RESULTS.md).

Every finished seed's final evaluation (10 deterministic episodes at 1M steps) is a row of
``bench/sweeps/mujoco_offpolicy_finals.csv``: seed 0 from the single runs, the others from the cells of the sweep
``bench/sweeps/mujoco_offpolicy.toml``. This script adds the rows of finished cells from a sweep directory
(``--sweep DIR --write``) and prints, per algorithm and environment, the seeds, their mean and a 95% Student-t
interval (``proxrl.run.stats.mean_ci``), or "one seed: no interval". ``--sweep DIR`` also lists the cells still
running, at their last evaluation (not counted in the table).

    python bench/mujoco_seeds.py [--sweep runs/sweep-mujoco-offpolicy] [--write]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from proxrl.run.stats import mean_ci

FINALS = Path(__file__).resolve().parent / "sweeps" / "mujoco_offpolicy_finals.csv"
FIELDS = ("algo", "env", "seed", "steps", "final_return", "source")


def read_finals(path: Path = FINALS) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def sweep_rows(sweep: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows for the seeds of the sweep's finished cells, and a line per cell still running."""
    done: dict[str, dict[str, str]] = {}
    if (sweep / "results.csv").exists():
        with (sweep / "results.csv").open(newline="") as f:
            done = {r["run_dir"]: r for r in csv.DictReader(f) if r["status"] == "ok"}
    rows, running = [], []
    for cell in sorted((sweep / "cells").glob("*")):
        config = json.loads((cell / "config.json").read_text())
        algo, env, base = config["algo"], config["env"], int(config["run"]["seed"])
        result = done.get(str(Path("cells") / cell.name))
        if result is not None:
            for i, value in enumerate(json.loads(result["final_per_seed"])):
                seed = f"key {base}, index {i}"
                rows.append(
                    dict(
                        algo=algo,
                        env=env,
                        seed=seed,
                        steps=result["steps"],
                        final_return=f"{value:.1f}",
                        source=f"sweep cell {result['key']}",
                    )
                )
        elif (cell / "eval.csv").exists():
            with (cell / "eval.csv").open(newline="") as f:
                evals = list(csv.DictReader(f))
            if evals:
                last = evals[-1]
                seeds = [float(v) for k, v in last.items() if k.startswith("eval_return_seed")]
                running.append(
                    f"{algo} {env}: running, step {int(last['step']):,}, per seed "
                    + ", ".join(f"{v:.0f}" for v in seeds)
                )
    return rows, running


STEPS = 1_000_000
"""Environment steps per seed of every figure in the table."""


def table(finals: list[dict[str, str]]) -> str:
    short = [r for r in finals if int(float(r["steps"])) != STEPS]
    if short:
        r = short[0]
        raise SystemExit(
            f"{r['algo']} {r['env']} ({r['seed']}, {r['source']}) is at {r['steps']} steps, not {STEPS:,}: "
            "the table pools final returns at 1M steps only"
        )
    lines = [
        "| algorithm | environment | seeds | final return per seed | mean | 95% interval (t) |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in finals:
        groups.setdefault((row["algo"], row["env"]), []).append(row)
    for (algo, env), rows in sorted(groups.items()):
        values = np.array([float(r["final_return"]) for r in rows])
        ci = mean_ci(values)
        interval = "one seed: no interval" if len(values) < 2 else f"[{ci.lo:.0f}, {ci.hi:.0f}]"
        per_seed = ", ".join(f"{v:.0f} ({r['seed']})" for v, r in zip(values, rows, strict=True))
        lines.append(f"| {algo.upper()} | {env} | {len(values)} | {per_seed} | {ci.mean:.0f} | {interval} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sweep", type=Path, help="a directory of bench/sweeps/mujoco_offpolicy.toml's sweep"
    )
    parser.add_argument(
        "--write", action="store_true", help=f"add the sweep's finished seeds to {FINALS.name}"
    )
    args = parser.parse_args()
    finals = read_finals()
    if args.sweep is not None:
        rows, running = sweep_rows(args.sweep)
        known = {(r["algo"], r["env"], r["seed"]) for r in finals}
        new = [r for r in rows if (r["algo"], r["env"], r["seed"]) not in known]
        finals += new
        if args.write and new:
            with FINALS.open("a", newline="") as f:
                csv.DictWriter(f, FIELDS).writerows(new)
            print(f"{len(new)} seeds added to {FINALS}")
        for line in running:
            print(line)
    print(table(finals))


if __name__ == "__main__":
    main()
