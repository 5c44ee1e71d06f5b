"""`jaxtune demo`: the main job, run as users run it."""

import os
import subprocess
import sys

import pytest

from jaxtune import cli


def run(*args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXTUNE_CACHE_DIR": str(cwd / "xla-cache")}
    return subprocess.run([sys.executable, "-m", "jaxtune", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.slow
def test_demo_runs_prints_table_and_writes_plot(tmp_path):
    out = run("demo", "--trials", "4", "--seeds", "2", "--steps", "30", "--no-progress",
              "--cpu-devices", "2", "--output", "plot.png", "--save", "result.npz", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "on 2 cpu device(s)" in out.stdout
    assert "learning_rate" in out.stdout and "accuracy_mean" in out.stdout
    assert "best: learning_rate=" in out.stdout and "total" in out.stdout
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "result.npz").exists()
    assert any((tmp_path / "xla-cache").iterdir()), "the compiled programs were not cached"


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--trials", "--seeds", "--steps", "--output", "--cpu-devices"):
        assert flag in text


def test_bad_flag_value_fails_cleanly(tmp_path):
    out = run("demo", "--steps", "0", cwd=tmp_path)
    assert out.returncode == 2 and "--steps must be positive" in out.stderr


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_bad_device_count_fails_before_jax_starts(capsys):
    assert cli.main(["demo", "--cpu-devices", "0"]) == 2
    assert "--cpu-devices must be positive" in capsys.readouterr().err
