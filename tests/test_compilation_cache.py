"""The persistent compilation cache `jt.sweep` turns on: on by default, off on request.

`jt.sweep` decides once per process, and this suite runs with JAXTUNE_COMPILATION_CACHE=0
(conftest.py), so each test runs its sweeps in fresh processes, with HOME pointed into
`tmp_path` so that nothing reaches the user's own cache.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import jaxtune as jt

# One small sweep, run SWEEPS times in a fresh process after SETUP; prints what JAX
# logged while the sweeps ran. JAX 0.10 logs "Finished XLA compilation of ..." around
# every program it compiles *or loads from the persistent cache*; a program loaded is also
# logged as "Persistent compilation cache hit for ...", so compiles = finished - hits.
SCRIPT = textwrap.dedent("""
    import json, logging, warnings
    import jax, jax.numpy as jnp, numpy as np, optax
    import jaxtune as jt
    SETUP
    x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    y = 2 * x
    w = jnp.zeros((1, 1))  # compiled before the sweep: not the sweep's to cache

    def loss(w, batch):
        return jnp.mean((batch[0] @ w - batch[1]) ** 2)

    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = logging.getLogger("jax")
    logger.addHandler(Collect(logging.DEBUG))
    logger.setLevel(logging.DEBUG)
    min_compile_time = jax.config.jax_persistent_cache_min_compile_time_secs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [jt.sweep(loss, w, lambda learning_rate: optax.sgd(learning_rate),
                            jt.Space(learning_rate=jt.loguniform(1e-3, 1.0)), data=(x, y),
                            batch_size=16, steps=20, trials=4, progress=False)
                   for _ in range(SWEEPS)]
    print(json.dumps(dict(
        finished=sum(m.startswith("Finished XLA compilation") for m in messages),
        hits=sum(m.startswith("Persistent compilation cache hit") for m in messages),
        cache_dir=jax.config.jax_compilation_cache_dir,
        min_compile_time=(min_compile_time,
                          jax.config.jax_persistent_cache_min_compile_time_secs),
        warnings=[f"{w.category.__name__}: {w.message}" for w in caught],
        train_loss=[r.train_loss.tolist() for r in results])))
""")


def run_sweeps(tmp_path, env, setup="", sweeps=1):
    """What `SCRIPT` prints, run with `env` over os.environ less the variables that choose
    the cache (JAXTUNE_COMPILATION_CACHE, JAXTUNE_CACHE_DIR, XDG_CACHE_HOME)."""
    base = {k: v for k, v in os.environ.items() if k not in (
        "JAXTUNE_COMPILATION_CACHE", "JAXTUNE_CACHE_DIR", "XDG_CACHE_HOME")}
    env = {**base, "HOME": str(tmp_path / "home"), "JAX_PLATFORMS": "cpu",
           **{k: str(v) for k, v in env.items()}}
    script = SCRIPT.replace("SETUP", setup).replace("SWEEPS", str(sweeps))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def entries(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The sweep in a first process with jaxtune's defaults, under XDG_CACHE_HOME."""
    tmp_path = tmp_path_factory.mktemp("first")
    return tmp_path, run_sweeps(tmp_path, {"XDG_CACHE_HOME": tmp_path / "xdg"})


@pytest.mark.slow
def test_a_second_process_compiles_nothing_and_gets_the_same_result(first_run, tmp_path):
    first_path, first = first_run
    directory = first_path / "xdg" / "jaxtune" / "xla"
    assert first["cache_dir"] == str(directory) and entries(directory)
    assert first["finished"] > 0 and first["hits"] == 0
    second = run_sweeps(tmp_path, {"JAXTUNE_CACHE_DIR": directory})
    assert second["cache_dir"] == str(directory)
    # Every program the second sweep needed came from disk: it compiled none.
    assert second["finished"] == second["hits"] == first["finished"]
    assert second["train_loss"] == first["train_loss"]


@pytest.mark.slow
def test_opting_out_writes_nothing(first_run, tmp_path):
    first_path, first = first_run
    assert entries(first_path / "xdg" / "jaxtune" / "xla")  # the default writes there
    off = run_sweeps(tmp_path, {"JAXTUNE_COMPILATION_CACHE": "0",
                                "XDG_CACHE_HOME": tmp_path / "xdg",
                                "JAXTUNE_CACHE_DIR": tmp_path / "xla"})
    assert off["cache_dir"] is None and off["hits"] == 0
    assert not os.path.exists(tmp_path / "xla") and not os.path.exists(tmp_path / "xdg")
    assert not os.path.exists(tmp_path / "home")
    assert off["train_loss"] == first["train_loss"]


@pytest.mark.slow
def test_a_cache_dir_the_user_set_for_jax_is_left_as_it_is(first_run, tmp_path):
    _, first = first_run
    assert first["min_compile_time"][1] == 0.0  # the default caches every program
    user_dir = tmp_path / "users-own"
    mine = run_sweeps(tmp_path, {"JAXTUNE_CACHE_DIR": tmp_path / "xla"},
                      setup=f"jax.config.update('jax_compilation_cache_dir', {str(user_dir)!r})")
    assert mine["cache_dir"] == str(user_dir)
    before, after = mine["min_compile_time"]
    assert after == before != 0.0  # JAX's own threshold, untouched
    assert not os.path.exists(tmp_path / "xla")


@pytest.mark.slow
def test_an_unwritable_cache_dir_warns_once_and_the_sweeps_run(tmp_path):
    (tmp_path / "a-file").write_text("")
    directory = tmp_path / "a-file" / "xla"  # cannot be created, even by root
    out = run_sweeps(tmp_path, {"JAXTUNE_CACHE_DIR": directory}, sweeps=2)
    assert len(out["warnings"]) == 1, out["warnings"]
    assert out["warnings"][0].startswith(
        "RuntimeWarning: jaxtune could not turn on the compilation cache")
    assert str(directory) in out["warnings"][0] and "JAXTUNE_CACHE_DIR" in out["warnings"][0]
    assert out["cache_dir"] is None
    assert len(out["train_loss"]) == 2 and out["train_loss"][0] == out["train_loss"][1]


@pytest.mark.slow
def test_demo_with_no_compilation_cache_writes_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAXTUNE_COMPILATION_CACHE"}
    env.update(JAX_PLATFORMS="cpu", HOME=str(tmp_path / "home"),
               JAXTUNE_CACHE_DIR=str(tmp_path / "xla"))
    out = subprocess.run(
        [sys.executable, "-m", "jaxtune", "demo", "--trials", "2", "--seeds", "1", "--steps",
         "10", "--no-progress", "--cpu-devices", "1", "--no-compilation-cache", "--output",
         str(tmp_path / "plot.png")], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not os.path.exists(tmp_path / "xla")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes to a read-only directory")
def test_enable_compilation_cache_refuses_a_directory_it_cannot_write_to(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="cannot be written to; pass a writable"):
            jt.enable_compilation_cache(tmp_path)
    finally:
        tmp_path.chmod(0o700)
