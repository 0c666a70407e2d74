"""`otlab` end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = ["trainer.steps=30", "trainer.log_every=10", "trainer.checkpoint_every=10", "eval.n_samples=500",
        "metrics.points2d.w2_points=300", "dataset.n_points=5000", "batch_size=64"]


def otlab(*args, cwd, env_extra=None, timeout=240, check=True):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
           **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "otgan_lab.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"otlab {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def test_train_end_to_end_writes_a_complete_run_dir_and_resumes(tmp_path):
    run = tmp_path / "run"
    proc = otlab("train", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed", result
    assert {"method", "dataset", "model", "sampler", "seed", "metrics", "protocol", "wall_time",
            "steps_per_sec"} <= result.keys()
    assert result["method"] == "wgan_gp" and result["dataset"] == "ring8" and result["steps"] == 30
    assert 0 <= result["metrics"]["modes_covered"] <= 8 and result["metrics"]["w2"] > 0
    assert "modes_covered" in proc.stdout  # the closing summary
    assert (run / ".hydra" / "config.yaml").exists()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "critic_loss" in x] == [10, 20, 30]
    assert list((run / "samples").glob("*.png")) and list((run / "checkpoints").glob("step_*.pt"))
    assert list((run / "wandb").glob("offline-run-*")), "no W&B offline run"

    # rerunning in the same dir with a larger budget continues from the last checkpoint, and its W&B run
    proc = otlab("train", *[a for a in TINY if not a.startswith("trainer.steps")], "trainer.steps=40",
                 f"hydra.run.dir={run}", cwd=tmp_path)
    resumed = json.loads((run / "result.json").read_text())
    assert resumed["status"] == "completed" and resumed["steps"] == 40
    assert resumed["resumed_from"].endswith("step_00000030.pt")
    assert f"resumed from step 30 ({resumed['resumed_from']})" in proc.stderr
    offline = list((run / "wandb").glob("offline-run-*"))
    run_id = (run / "wandb_run_id").read_text().strip()
    assert len(offline) == 2 and {p.name.rsplit("-", 1)[1] for p in offline} == {run_id}  # one W&B run
    assert all((p / "files" / "output.log").stat().st_size > 0 for p in offline)  # W&B kept the console
    log = (run / "train.log").read_text()  # so does Hydra's job log
    assert "[train] step 30/30" in log and "resumed from step 30" in log and "[train] step 40/40" in log


def test_help_and_cfg_job(tmp_path):
    help_text = otlab("train", "--help", cwd=tmp_path).stdout
    assert "otlab train" in help_text and "== Configuration groups ==" in help_text
    assert "wgan_gp" in help_text and "ring8" in help_text
    out = otlab("train", "--cfg", "job", "method=gan", "dataset=mnist", cwd=tmp_path).stdout
    assert "methods.gan.GAN" in out and "name: mnist" in out and "name: mlp" in out
    assert "commands:" in otlab("--help", cwd=tmp_path).stdout


def test_bad_input_gives_clear_errors_before_training(tmp_path):
    proc = otlab("train", "method=nope", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "wgan_gp" in proc.stderr  # Hydra lists the available options
    proc = otlab("train", "method.optim.critic.lr=-0.1", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path,
                 check=False)
    assert proc.returncode == 2 and "positive learning rate" in proc.stderr
    assert not (tmp_path / "bad").exists()  # refused before training: nothing written
    proc = otlab("train", "dataset=mnist", "dataset.download=false", f"dataset.root={tmp_path / 'nodata'}",
                 f"hydra.run.dir={tmp_path / 'nodata_run'}", "logger=none", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "train-images-idx3-ubyte" in proc.stderr
    assert not list((tmp_path / "nodata_run").glob("checkpoints/*"))


def test_ctrl_c_saves_a_checkpoint_and_records_interrupted(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otgan_lab.cli", "train", "trainer.steps=100000", "trainer.log_every=5",
         "logger=none", f"hydra.run.dir={run}", "dataset.n_points=5000"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "interrupted", out
    assert list((run / "checkpoints").glob("step_*.pt"))


def test_multirun_gives_one_dir_per_job(tmp_path):
    otlab("train", "-m", "method=gan,wgan_clip", "trainer.steps=3", "trainer.log_every=1",
          "eval.n_samples=200", "metrics.points2d.w2_points=100", "dataset.n_points=1000", "logger=none",
          f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    results = sorted((tmp_path / "sweep").glob("*/result.json"))
    assert [json.loads(p.read_text())["method"] for p in results] == ["gan", "wgan_clip"]


def test_non_editable_install_finds_its_configs(tmp_path):
    """A wheel carries conf/ inside the package; otlab works from any directory without the source tree."""
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(wheel_dir.glob("otgan_lab-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import otgan_lab.paths as p; print(p.conf_dir())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True, capture_output=True,
                         check=True).stdout.strip()
    assert out == str(site / "otgan_lab" / "conf")
    job = subprocess.run([sys.executable, "-m", "otgan_lab.cli", "train", "--cfg", "job", "method=gan"],
                         cwd=tmp_path, env=env, text=True, capture_output=True)
    assert job.returncode == 0 and "GAN" in job.stdout, job.stderr


@pytest.mark.skipif(not os.environ.get("OTLAB_DATA"), reason="OTLAB_DATA not set")
def test_mnist_run_from_otlab_data(tmp_path):
    run = tmp_path / "mnist"
    otlab("train", "dataset=mnist", "method=gan", "trainer.steps=5", "trainer.log_every=5",
          "eval.n_samples=64", "logger=none", f"hydra.run.dir={run}", cwd=tmp_path)
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["dataset"] == "mnist"
    assert list((run / "samples").glob("*.png"))


def test_eval_a_run_with_another_sampler_keeps_one_record_per_sampler(tmp_path):
    run = tmp_path / "run"
    otlab("train", "method=gan", *TINY, f"hydra.run.dir={run}", "logger=none",
          "eval.samplers=[{option:drs,name:drs_small,burn_in:500}]", cwd=tmp_path)
    assert (json.loads((run / "result.json").read_text())
            ["samplers"]["drs_small"]["metrics"]["sampler/acceptance_rate"] > 0)
    otlab("eval", f"run={run}", "sampler=drs", "sampler.burn_in=1000", "eval.n_samples=300", cwd=tmp_path)
    result = json.loads((run / "result.json").read_text())
    assert set(result["samplers"]) == {"standard", "drs_small", "drs"}
    drs = result["samplers"]["drs"]
    assert drs["protocol"]["n_samples"] == 300 and 0 < drs["metrics"]["sampler/acceptance_rate"] <= 1
    assert [e["sampler"] for e in result["evaluations"]] == ["drs"]
    proc = otlab("sample", f"run={run}", "n=16", "sampler=drs", "sampler.burn_in=500",
                 f"out={tmp_path / 'g.png'}", cwd=tmp_path)
    assert "acceptance_rate" in proc.stdout and (tmp_path / "g.png").stat().st_size > 0
    drawn = torch.load(tmp_path / "g.pt", weights_only=True)
    assert drawn.shape == (16, 2) and torch.isfinite(drawn).all()
    again = otlab("sample", f"run={run}", "n=16", "sampler=drs", "sampler.burn_in=500",
                  f"out={tmp_path / 'h.png'}", cwd=tmp_path)
    # seeded
    assert again.returncode == 0 and torch.equal(drawn, torch.load(tmp_path / "h.pt", weights_only=True))
    assert otlab("sample", f"run={run}", "n=0", cwd=tmp_path, check=False).returncode == 2
    proc = otlab("eval", f"run={run}", "eval.use_ema=true", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no EMA weights" in proc.stderr
    proc = otlab("eval", f"run={tmp_path}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


def test_wandb_failure_warns_and_the_run_goes_on(tmp_path):
    from otgan_lab.loggers import WandbLogger

    with pytest.warns(UserWarning, match="W&B logging disabled"):
        logger = WandbLogger(tmp_path, {}, project="p", mode="not-a-mode", group=None, name="x")
    logger.log_scalars(1, {"a": 1.0})  # no-ops, no exceptions
    logger.finish("completed", {})


def test_shell_completion_for_otlab_train(tmp_path, monkeypatch, capsys):
    """`eval "$(otlab train -sc install=bash)"` registers completion for `otlab` (not for `train`); Tab runs
    `otlab -sc query=bash`, which completes command names, then each command's groups and keys."""
    import shutil

    from otgan_lab import cli

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    cli.main(["train", "-sc", "install=bash"])
    script = capsys.readouterr().out
    assert script.rstrip().endswith("-F hydra_bash_completion otlab")

    def query(line: str) -> list[str]:
        monkeypatch.setenv("COMP_LINE", line)
        cli.main(["-sc", "query=bash"])
        return capsys.readouterr().out.split()

    assert query("otlab tr") == ["train"] and "export" in query("otlab ")
    assert query("otlab train dataset=gr") == ["dataset=grid25"]
    assert {"sampler=drs", "sampler=dot_latent"} <= set(query("otlab eval sampler=d"))
    assert query("otlab table ") == []  # not a Hydra app: the shell falls back to file names

    bash, otlab_script = shutil.which("bash"), Path(sys.executable).with_name("otlab")
    if bash is None or not otlab_script.is_file():
        pytest.skip("needs bash and the installed otlab script")
    (tmp_path / "completion.sh").write_text(script)
    line = "otlab train method=wgan_g"
    shell = (f'source {tmp_path / "completion.sh"}; COMP_LINE="{line}"; COMP_WORDS=({line}); COMP_CWORD=2; '
             'COMP_POINT=${#COMP_LINE}; hydra_bash_completion; echo "${COMPREPLY[@]}"')
    env = {**os.environ, "PATH": f"{otlab_script.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([bash, "-c", shell], cwd=tmp_path, env=env, text=True, capture_output=True,
                          timeout=120)
    assert done.stdout.split() == ["method=wgan_gp"], done.stderr
