"""Two processes under jax.distributed run the same sweep as one process with two devices."""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rounding

import jaxtune as jt

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 1)
    import jaxtune as jt
    process_id = int(sys.argv[2])
    jt.distributed.initialize(f"localhost:{sys.argv[1]}", num_processes=2,
                              process_id=process_id, heartbeat_timeout_seconds=10)
    sys.path.insert(0, sys.argv[4])
    from test_distributed import Patience, run_sweep

    class DieAt(jt.MedianStopping):
        def decide(self, search, report):
            if process_id == 1 and int(search.step.max()) == int(sys.argv[5]):
                os.kill(os.getpid(), signal.SIGKILL)
            return super().decide(search, report)

    # Process 1 runs other code ("scaled": its loss x3), another budget ("steps") or a
    # strategy built with another argument ("patience").
    other = process_id == 1
    strategy = (DieAt(min_steps=4, min_trials=2) if sys.argv[6] == "median" else
                Patience(5 if other else 3) if sys.argv[6] == "patience" else None)
    result = run_sweep(jax.devices(), strategy, checkpoint_dir=sys.argv[7] or None,
                       stream=sys.argv[6] == "stream",
                       loss_scale=3.0 if other and sys.argv[6] == "scaled" else 1.0,
                       steps=32 if other and sys.argv[6] == "steps" else 16)
    result.save(os.path.join(sys.argv[3], f"result-{process_id}.npz"))
""")


def run_sweep(devices, strategy=None, checkpoint_dir=None, stream=False, loss_scale=1.0,
              steps=16):
    """A small sweep; with `stream`, its batches come from a generator (the same in every
    process), placed on the devices of both processes chunk by chunk."""
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ rng.normal(size=(3, 1))).astype(np.float32)

    def init_fn(key):
        return {"w": 0.3 * jax.random.normal(key, (3, 1)), "b": jnp.zeros(1)}

    def loss(params, batch):
        return loss_scale * jnp.mean((batch[0] @ params["w"] + params["b"] - batch[1]) ** 2)

    order = rng.integers(0, 64, size=(16, 8))
    data = ((x[rows], y[rows]) for rows in order) if stream else (x, y)
    return jt.sweep(loss, init_fn, lambda learning_rate: optax.adam(learning_rate),
                    jt.Space(learning_rate=jt.loguniform(1e-3, 0.3)), data=data,
                    eval_data=(x, y), batch_size=8, steps=steps, eval_every=4, trials=4, seeds=2,
                    devices=devices, progress=False, strategy=strategy,
                    checkpoint_dir=checkpoint_dir)


class Patience(jt.Strategy):
    """A user's strategy, shown as `Patience()` whatever it was built with: told apart by
    its declared identity, `config()`."""

    def __init__(self, patience):
        self.patience = patience


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def launch(tmp_path):
    """Starts the two worker processes of a sweep; any still running at teardown is killed."""
    launched = []

    def start(kind, die_at=-1, checkpoint=""):
        script = tmp_path / "worker.py"
        script.write_text(SCRIPT)
        port = free_port()
        # No device count of their own (they set one each); they compile as this process does.
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
        env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}
        here = os.path.dirname(os.path.abspath(__file__))
        processes = [subprocess.Popen([sys.executable, str(script), str(port), str(i),
                                       str(tmp_path), here, str(die_at), kind, checkpoint],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
                     for i in range(2)]
        launched.extend(processes)
        return processes

    yield start
    for process in launched:  # a failed assertion must not leave workers behind
        if process.poll() is None:
            process.kill()
            process.communicate()


def assert_same(a, b):
    for field in ("trial", "seed", "status", "steps_trained"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_allclose(a.train_loss, b.train_loss, **rounding(16))
    for name in a.metrics:
        np.testing.assert_allclose(a.metrics[name], b.metrics[name], **rounding(16))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["plain", "median", "stream"])
def test_two_processes_equal_one_process_with_two_devices(tmp_path, launch, kind):
    processes = launch(kind)
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    strategy = jt.MedianStopping(min_steps=4, min_trials=2) if kind == "median" else None
    expected = run_sweep(jax.devices()[:2], strategy, stream=kind == "stream")
    for i in range(2):
        assert_same(jt.SweepResult.load(tmp_path / f"result-{i}.npz"), expected)


@pytest.mark.slow
def test_a_killed_process_fails_the_other_and_the_checkpoint_resumes(tmp_path, launch):
    checkpoint = str(tmp_path / "ckpt")
    processes = launch("median", die_at=8, checkpoint=checkpoint)
    start = time.monotonic()
    outputs = [process.communicate(timeout=300) for process in processes]
    codes = [process.returncode for process in processes]
    assert codes[1] == -signal.SIGKILL, outputs[1][1][-3000:]
    assert codes[0] != 0, "the surviving process must fail, not hang or succeed"
    assert outputs[0][1], "the surviving process must say why it failed"
    assert time.monotonic() - start < 300
    processes = launch("median", checkpoint=checkpoint)
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    expected = run_sweep(jax.devices()[:2], jt.MedianStopping(min_steps=4, min_trials=2))
    assert_same(jt.SweepResult.load(tmp_path / "result-0.npz"), expected)


@pytest.mark.slow
@pytest.mark.parametrize("kind, differs", [
    ("scaled", r"`loss_fn` \(process 0: test_distributed\.run_sweep\.<locals>\.loss, digest "
               r"(\w+); process 1: test_distributed\.run_sweep\.<locals>\.loss, digest (?!\1)"),
    ("steps", r"`steps` \(process 0: 16; process 1: 32\)"),
    ("patience", r"`strategy` \(process 0: '\{\"class\": \"test_distributed\.Patience\", "
                 r"\"config\": \{\"patience\": 3\}\}'; process 1: '.*\"patience\": 5\}\}'\)"),
])
def test_processes_making_different_sweeps_are_refused_naming_the_difference(launch, kind,
                                                                            differs):
    for process in launch(kind):
        _, err = process.communicate(timeout=300)
        assert process.returncode != 0, "a mixed result must not pass"
        assert re.search(r"`jt.sweep` is not the same on every process: " + differs, err), \
            err[-3000:]


def helper(params, batch):
    # A set constant: its iteration order differs between processes (PYTHONHASHSEED).
    power = 2 if "squared" in {"squared", "absolute", "huber"} else 1
    return jnp.mean((batch[0] @ params - batch[1]) ** power)


def scaled_loss(scale):
    def loss(params, batch):
        return scale * helper(params, batch)
    return loss


@pytest.mark.slow
def test_fingerprint_follows_closures_and_helpers_not_the_process(monkeypatch):
    fingerprint = jt.distributed.fingerprint
    one = fingerprint(scaled_loss(1.0))
    assert fingerprint(scaled_loss(1.0)) == one != fingerprint(scaled_loss(3.0))
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys; sys.path.insert(0, {here!r}); import jaxtune as jt, "
            "test_distributed as t; print(jt.distributed.fingerprint(t.scaled_loss(1.0)))")
    for seed in ("1", "2"):
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env={**os.environ, "PYTHONHASHSEED": seed}, check=True, timeout=120)
        assert other.stdout.strip() == one
    monkeypatch.setattr(sys.modules[__name__], "helper", lambda params, batch: 0.0)
    assert fingerprint(scaled_loss(1.0)) != one  # a helper it calls changed
