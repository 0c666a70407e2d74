"""What a run tells its user and what it leaves behind: the progress display, the log files, W&B (one run per
run dir, resumed, tagged), the sample pictures, custom `_target_` nets from the user's folder, and
`otlab export` (a generator that loads with torch alone).

Training runs are in-process (`otgan_lab.cli.main`, Hydra included) except where a real process is the
point: a custom net found without PYTHONPATH, a TorchScript file loaded where otgan_lab is not imported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from otgan_lab import progress
from otgan_lab.loggers import default_tags, protocol_config, training_rates
from otgan_lab.progress import ProgressReporter, format_duration, format_losses
from tests.helpers import otlab

TINY = ("trainer.log_every=2", "eval.n_samples=100", "metrics.points2d.w2_points=100",
        "dataset.n_points=1000", "trainer.progress=false", "batch_size=32")
WGAN_GP = {"critic_loss": -1.819, "gradient_penalty": 0.01445, "generator_loss": -0.4809,
           "wasserstein_estimate": 1.819}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """cwd in tmp_path; sys.path, PYTHONPATH and the root logger's handlers restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield tmp_path
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


# -- the console -----------------------------------------------------------------------------------------


def test_every_loss_is_in_the_bar_abbreviated():
    assert format_losses(WGAN_GP) == "D=-1.82 GP=0.0144 G=-0.481 W=1.82"  # wgan_gp's G is no longer hidden
    assert format_losses({"psi1_arg_max": 3.0, "mmd": 0.5, "foo_loss": 1.0}) == "pam=3 MMD=0.5 foo=1"
    # two keys that would share a label keep their full names
    assert format_losses({"alpha_beta_gamma": 1.0, "abg": 2.0}) == "alpha_beta_gamma=1 abg=2"
    assert format_duration(3725.2) == "1:02:05" and format_duration(float("nan")) == "-:--:--"


def test_plain_lines_have_a_measured_eta_phases_and_unwrapped_paths(monkeypatch, capsys):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    bar = ProgressReporter(1000, start=100, enabled=False)
    clock[0] += 90.0  # 10 steps in 90 s: a slow run
    with bar:
        bar.update(110, WGAN_GP)
        with bar.phase("evaluating", 110):
            clock[0] += 30.0
        clock[0] += 9.0
        bar.update(120, WGAN_GP)
        long_path = "/tmp/" + "a_long_directory_name/" * 8 + "run"
        bar.message(f"run dir: {long_path}")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[train] step 110/1000  0.1 it/s  eta 2:13:30  D=-1.82 GP=0.0144 G=-0.481 W=1.82"
    assert lines[1:3] == ["[train] step 110: evaluating...", "[train] step 110: evaluating took 30.0 s"]
    assert "eta 1:34:36" in lines[3]  # 20 steps in 129 s (evaluation included), 880 steps left
    assert bar.steps_per_sec == pytest.approx(10 / 9.0)  # the log interval's rate, evaluation left out
    assert lines[4] == f"run dir: {long_path}" and len(lines) == 5  # one line, however long


def test_a_forced_bar_outside_a_terminal_does_not_wrap_messages(capsys):
    long_path = "/tmp/" + "a_long_directory_name/" * 8 + "run"
    with ProgressReporter(10, enabled=True) as bar:
        bar.message(f"run dir: {long_path}")
        with bar.phase("evaluating", 0):
            pass
    out = capsys.readouterr().out
    assert f"run dir: {long_path}\n" in out and "evaluating" not in out  # the phase is the bar's description


def test_the_console_lines_reach_the_job_log_file(in_tmp):
    handler = logging.FileHandler(in_tmp / "train.log")
    logging.getLogger().addHandler(handler)  # as Hydra's job logging does
    with contextlib.redirect_stdout(io.StringIO()):
        with ProgressReporter(10, enabled=False) as bar:
            bar.update(5, WGAN_GP)
            bar.message("resumed from step 3 (somewhere)")
    handler.flush()
    text = (in_tmp / "train.log").read_text()
    assert "[train] step 5/10" in text and "G=-0.481" in text and "resumed from step 3" in text


# -- what is logged --------------------------------------------------------------------------------------


def test_learning_rates_speed_tags_and_the_fid_backbone():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizers = {"generator": torch.optim.Adam(params[:1], lr=2e-4),
                  "critic": torch.optim.SGD([{"params": params[1:], "lr": 0.1}, {"params": [], "lr": 0.01}])}
    assert training_rates(optimizers, 12.5) == {"lr/generator": 2e-4, "lr/critic/0": 0.1, "lr/critic/1": 0.01,
                                                "speed/steps_per_sec": 12.5}
    config = {"method": {"name": "wgan_gp"}, "dataset": {"name": "mnist"}, "model": {"name": "mlp"},
              "sampler": {"_target_": "otgan_lab.samplers.drs.DRS", "name": "drs"}, "report_row": "r4_gan"}
    assert default_tags(config) == ["method:wgan_gp", "dataset:mnist", "model:mlp", "sampler:drs",
                                    "report_row:r4_gan"]
    protocol = {"n_samples": 10000, "suites": {"fid": {"backbone": "lenet_mnist", "n_reference": "all"}}}
    info = protocol_config(protocol)
    assert info["fid_backbone"] == "lenet_mnist" and info["eval_protocol"] == protocol


def test_wandb_continues_the_run_of_its_run_dir_with_tags_and_the_protocol(tmp_path):
    from otgan_lab.loggers import RUN_ID_FILE, WandbLogger

    config = {"method": {"name": "wgan_gp"}, "dataset": {"name": "ring8"}, "model": {"name": "mlp2d"},
              "sampler": {"name": "standard"}, "trainer": {"steps": 4}}
    seen = []
    for steps in (4, 6):  # a run, then the same run dir resumed with a larger budget
        config["trainer"]["steps"] = steps
        logger = WandbLogger(tmp_path, config, project="p", mode="offline", group=None, name="run",
                             tags=["mine"])
        assert logger.run is not None
        logger.describe(protocol_config({"n_samples": 100, "suites": {"fid": {"backbone": "lenet_mnist"}}}))
        logger.log_scalars(steps, {"critic_loss": 1.0, "lr/critic": 1e-3})
        seen.append((logger.run.id, set(logger.run.tags), dict(logger.run.config)))
        logger.finish("completed", {})
    (first_id, _, _), (second_id, tags, config_seen) = seen
    assert first_id == second_id == (tmp_path / RUN_ID_FILE).read_text().strip()
    offline = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert [p.name.rsplit("-", 1)[1] for p in offline] == [first_id] * 2
    assert tags == {"method:wgan_gp", "dataset:ring8", "model:mlp2d", "sampler:standard", "mine"}
    assert config_seen["trainer"]["steps"] == 6 and config_seen["fid_backbone"] == "lenet_mnist"


# -- pictures --------------------------------------------------------------------------------------------


def test_pictures_say_what_they_show_and_the_legend_covers_no_data():
    from otgan_lab.data.mixtures import grid25
    from otgan_lab.viz import captioned, image_grid, run_title, scatter_figure

    data = grid25(n_points=500)
    title = run_title("gan", "grid25", 1500, "standard")
    assert title == "gan on grid25, step 1500, sampler standard"
    fig = scatter_figure(torch.randn(200, 2), data.all(0, 200), data.meta["centres"], title, data.meta["std"])
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert not legend.overlaps(axes_box)  # below the axes: grid25's corner modes stay visible
    assert ax.get_title() == title
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["real", "generated", "modes (3σ)"]
    grid = image_grid(torch.rand(16, 1, 28, 28) * 2 - 1)
    picture = captioned(grid, "wgan_gp on mnist, step 1500, sampler standard (16 of 10000 samples)")
    assert picture.shape[1] >= 480 and picture.shape[0] > picture.shape[1]  # a caption row above the grid
    assert (picture[:30] < 128).any() and (picture[:30] > 128).any()  # dark text on white


# -- custom nets and export ------------------------------------------------------------------------------

MY_NETS = '''
import torch
from torch import nn


class MyGen(nn.Module):
    """A user's own generator: z -> 2-D points."""

    def __init__(self, z_dim: int, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(z_dim, width), nn.ReLU(), nn.Linear(width, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
'''

MY_MODEL = """
name: mine
z_dim: 3
nets:
  generator:
    _target_: my_nets.MyGen
    z_dim: ${model.z_dim}
  critic:
    _target_: otgan_lab.nets.mlp.MLPCritic
    in_shape: ${dataset.shape}
    hidden: [16]
    act: relu
    out_dim: 1
"""


def test_custom_nets_resume_logs_and_export_that_loads_without_otgan_lab(in_tmp):
    """`_target_: my_nets.MyGen` from the folder otlab runs in (no PYTHONPATH), a resume that says so, the
    console kept in train.log, learning rates and speed in metrics.jsonl; then the export, loaded in a
    process that imports neither otgan_lab nor my_nets, gives the method's own generate(z)."""
    (in_tmp / "my_nets.py").write_text(MY_NETS)
    (in_tmp / "extra" / "model").mkdir(parents=True)
    (in_tmp / "extra" / "model" / "mine.yaml").write_text(MY_MODEL)
    assert importlib.util.find_spec("my_nets") is None  # not importable before otlab adds the folder
    run = in_tmp / "run"
    common = ("--config-dir", "extra", "model=mine", "method=gan", "trainer.ema.enabled=true", "logger=none",
              *TINY, f"hydra.run.dir={run}")
    try:
        code, out, err = otlab("train", *common, "trainer.steps=4")
        assert code == 0, err
        code, out, err = otlab("train", *common, "trainer.steps=6")
        assert code == 0, err
        assert f"resumed from step 4 ({run / 'checkpoints' / 'step_00000004.pt'})" in err
        result = json.loads((run / "result.json").read_text())
        assert result["status"] == "completed" and result["model"] == "mine" and result["steps"] == 6
        log = (run / "train.log").read_text()  # Hydra's job log holds what the console showed
        assert "[train] step 4/4" in log and "resumed from step 4" in log and "[train] step 6/6" in log
        assert "final evaluation took" in log and "[completed] gan on ring8 (mine)" in log
        lines = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        logged = [x for x in lines if "critic_loss" in x]
        assert [x["step"] for x in logged] == [2, 4, 6]
        assert all(x["lr/generator"] == x["lr/critic"] == 2e-4 for x in logged)
        assert all(x["speed/steps_per_sec"] > 0 for x in logged)

        from otgan_lab import export

        info = export.export_run(run, in_tmp / "exported")
        assert info["ema"] is True and info["z_dim"] == 3 and info["prior"] == "normal"
        method, _, _, _ = export._load_generator(run, None, torch.device("cpu"))
    finally:
        sys.modules.pop("my_nets", None)
    torch.manual_seed(1)
    z = torch.randn(5, 3)
    with torch.no_grad():
        expected = method.generate(z)
    torch.save(z, in_tmp / "z.pt")
    # a fresh, isolated process (-I: no cwd, no PYTHONPATH): the TorchScript file alone
    loader = textwrap.dedent(f"""
        import sys, torch
        gen = torch.jit.load({str(info['torchscript'])!r})
        torch.save(gen(torch.load({str(in_tmp / 'z.pt')!r})), {str(in_tmp / 'x.pt')!r})
        torch.manual_seed(0)
        x = gen.sample(7)
        assert x.shape == (7, 2) and gen.prior_kind == "normal" and gen.z_dim == 3, (x.shape, gen.prior_kind)
        assert "otgan_lab" not in sys.modules and "my_nets" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-I", "-W", "ignore", "-c", loader], cwd="/", text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert torch.allclose(torch.load(in_tmp / "x.pt"), expected, atol=1e-6)
    load_line = export.usage(info).splitlines()[1]
    assert load_line.startswith(f"gen = torch.jit.load({str(info['torchscript'])!r})")

    saved = torch.load(info["state_dict"], weights_only=True)  # the state dict with its config
    assert saved["generator"]["_target_"] == "my_nets.MyGen" and saved["ema"] and saved["prior"]["dim"] == 3
    assert torch.equal(saved["state_dict"]["body.0.weight"], method.generator_module.body[0].weight)


def test_export_of_a_dir_without_a_run_is_one_message(in_tmp):
    code, _, err = otlab("export", f"run={in_tmp}")
    assert code == 2 and "not a run directory" in err


# -- sweeps (the [sweeps] extra; CI installs it and runs these) ------------------------------------------


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(not (_has_module("hydra_plugins.hydra_optuna_sweeper")
                         and _has_module("hydra_plugins.hydra_joblib_launcher")),
                    reason="hydra-optuna-sweeper or hydra-joblib-launcher missing (pip install -e .[sweeps])")
def test_optuna_sweeper_trials_through_the_joblib_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "otgan_lab.cli", "train", "experiment=tune_wgan_gp",
                           "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib",
                           "hydra.launcher.n_jobs=2", "trainer.steps=3", "logger=none", *TINY,
                           f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}"],
                          cwd=tmp_path, env=env, text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = [json.loads(p.read_text())["status"] for p in sorted(sweep.glob("*/result.json"))]
    assert statuses == ["completed", "completed"]
    assert "best_value" in (sweep / "optimization_results.yaml").read_text()
    assert all((sweep / str(i) / "train.log").stat().st_size > 0 for i in range(2))  # each job's own log
