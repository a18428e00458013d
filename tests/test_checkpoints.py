"""Checkpoints (safetensors, atomic, structure-checked), TensorBoard logging, compilation cache."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.errors import ConfigError
from proxrl.run.cache import enable_compilation_cache
from proxrl.run.checkpoints import load_checkpoint, read_metadata, save_checkpoint
from proxrl.run.records import RunDir


def _tree(seed):
    k = jax.random.key(seed)
    return {
        "params": {"w": jax.random.normal(k, (3, 2)), "b": jnp.arange(2.0)},
        "step": jnp.int32(7),
        "key": k,
    }


def test_roundtrip_keeps_values_dtypes_and_keys(tmp_path):
    tree = _tree(0)
    save_checkpoint(tmp_path / "c.safetensors", tree, {"algo": "ppo", "step": 7})
    back, meta = load_checkpoint(tmp_path / "c.safetensors", _tree(1))
    assert meta == {"algo": "ppo", "step": 7}
    np.testing.assert_array_equal(back["params"]["w"], tree["params"]["w"])
    assert back["step"].dtype == jnp.int32 and int(back["step"]) == 7
    np.testing.assert_array_equal(jax.random.key_data(back["key"]), jax.random.key_data(tree["key"]))
    # the file holds no pickle: it is a safetensors header + raw buffers
    assert b"pickle" not in (tmp_path / "c.safetensors").read_bytes()


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, _tree(0), {"step": 1})
    save_checkpoint(p, _tree(2), {"step": 2})
    assert read_metadata(p)["step"] == 2
    assert [f.name for f in tmp_path.iterdir()] == ["c.safetensors"]


def test_mismatched_structure_and_missing_file_are_one_line_errors(tmp_path):
    p = save_checkpoint(tmp_path / "c.safetensors", _tree(0), {})
    with pytest.raises(ConfigError, match="shape"):
        load_checkpoint(p, {**_tree(0), "params": {"w": jnp.zeros((4, 2)), "b": jnp.zeros(2)}})
    with pytest.raises(ConfigError, match="lacks"):
        load_checkpoint(p, {**_tree(0), "extra": jnp.zeros(1)})
    with pytest.raises(ConfigError, match="does not exist"):
        read_metadata(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a safetensors file"):
        read_metadata(tmp_path / "junk.safetensors")


def test_log_scalars_writes_csv_and_tensorboard(tmp_path):
    rd = RunDir("t", tmp_path / "r")
    rd.log_scalars(0, {"episodic_return": 10.0, "approx_kl": np.float32(0.01)})
    rd.log_scalars(100, {"episodic_return": 20.0, "approx_kl": np.float32(0.02)})
    rd.close()
    lines = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,episodic_return,approx_kl" and lines[2].startswith("100,20")
    events = list((tmp_path / "r" / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_compilation_cache_directory(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    try:
        d = enable_compilation_cache(tmp_path / "jax")
        assert d.is_dir() and jax.config.jax_compilation_cache_dir == str(d)
    finally:  # leave the rest of the suite without a persistent cache (see RunConfig.compile_cache)
        jax.config.update("jax_compilation_cache_dir", before)
