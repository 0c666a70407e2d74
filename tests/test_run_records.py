"""Records you can stake a paper on: bad input refused with one message before any work, one experiment per
run dir, records never downgraded, weights saved before evaluation, one process per dir, resume past a
broken checkpoint, sweeps that report their failed jobs.

The CLI is called in-process (`otgan_lab.cli.main`, Hydra included) so that each case costs a fraction of a
second; a few cases that need a real process (a pipe closed early, a kill -9, a sweep) use a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from otgan_lab.rundir import ATTEMPTS_FILE, LOCK_FILE, RunDir, read_attempts
from tests.helpers import otlab

TINY = ("method=gan", "trainer.steps=20", "eval.n_samples=100", "metrics.points2d.w2_points=100",
        "dataset.n_points=1000", "logger=none", "trainer.progress=false", "trainer.log_every=5")


def snapshot(run_dir: Path, skip: tuple[str, ...] = (ATTEMPTS_FILE, LOCK_FILE)) -> dict[str, str]:
    """sha256 of every file under run_dir (the attempt log and the lock holder's pid apart)."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name not in skip}


def write_idx(path: Path, array: torch.Tensor) -> None:
    """A uint8 idx file (torchvision's raw MNIST format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())


def fake_mnist(root: Path, n: int = 64) -> Path:
    gen = torch.Generator().manual_seed(0)
    for prefix in ("train", "t10k"):
        write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28),
                                                                                      generator=gen))
        write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", torch.arange(n) % 10)
    return root


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OTLAB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("OTLAB_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no Inception weights in the hub dir
    return tmp_path


# ---------------------------------------------------------------------------------------------------------
# Bad input: one clear message, exit 2, no traceback, nothing written

MNIST_TINY = ("dataset=mnist", "dataset.download=false", "trainer.steps=2", "batch_size=16", "logger=none")

BAD_INPUTS = [  # (arguments, words the message must contain)
    (("trainer.steps=abc",), "trainer.steps must be an integer"),
    (("trainer.steps=10.5",), "trainer.steps must be an integer"),
    (("trainer.steps=0",), "trainer.steps must be >= 1"),
    (("seed=abc",), "seed must be an integer"),
    (("batch_size=0",), "batch_size must be >= 1"),
    (("device=tpu",), "device=tpu is not a device"),
    (("eval.every=-1",), "eval.every must be >= 0"),
    (("trainer.checkpoint_every=-5",), "trainer.checkpoint_every must be >= 0"),
    (("trainer.grad_clip=-1",), "trainer.grad_clip must be null or a positive number"),
    (("model=dcgan",), "conv nets take images shaped (C, H, W)"),
    (("method=wgan_gp", "sampler=drs"), "needs a logit critic"),
    (("method=wgan_gp", "eval.samplers=[drs]"), "set calibrate_steps > 0"),
    (("method=wgan_gp", "sampler=aeot"), "needs a method with a latent OT map"),
    (("method=gan", "sampler=reconstruction"), "reconstructs its input"),
    (("method.optim.critic.lr=-0.1",), "positive learning rate"),
    ((*MNIST_TINY, "metrics.fid.backbone=inception"), "pt_inception-2015-12-05-6726825d.pth"),
    ((*MNIST_TINY, "eval.n_samples=3"), "prdc_k=5 needs more than 5 samples"),
    (("dataset=mnist", "dataset.download=false", "dataset.root={tmp}/nodata"), "train-images-idx3-ubyte"),
]


@pytest.mark.parametrize("args,words", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_message_before_any_work(in_tmp, args, words):
    os.environ["OTLAB_DATA"] = str(fake_mnist(in_tmp / "data"))  # restored by the fixture's monkeypatch
    run_dir = in_tmp / "run"
    args = [a.format(tmp=in_tmp) for a in args]
    code, out, err = otlab("train", *args, f"hydra.run.dir={run_dir}")
    assert code == 2, (out, err)
    assert words in err, err
    assert "Traceback" not in err + out
    assert err.startswith("otlab train:")
    assert not run_dir.exists(), sorted(p.name for p in run_dir.rglob("*"))  # nothing written


@pytest.mark.parametrize("damage,words", [
    (lambda p: p.write_bytes(b""), "empty or truncated (0 bytes)"),
    (lambda p: p.write_bytes(p.read_bytes()[:-16]), "truncated or corrupt"),
    (lambda p: p.write_bytes(os.urandom(4096)), "not a uint8 idx file"),
], ids=["empty", "truncated", "random bytes"])
def test_damaged_mnist_file_is_named(in_tmp, damage, words):
    root = fake_mnist(in_tmp / "data")
    bad = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    damage(bad)
    code, out, err = otlab("train", *MNIST_TINY, f"dataset.root={root}", f"hydra.run.dir={in_tmp / 'run'}")
    assert code == 2 and str(bad) in err and words in err, err
    assert "Traceback" not in err


def test_run_dir_that_is_a_file_or_unwritable(in_tmp):
    (in_tmp / "afile").write_text("")
    code, _, err = otlab("train", *TINY, f"hydra.run.dir={in_tmp / 'afile'}")
    assert code == 2 and "is a file, not a directory" in err and "Traceback" not in err
    if Path("/sys").is_dir():  # not writable even by root
        code, _, err = otlab("train", *TINY, "hydra.run.dir=/sys/otlab_test_run")
        assert code == 2 and "not writable" in err and "Traceback" not in err


def test_help_into_a_closed_pipe_is_quiet(tmp_path):
    proc = subprocess.run(f"{sys.executable} -m otgan_lab.cli train --help | head -1", shell=True,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("otlab train")
    assert "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_messages_keep_their_brackets(in_tmp):
    """User text is never read as rich markup: '[weird]' stays in the message."""
    # quoted: brackets are Hydra's list syntax
    code, out, err = otlab("eval", f"run='{in_tmp / '[weird]dir'}'")
    assert code == 2 and "[weird]dir is not a run directory" in err


# ---------------------------------------------------------------------------------------------------------
# One experiment per run dir


@pytest.fixture
def finished_run(in_tmp):
    run_dir = in_tmp / "run"
    code, out, err = otlab("train", *TINY, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    assert "[completed] gan on ring8" in out  # the status tag is printed, not eaten as markup
    return run_dir


@pytest.mark.parametrize("change,key", [
    ("method=wgan_gp", "method.name: gan -> wgan_gp"),
    ("seed=1", "seed: 0 -> 1"),
    ("dataset.radius=3.0", "dataset.radius: 2.0 -> 3.0"),
    ("precision=bf16", "precision: fp32 -> bf16"),
    ("sampler=mh", "sampler.name"),
])
def test_another_experiment_is_refused_and_nothing_changes(finished_run, change, key):
    before = snapshot(finished_run)
    attempts = len(read_attempts(finished_run))
    code, out, err = otlab("train", *TINY, change, f"hydra.run.dir={finished_run}")
    assert code == 2 and "holds another experiment" in err and key in err, err
    assert "new directory" in err  # says how to proceed
    assert snapshot(finished_run) == before  # result.json, checkpoints, metrics, .hydra: all as they were
    log = read_attempts(finished_run)
    assert len(log) == attempts + 1 and log[-1]["event"] == "refused" and key in log[-1]["error"]


def test_continuing_may_change_run_length_and_cadence(finished_run):
    code, out, err = otlab("train", *TINY, "trainer.steps=30", "trainer.log_every=3", "eval.every=10",
                           "trainer.checkpoint_every=7", f"hydra.run.dir={finished_run}")
    assert code == 0, err
    record = json.loads((finished_run / "result.json").read_text())
    assert record["status"] == "completed" and record["steps"] == 30
    assert record["resumed_from"].endswith("step_00000020.pt")
    events = [(e["event"], e.get("from_step")) for e in read_attempts(finished_run)]
    assert events == [("start", 0), ("end", None), ("start", 20), ("end", None)]


def test_a_failed_rerun_never_downgrades_a_completed_record(finished_run, monkeypatch):
    before = (finished_run / "result.json").read_text()
    code, _, err = otlab("train", *TINY, "batch_size=0", f"hydra.run.dir={finished_run}")
    assert code == 2 and (finished_run / "result.json").read_text() == before

    # a crash while continuing the run: the attempt is logged as failed, the completed record stays
    from otgan_lab.methods.gan import GAN

    def boom(self, real, ctx):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(GAN, "train_step", boom)
    code, _, err = otlab("train", *TINY, "trainer.steps=40", f"hydra.run.dir={finished_run}")
    assert code == 1 and "simulated crash" in err  # a bug, not bad input: Hydra shows the error, exit 1
    assert json.loads((finished_run / "result.json").read_text())["status"] == "completed"
    assert json.loads((finished_run / "result.json").read_text()) == json.loads(before)
    last = read_attempts(finished_run)[-1]
    assert last["status"] == "failed" and "simulated crash" in last["error"]
    assert last["result_json"] == "kept the earlier completed record"


# ---------------------------------------------------------------------------------------------------------
# Weights before evaluation; evaluation errors recorded against the evaluation


def test_final_checkpoint_is_written_before_a_failing_evaluation(in_tmp, monkeypatch):
    from otgan_lab.evaluation import Evaluator

    run_dir = in_tmp / "run"
    seen = {}

    def failing_call(self, method, step):
        seen["checkpoints"] = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt"))
        raise RuntimeError("metric exploded")

    with monkeypatch.context() as m:
        m.setattr(Evaluator, "__call__", failing_call)
        code, out, err = otlab("train", *TINY, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    assert seen["checkpoints"] == ["step_00000020.pt"]  # the weights were on disk when evaluation ran
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "completed"
    assert "metric exploded" in record["samplers"]["standard"]["error"]
    assert "metric exploded" in record["eval_error"]
    assert "evaluation with sampler standard failed" in out and "otlab eval run=" in out
    code, table, _ = otlab("table", str(run_dir), "--format", "csv")
    assert code == 0 and "eval failed" in table and "metric exploded" in table and "inf" not in table

    # the evaluation is redone from the saved weights; the error is gone from the record
    code, out, err = otlab("eval", f"run={run_dir}")
    assert code == 0, err
    record = json.loads((run_dir / "result.json").read_text())
    assert "error" not in record["samplers"]["standard"] and "eval_error" not in record
    assert "w2" in record["samplers"]["standard"]["metrics"]


def test_a_failing_periodic_evaluation_does_not_stop_training(in_tmp, monkeypatch):
    from otgan_lab.evaluation import Evaluator

    calls = []
    original = Evaluator.__call__

    def flaky(self, method, step):
        calls.append(step)
        if step == 10:
            raise RuntimeError("transient")
        return original(self, method, step)

    monkeypatch.setattr(Evaluator, "__call__", flaky)
    run_dir = in_tmp / "run"
    code, out, err = otlab("train", *TINY, "eval.every=10", f"hydra.run.dir={run_dir}")
    assert code == 0 and calls == [10, 20]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "completed" and record["eval_errors"] == {"10": "RuntimeError: transient"}
    assert "error" not in record["samplers"]["standard"]


# ---------------------------------------------------------------------------------------------------------
# One process per run dir; leftovers; resume past a broken checkpoint


def test_a_second_process_is_refused_with_the_holders_pid(in_tmp):
    run_dir = in_tmp / "run"
    with RunDir(run_dir):  # this process holds the dir, as a running `otlab train` would
        code, out, err = otlab("train", *TINY, f"hydra.run.dir={run_dir}")
    assert code == 2 and f"pid {os.getpid()}" in err and "in use" in err
    assert not (run_dir / "result.json").exists()


def test_the_lock_dies_with_its_process(tmp_path):
    run_dir = tmp_path / "run"
    code = ("import sys, time; from otgan_lab.rundir import RunDir; d = RunDir(sys.argv[1]); "
            "d.check_usable(); d.acquire(); print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    from otgan_lab.errors import RunDirError

    with pytest.raises(RunDirError, match=f"pid {proc.pid}"):
        RunDir(run_dir).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with RunDir(run_dir):  # the kernel dropped the dead process's lock
        pass


def test_resume_skips_an_unreadable_checkpoint_and_ends_bit_identical(in_tmp):
    args = (*TINY, "trainer.steps=30", "trainer.checkpoint_every=10", "trainer.keep_checkpoints=3")
    reference, broken = in_tmp / "reference", in_tmp / "broken"
    assert otlab("train", *args, f"hydra.run.dir={reference}")[0] == 0
    assert otlab("train", *args, "trainer.steps=20", f"hydra.run.dir={broken}")[0] == 0
    newest = broken / "checkpoints" / "step_00000020.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a write cut short
    # a killed writer's temp file
    (broken / "checkpoints" / ".step_00000020.pt.tmp-4242").write_bytes(b"half")
    code, out, err = otlab("train", *args, f"hydra.run.dir={broken}")
    assert code == 0, err
    assert "skipping checkpoint step_00000020.pt" in err and "removed .step_00000020.pt.tmp-4242" in err
    record = json.loads((broken / "result.json").read_text())
    assert record["resumed_from"].endswith("step_00000010.pt") and record["status"] == "completed"
    assert not list((broken / "checkpoints").glob(".*tmp-*"))
    a = torch.load(reference / "checkpoints" / "step_00000030.pt", weights_only=True)
    b = torch.load(broken / "checkpoints" / "step_00000030.pt", weights_only=True)
    assert all(torch.equal(a["method"][k], b["method"][k]) for k in a["method"])
    assert record["metrics"] == json.loads((reference / "result.json").read_text())["metrics"]


# ---------------------------------------------------------------------------------------------------------
# Sweeps


def test_a_sweep_with_a_failed_job_exits_non_zero_and_names_it(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "otgan_lab.cli", "train", "-m", "seed=0,abc",
                           *TINY, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "1 of 2 sweep jobs did not complete" in proc.stderr and "seed=abc" in proc.stderr
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}
    # every job has its record
    assert sorted(r["status"] for r in records.values()) == ["completed", "failed"]
    assert time.time() - t0 < 300


# ---------------------------------------------------------------------------------------------------------
# otlab eval / otlab sample: Hydra apps over the run's saved config


def test_eval_and_sample_compose_groups_and_keys_over_the_saved_config(finished_run):
    code, out, err = otlab("eval", f"run={finished_run}", "sampler=mh", "sampler.chain_length=3",
                           "eval.n_samples=100")
    assert code == 0, err
    mh = json.loads((finished_run / "result.json").read_text())["samplers"]["mh"]
    assert mh["protocol"]["n_samples"] == 100 and mh["metrics"]["sampler/draws_per_sample"] == 4.0
    # a key of the run's own metrics group (not chosen here) is set on the saved node: a 1000-sigma rule
    # (20 units on a ring of radius 2) counts every sample as high quality
    code, out, err = otlab("eval", f"run={finished_run}", "metrics.points2d.n_sigma=1000",
                           "eval.n_samples=100")
    assert code == 0, err
    standard = json.loads((finished_run / "result.json").read_text())["samplers"]["standard"]
    assert standard["protocol"]["suites"]["points2d"]["n_sigma"] == 1000
    assert standard["metrics"]["hq_share"] == 1.0
    code, out, err = otlab("sample", f"run={finished_run}", "n=0")
    assert code == 2 and "n must be a positive integer" in err
    code, out, err = otlab("sample", f"run={finished_run}", "n=5", "sampler=drs", "sampler.burn_in=50",
                           f"out={finished_run / 'five.png'}")
    assert code == 0, err
    assert torch.load(finished_run / "five.pt").shape == (5, 2)


def test_a_job_refused_before_training_does_not_pin_its_dir(tmp_path):
    """A sweep job that failed its checks keeps a failed record (the sweep's table shows it); the corrected
    command may then run in that dir, while a record of a run that trained does pin it."""
    from otgan_lab.errors import RunDirError

    run_dir = tmp_path / "job"
    run_dir.mkdir()
    record = {"status": "failed", "stage": "before training", "config": {"seed": "abc"}}
    (run_dir / "result.json").write_text(json.dumps(record))
    assert RunDir(run_dir).check_identity({"seed": 0}) is True
    (run_dir / "result.json").write_text(json.dumps({**record, "stage": None, "status": "interrupted"}))
    with pytest.raises(RunDirError, match="seed: abc -> 0"):
        RunDir(run_dir).check_identity({"seed": 0})
