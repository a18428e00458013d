"""Checkpoints (safetensors, hashed, atomic, verified, structure-checked), TensorBoard logging, compilation cache."""

import errno
import json
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from proxrl.errors import ConfigError
from proxrl.run.cache import enable_compilation_cache
from proxrl.run.checkpoints import (
    load_checkpoint,
    read_checkpoint,
    read_metadata,
    save_checkpoint,
    verify_bytes,
)
from proxrl.run.records import RunDir, event_files, read_events


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
    q = save_checkpoint(tmp_path / "sac.safetensors", _tree(0), {"algo": "sac"})
    with pytest.raises(ConfigError, match=r"lacks .*another configuration \(it holds a 'sac' run\)"):
        load_checkpoint(q, {**_tree(0), "extra": jnp.zeros(1)})
    with pytest.raises(ConfigError, match="is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path, _tree(0))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a safetensors file"):
        read_metadata(tmp_path / "junk.safetensors")


def _flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _refused(path, data: bytes) -> str:
    path.write_bytes(data)
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path, _tree(1))
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("region", ["tensor data", "header"])
def test_every_single_bit_flip_is_refused_with_one_line(tmp_path, region):
    """Each bit of the file flipped in turn (the 8-byte length, the JSON header with the metadata and hashes,
    or the tensor bytes): every one is refused before a value is used."""
    p = save_checkpoint(
        tmp_path / "c.safetensors", _tree(0), {"algo": "ppo", "chunk": 3, "config": {"lr": 0.1}}
    )
    data = p.read_bytes()
    start = 8 + struct.unpack("<Q", data[:8])[0]  # the tensor data follows the header
    bits = range(start * 8, len(data) * 8) if region == "tensor data" else range(start * 8)
    messages = []
    for bit in bits:  # (verify_bytes is what every read of a checkpoint file runs on its bytes)
        with pytest.raises(ConfigError) as err:
            verify_bytes(_flipped(data, bit), "flipped")
        messages.append(str(err.value))
    assert not [m for m in messages if "\n" in m]
    assert _refused(tmp_path / "flipped.safetensors", _flipped(data, bits[len(bits) // 2]))  # through a file
    assert len(messages) == len(bits) > 300
    if region == "tensor data":
        assert all("is corrupt: tensor" in m and "does not match its hash" in m for m in messages)
    else:
        assert sum("its metadata does not match its hash" in m for m in messages) > len(bits) // 4


def test_edited_metadata_and_unhashed_checkpoints_are_refused(tmp_path):
    p = save_checkpoint(tmp_path / "c.safetensors", _tree(0), {"algo": "ppo", "chunk": 3})
    data = p.read_bytes()
    edited = data.replace(b'\\"chunk\\": 3', b'\\"chunk\\": 2')
    assert edited != data
    assert "its metadata does not match its hash" in _refused(tmp_path / "e.safetensors", edited)
    # a checkpoint written without hashes (as proxrl did before): refused, not trusted
    arrays = {k: np.asarray(v) for k, v in {"['step']": np.int32(7)}.items()}
    old = safetensors.numpy.save(arrays, metadata={"proxrl": json.dumps({"algo": "ppo"})})
    message = _refused(tmp_path / "old.safetensors", old)
    assert "has no content hash" in message and "refused" in message


def test_a_failed_write_keeps_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "c.safetensors", _tree(0), {"step": 1})
    monkeypatch.setenv("PROXRL_FAULT", "checkpoint-write:enospc")
    with pytest.raises(OSError) as err:
        save_checkpoint(p, _tree(2), {"step": 2})
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(p)
    assert read_metadata(p) == {"step": 1}
    back, _ = load_checkpoint(p, _tree(1))
    np.testing.assert_array_equal(back["params"]["w"], _tree(0)["params"]["w"])
    assert [f.name for f in tmp_path.iterdir()] == ["c.safetensors"]
    monkeypatch.delenv("PROXRL_FAULT")
    save_checkpoint(p, _tree(2), {"step": 2})
    assert read_checkpoint(p).metadata == {"step": 2}


def test_log_scalars_writes_csv_and_tensorboard(tmp_path):
    rd = RunDir("t", tmp_path / "r")
    rd.log_scalars(0, {"episodic_return": 10.0, "approx_kl": np.float32(0.01)})
    rd.log_scalars(100, {"episodic_return": 20.0, "approx_kl": np.float32(0.02)})
    rd.close()
    lines = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,episodic_return,approx_kl" and lines[2].startswith("100,20")
    events = list((tmp_path / "r" / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def _scalars(tb):
    return [
        (v.tag, e.step, v.simple_value)
        for p in event_files(tb)
        for _, _, e in read_events(p)
        if e.HasField("summary")
        for v in e.summary.value
    ]


def test_one_event_file_per_writer_never_rewritten_and_every_point_kept(tmp_path):
    """Flushes of one RunDir append to one event file; a reopened run directory (a resume) writes a new file
    and leaves the earlier one byte for byte as it was; every logged point is read back."""
    rd = RunDir("t", tmp_path / "r")
    for step in range(1, 41):
        rd.log_scalars(step, {"x": float(step), "nan": float("nan")})
        if step % 10 == 0:
            rd.flush()
    rd.close()
    (first,) = event_files(tmp_path / "r" / "tb")
    before = first.read_bytes()
    again = RunDir.reopen(tmp_path / "r")
    for step in range(41, 46):
        again.log_scalars(step, {"x": float(step), "nan": float("nan")})
    again.close()
    files = event_files(tmp_path / "r" / "tb")
    assert len(files) == 2 and files[0] == first and first.read_bytes() == before
    assert _scalars(tmp_path / "r" / "tb") == [("metrics/x", s, float(s)) for s in range(1, 46)]
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 45 and rows[-1] == "45,45,nan"


def test_compilation_cache_directory(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    try:
        d = enable_compilation_cache(tmp_path / "jax")
        assert d.is_dir() and jax.config.jax_compilation_cache_dir == str(d)
    finally:  # leave the rest of the suite without a persistent cache (see RunConfig.compile_cache)
        jax.config.update("jax_compilation_cache_dir", before)
