"""`otlab table` on fake sweeps (hand-written result.json files, no training): statistics against
numpy/scipy, failed and diverged rows, protocol splits, per-sampler rows, the published column and the
ordering check, csv / md output and the CLI in a subprocess. Slow tests run real multiruns (a failing job;
the submitit launcher)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from otgan_lab import build, table
from otgan_lab.paths import conf_dir
from otgan_lab.reports import REPORTS, Report, ReportRow, Selector

PROTOCOL = {"n_samples": 1000, "sampler": "standard",
            "suites": {"fid": {"backbone": "lenet", "split": "test"}}, "dataset": "mnist"}


def write_run(root: Path, name: str, *, method: str, seed: int, status: str = "completed",
              fid: float | None = None, samplers: dict[str, float] | None = None,
              protocol: dict | None = None, report_row: str | None = None, lr: float = 1e-4,
              wall: float = 10.0, sps: float = 5.0, error: str | None = None,
              curve: list[tuple[int, float]] | None = None) -> Path:
    """One fake run dir with a result.json shaped like train.py's."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    protocol = dict(protocol or PROTOCOL)
    config = {"seed": seed, "device": "auto", "method": {"name": method, "optim": {"lr": lr}},
              "dataset": {"name": "mnist"}, "model": {"name": "mlp"}, "eval": {"n_samples": 1000},
              "logger": {"kind": "none", "group": None}, "trainer": {"steps": 100, "progress": None}}
    if report_row:
        config["report_row"] = report_row
    record: dict = {"status": status, "method": method, "dataset": "mnist", "model": "mlp",
                    "sampler": "standard", "seed": seed, "precision": "fp32", "overrides": [f"seed={seed}"],
                    "config": config, "wall_time": wall, "run_dir": str(run_dir)}
    if status == "completed":
        samplers = samplers if samplers is not None else {"standard": fid}
        metrics = {"fid": samplers.get("standard", fid), "w2": 0.5}
        record.update(steps=100, steps_per_sec=sps, metrics=metrics, protocol=protocol, samplers={
            name: {"metrics": {"fid": value}, "protocol": {**protocol, "sampler": name}}
            for name, value in samplers.items()})
    else:
        record["error"] = error or f"RuntimeError: {status}"
    (run_dir / "result.json").write_text(json.dumps(record))
    if curve:
        lines = ([{"step": s, "critic_loss": 1.0} for s, _ in curve]
                 + [{"step": s, "eval/fid": v} for s, v in curve])
        (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return run_dir


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """gan: 3 seeds (standard and drs samplers); wgan_gp: 2 completed + 1 failed seed; unrolled diverged;
    mdgan failed."""
    root = tmp_path / "sweep"
    for seed, (std, drs) in enumerate([(30.0, 25.0), (32.0, 26.0), (35.5, 24.0)]):
        write_run(root, f"{seed}_gan", method="gan", seed=seed, samplers={"standard": std, "drs": drs},
                  report_row="r4_gan", wall=10.0 + seed, curve=[(10, std + 10), (20, std)])
    for seed, fid in enumerate([20.0, 22.0]):
        write_run(root, f"{3 + seed}_wgan_gp", method="wgan_gp", seed=seed, fid=fid,
                  report_row="r4_wgan_gp_150ep")
    write_run(root, "5_wgan_gp", method="wgan_gp", seed=2, status="failed", report_row="r4_wgan_gp_150ep",
              error="ValueError: critic exploded\n  at step 40")
    for seed in range(2):
        write_run(root, f"{6 + seed}_unrolled", method="unrolled", seed=seed, status="diverged",
                  report_row="r4_unrolled", error="non-finite loss at step 50")
    write_run(root, "8_mdgan", method="mdgan", seed=0, status="failed", report_row="r4_mdgan")
    return root


def rows_by(rows, **kw):
    return [r for r in rows if all(getattr(r, k) == v for k, v in kw.items())]


def test_mean_std_and_t_interval_match_numpy_and_scipy(sweep: Path):
    rows = table.build_rows(table.load_measurements([sweep]), "fid")
    (gan,) = rows_by(rows, method="gan", sampler="standard")
    x = np.array([30.0, 32.0, 35.5])
    low, high = stats.t.interval(0.95, df=len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert gan.stats.n == 3 and sorted(gan.seeds) == [0, 1, 2]
    assert gan.stats.mean == pytest.approx(x.mean())
    assert gan.stats.std == pytest.approx(np.std(x, ddof=1))
    assert (gan.stats.ci_low, gan.stats.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert gan.stats.best == 30.0
    assert gan.wall_time == pytest.approx(11.0)
    one = table.seed_stats([4.0])
    assert one.mean == 4.0 and one.std is None and one.ci_low is None
    assert table.seed_stats([1.0, 2.0], goal="max").best == 2.0


def test_one_row_per_method_and_sampler(sweep: Path):
    rows = table.build_rows(table.load_measurements([sweep]), "fid")
    (drs,) = rows_by(rows, method="gan", sampler="drs")
    assert drs.stats.mean == pytest.approx(np.mean([25.0, 26.0, 24.0]))
    assert drs.protocol["sampler"] == "drs"
    # standard and drs differ only by sampler, so they share a comparable protocol id
    (std,) = rows_by(rows, method="gan", sampler="standard")
    assert drs.protocol_id == std.protocol_id


def test_failed_and_diverged_runs_are_rows_marked_as_such(sweep: Path):
    rows = table.build_rows(table.load_measurements([sweep]), "fid")
    (ok,) = rows_by(rows, method="wgan_gp", status="completed")
    (failed,) = rows_by(rows, method="wgan_gp", status="failed")
    assert ok.stats.n == 2 and ok.n_group == 3 and failed.seeds == [2]
    assert "critic exploded" in failed.notes[0] and failed.value == math.inf
    (diverged,) = rows_by(rows, method="unrolled")
    assert diverged.status == "diverged" and len(diverged.measurements) == 2
    (md,) = rows_by(rows, method="mdgan")
    assert md.status == "failed"
    records = table.records_for_display(rows)
    text = {r["status"]: r["value_text"] for r in records}
    assert text["diverged"] == "inf (diverged)" and text["failed"] == "inf (failed)"
    assert [r["status"] for r in records][-3:].count("completed") == 0  # failures rank last
    (wgp,) = [r for r in records if r["method"] == "wgan_gp" and r["status"] == "completed"]
    assert (wgp["n"], wgp["n_runs"]) == (2, 3)


def test_protocol_mismatch_is_split_with_the_reason(tmp_path: Path):
    inception = {**PROTOCOL, "suites": {"fid": {"backbone": "inception", "split": "test"}}}
    write_run(tmp_path, "a", method="gan", seed=0, fid=10.0)
    write_run(tmp_path, "b", method="gan", seed=1, fid=12.0)
    write_run(tmp_path, "c", method="gan", seed=2, fid=50.0, protocol=inception)
    rows = table.build_rows(table.load_measurements([tmp_path]), "fid")
    assert len(rows) == 2
    lenet = next(r for r in rows if r.protocol["suites"]["fid"]["backbone"] == "lenet")
    assert lenet.stats.mean == pytest.approx(11.0)  # the inception number is not averaged in
    assert any("not averaged" in n and "backbone: lenet vs inception" in n for n in lenet.notes)
    notes = table.table_notes(rows)
    assert any("2 evaluation protocols" in n and "backbone" in n for n in notes)


def test_group_by_fields_and_seed_derived_keys(tmp_path: Path):
    write_run(tmp_path, "a", method="gan", seed=0, fid=1.0, lr=1e-4)
    write_run(tmp_path, "b", method="gan", seed=1, fid=3.0, lr=2e-4)
    ms = table.load_measurements([tmp_path])
    assert len(table.build_rows(ms, "fid")) == 2  # lr differs: two groups
    (row,) = table.build_rows(ms, "fid", by=["method", "sampler"])
    assert row.stats.mean == 2.0
    # a config key interpolating ${seed} varies with the seed but must not split the group
    for name, seed in (("c", 0), ("d", 1)):
        run = write_run(tmp_path / "s", name, method="gan", seed=seed, fid=float(seed))
        record = json.loads((run / "result.json").read_text())
        record["config"]["dataset"]["split_seed"] = seed
        (run / "result.json").write_text(json.dumps(record))
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text("dataset:\n  split_seed: ${seed}\n")
    assert len(table.build_rows(table.load_measurements([tmp_path / "s"]), "fid")) == 1


def test_unreadable_record_is_shown(tmp_path: Path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "result.json").write_text("{not json")
    (row,) = table.build_rows(table.load_measurements([tmp_path]), "fid")
    assert row.status == "unreadable" and "JSONDecodeError" in row.notes[0]


def test_ordering_agreement_matches_scipy_kendall_tau():
    published, ours = [38.0, 22.0, 28.0, math.inf], [32.5, 25.0, 21.0, math.inf]
    tau, swapped = table.ordering_agreement(published, ours)
    assert tau == pytest.approx(stats.kendalltau([1, 0, 0.5, 2], [1, 0.5, 0, 2]).statistic)  # same ranks
    assert swapped == [(1, 2)]  # only 22 < 28 vs 25 > 21 is reversed
    tau, swapped = table.ordering_agreement([1.0, 2.0, 3.0], [10.0, 20.0, 30.0])
    assert tau == pytest.approx(1.0) and swapped == []


def test_published_column_and_ordering_verdict(sweep: Path):
    rows = table.build_rows(table.load_measurements([sweep]), "fid")
    comparison = table.compare_with_report(rows, REPORTS["r4"])
    records = table.records_for_display(rows, comparison)
    by_label = {r["report_row"]: r for r in records if r["report_row"]}
    assert by_label["Vanilla GAN (VGAN)"]["published"] == 38.0
    assert by_label["Vanilla GAN (VGAN)"]["mean"] == pytest.approx(np.mean([30.0, 32.0, 35.5]))
    assert by_label["VGAN + DRS (~32,000 generator draws)"]["mean"] == pytest.approx(25.0)
    assert by_label["Unrolled GAN"]["status"] == "diverged"
    assert by_label["Unrolled GAN"]["published_text"] == "inf (failed)"
    assert by_label["VGAN + R1 regularization"]["status"] == "not run"
    # the WGAN-GP report row shows both our completed seeds and the failed one
    wgp = [r for r in records if r["report_row"] == "WGAN-GP, 150 epochs"]
    assert sorted(r["status"] for r in wgp) == ["completed", "failed"]
    # rows with both values: VGAN 38 / 32.5, WGAN-GP 28 / 21, VGAN+DRS 22 / 25, Unrolled inf / inf,
    # MD-GAN inf / inf
    published = [38.0, 28.0, 22.0, math.inf, math.inf]
    ours = [np.mean([30.0, 32.0, 35.5]), 21.0, 25.0, math.inf, math.inf]
    expected_tau = stats.kendalltau(published, ours).statistic
    (verdict,) = comparison.verdicts
    assert f"Kendall tau = {expected_tau:.2f}" in verdict
    assert "mostly agrees" in verdict and "1 of 10 pairs swapped" in verdict
    assert "WGAN-GP, 150 epochs vs VGAN + DRS" in verdict


def test_same_ranking_is_stated_in_words(tmp_path: Path):
    report = Report("rx", "test report", "fid", "test protocol", (
        ReportRow("A", 10.0, Selector("gan", overrides={"report_row": "a"})),
        ReportRow("B", 20.0, Selector("wgan_gp", overrides={"report_row": "b"})),
        ReportRow("C", None, None, note="not implemented"),
    ))
    write_run(tmp_path, "a", method="gan", seed=0, fid=1.0, report_row="a")
    write_run(tmp_path, "b", method="wgan_gp", seed=0, fid=2.0, report_row="b")
    rows = table.build_rows(table.load_measurements([tmp_path]), "fid")
    (verdict,) = table.compare_with_report(rows, report).verdicts
    assert "agrees" in verdict and "same ranking" in verdict and "tau = 1.00" in verdict
    rows[0].measurements[0].metrics["fid"] = 3.0
    rows = table.build_rows([m for r in rows for m in r.measurements], "fid")
    (verdict,) = table.compare_with_report(rows, report).verdicts
    assert "disagrees" in verdict and "A vs B" in verdict


def test_expected_ranks_stand_in_for_missing_numbers(tmp_path: Path):
    write_run(tmp_path, "a", method="otgan", seed=0, fid=40.0, report_row="r2_otgan_b500")
    write_run(tmp_path, "b", method="otgan", seed=0, fid=90.0, report_row="r2_otgan_ce_b500")
    rows = table.build_rows(table.load_measurements([tmp_path]), "fid")
    verdicts = table.compare_with_report(rows, REPORTS["r2"]).verdicts
    assert any(v.startswith("loss ablation:") and "same ranking" in v and "claims" in v for v in verdicts)


def test_csv_and_markdown_outputs(sweep: Path):
    rows = table.build_rows(table.load_measurements([sweep]), "fid")
    records = table.records_for_display(rows)
    parsed = list(csv.DictReader(io.StringIO(table.render_csv(records, "fid"))))
    gan = next(r for r in parsed if r["method"] == "gan" and r["sampler"] == "standard")
    x = np.array([30.0, 32.0, 35.5])
    assert float(gan["mean"]) == pytest.approx(x.mean()) and float(gan["std"]) == pytest.approx(x.std(ddof=1))
    assert gan["seeds"] == "0 1 2" and gan["metric"] == "fid" and gan["status"] == "completed"
    assert next(r for r in parsed if r["method"] == "mdgan")["mean"] == "inf"
    md = table.render_markdown(records, table.table_notes(rows), "fid", "t")
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert "fid mean ± std" in header and "95% CI" in header
    assert "| unrolled | standard |" in md and "inf (diverged)" in md
    assert "P1: n_samples=1000" in md


def test_learning_curve_plot(sweep: Path, tmp_path: Path):
    rows = table.build_rows(table.load_measurements([sweep]), "fid")
    out = table.plot_curves(rows, "fid", tmp_path / "curves.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps, values = table.read_curve(sweep / "0_gan", "eval/fid")
    assert steps.tolist() == [10, 20] and values.tolist() == [40.0, 30.0]
    with pytest.warns(UserWarning, match="no eval/nope"):
        assert table.plot_curves(rows, "nope", tmp_path / "none.png") is None


def _solid_png(path: Path, rgb: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), rgb).save(path)


def _has_colour(png: Path, rgb: tuple[int, int, int]) -> bool:
    from PIL import Image

    with Image.open(png) as image:
        return bool((np.asarray(image.convert("RGB")) == np.array(rgb, dtype=np.uint8)).all(-1).any())


def test_sample_sheet_shows_each_rows_last_picture_of_its_own_sampler(sweep: Path, tmp_path: Path):
    from otgan_lab.table.samples import latest_picture, sample_sheet

    blue, red, green, yellow = (0, 0, 255), (255, 0, 0), (0, 255, 0), (255, 255, 0)
    _solid_png(sweep / "0_gan" / "samples" / "step_00000010.png", blue)       # an earlier step: not shown
    _solid_png(sweep / "0_gan" / "samples" / "step_00000020.png", red)        # gan, standard, seed 0
    _solid_png(sweep / "0_gan" / "samples" / "drs_step_00000020.png", green)  # gan, drs, seed 0
    _solid_png(sweep / "1_gan" / "samples" / "step_00000020.png", yellow)     # seed 1: not the first seed
    magenta = (255, 0, 255)  # a later picture of a sampler no row shows: neither row may take it
    _solid_png(sweep / "0_gan" / "samples" / "mh_step_00000030.png", magenta)
    rows = table.build_rows(table.load_measurements([sweep]), "fid")
    by_sampler = {r.sampler: r for r in rows if r.method == "gan"}
    seed0 = {r: next(m for m in by_sampler[r].measurements if m.seed == 0) for r in by_sampler}
    assert latest_picture(seed0["standard"]) == (sweep / "0_gan" / "samples" / "step_00000020.png", 20)
    assert latest_picture(seed0["drs"]) == (sweep / "0_gan" / "samples" / "drs_step_00000020.png", 20)
    with pytest.warns(UserWarning, match="no sample picture .* wgan_gp"):
        out = sample_sheet(rows, "fid", tmp_path / "sheet.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _has_colour(out, red) and _has_colour(out, green)
    assert not _has_colour(out, blue) and not _has_colour(out, yellow)
    assert not _has_colour(out, magenta)
    table.main([str(sweep), "--format", "csv", "--samples", str(tmp_path / "cli.png")])
    assert _has_colour(tmp_path / "cli.png", green)
    empty = tmp_path / "empty"
    write_run(empty, "0_gan", method="gan", seed=0, fid=1.0)
    with (pytest.warns(UserWarning, match="no sample sheet"),
          pytest.warns(UserWarning, match="first seed")):
        assert sample_sheet(table.build_rows(table.load_measurements([empty]), "fid"), "fid",
                            tmp_path / "none.png") is None


def test_report_presets_agree_with_reports_data():
    """Every selector tag has its conf/report_row file and appears in its report's preset (or names a dataset
    or method otgan_lab has no config for yet), and every preset row exists."""
    conf = conf_dir()
    for key, report in REPORTS.items():
        preset = (conf / "experiment" / f"report_{key}.yaml").read_text()
        swept = re.search(r"\+report_row: (.*)", preset).group(1).split(",")
        assert all((conf / "report_row" / f"{tag}.yaml").is_file() for tag in swept), key
        for rrow in report.rows:
            if rrow.selector is None:
                continue
            tags = rrow.selector.overrides["report_row"]
            runnable = (rrow.selector.dataset is None
                        or (conf / "dataset" / f"{rrow.selector.dataset}.yaml").exists())
            if runnable:
                assert set(tags) & set(swept), (key, rrow.label)
                for tag in set(tags) & set(swept):
                    assert f"report_row: {tag} " in (conf / "report_row" / f"{tag}.yaml").read_text()


def test_report_rows_compose_with_their_selectors():
    """Each preset row composes (budget=smoke) into the method, sampler and dataset its report selector names.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = conf_dir()
    if "budget:" not in (conf / "config.yaml").read_text():
        pytest.skip("conf/config.yaml has no budget default yet "
                    "('- budget: null' before '- experiment: null')")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        for key, report in REPORTS.items():
            for rrow in report.rows:
                sel = rrow.selector
                if sel is None or not (conf / "method" / f"{sel.method}.yaml").is_file():
                    continue  # not implemented, or a method still being added
                samplers = set()
                for tag in sel.overrides["report_row"]:
                    if not (conf / "report_row" / f"{tag}.yaml").is_file():
                        continue
                    cfg = compose("config", overrides=[f"experiment=report_{key}", f"+report_row={tag}",
                                                       "budget=smoke"])
                    plain = OmegaConf.to_container(cfg, resolve=True)
                    assert plain["method"]["name"] == sel.method and plain["report_row"] == tag, tag
                    assert sel.dataset in (None, plain["dataset"]["name"]), tag
                    assert plain["trainer"]["steps"] <= 100 and plain["budget"]["name"] == "smoke", tag
                    main = plain["sampler"].get("name") or plain["sampler"]["_target_"].rsplit(".", 1)[-1]
                    samplers |= {table.sampler_name({"sampler": main}),
                                 *(build.sampler_config(e).name for e in plain["eval"].get("samplers", []))}
                # one of the row's tags trains with its sampler or evaluates it through eval.samplers
                assert not samplers or sel.sampler in samplers, (key, rrow.label, samplers)


def test_otlab_table_cli_in_a_subprocess(sweep: Path, tmp_path: Path):
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "otgan_lab.cli", "table", str(sweep), "--report", "r4", "--out",
           str(tmp_path / "t.csv")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Vanilla GAN (VGAN)" in proc.stdout and "ordering:" in proc.stdout
    parsed = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert {"report_row", "published", "mean", "ci_low"} <= set(parsed[0])
    empty = subprocess.run([sys.executable, "-m", "otgan_lab.cli", "table", str(tmp_path / "nothing")],
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1 and "no result.json" in empty.stderr


def test_wandb_table_failure_warns(sweep: Path, tmp_path: Path, monkeypatch):
    rows = table.build_rows(table.load_measurements([sweep]), "fid")
    records = table.records_for_display(rows)
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails: the table must warn, never raise
    with pytest.warns(UserWarning, match="W&B table not logged"):
        assert table.log_to_wandb(records, "fid", "sweep", tmp_path) is False


@pytest.mark.slow
def test_wandb_table_offline(sweep: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    rows = table.build_rows(table.load_measurements([sweep]), "fid")
    assert table.log_to_wandb(table.records_for_display(rows), "fid", "sweep", tmp_path)
    assert list((tmp_path / "wandb").glob("offline-run-*"))


# ----------------------------------------------------------------------------------------------------------
# Real multiruns (slow)


def _otlab(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "otgan_lab.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_multirun_with_a_failing_job_then_table(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    train = _otlab("train", "-m", "dataset=ring8", "trainer.steps=5", "logger=none", "metrics.n_samples=200",
                   "method.optim.critic.lr=1e-3,-1", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    records = {json.loads(p.read_text())["status"]: json.loads(p.read_text())
               for p in sweep_dir.rglob("result.json")}
    assert set(records) == {"completed", "failed"}  # the failing job wrote its record and the sweep went on
    assert "positive learning rate" in records["failed"]["error"]
    out = _otlab("table", str(sweep_dir), "--format", "csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    parsed = list(csv.DictReader(io.StringIO(out.stdout)))
    assert sorted(r["status"] for r in parsed) == ["completed", "failed"]
    assert {r["sampler"] for r in parsed} == {"standard"}


def _has_module(name: str) -> bool:
    try:  # find_spec raises when the parent package (hydra_plugins) is itself missing
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(not _has_module("hydra_plugins.hydra_submitit_launcher"),
                    reason="hydra-submitit-launcher not installed (pip install -e .[sweeps])")
def test_submitit_local_launcher_runs_two_jobs(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    train = _otlab("train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                   "hydra.launcher.cpus_per_task=1", "dataset=ring8", "trainer.steps=5", "logger=none",
                   "metrics.n_samples=200", "seed=0,1", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    statuses = [json.loads(p.read_text())["status"] for p in sweep_dir.rglob("result.json")]
    assert statuses == ["completed", "completed"]
    (row,) = table.build_rows(table.load_measurements([sweep_dir]), "w2")
    assert row.stats.n == 2 and sorted(row.seeds) == [0, 1]


def test_variant_labels_name_a_key_only_some_configs_have(tmp_path: Path):
    """Runs differing only by a key one config lacks (a config default added between runs) are two groups,
    and their labels say which key tells them apart."""
    a = write_run(tmp_path, "a", method="gan", seed=0, fid=30.0)
    b = write_run(tmp_path, "b", method="gan", seed=1, fid=31.0)
    record = json.loads((b / "result.json").read_text())
    record["config"]["trainer"]["lr_schedule"] = None
    (b / "result.json").write_text(json.dumps(record))
    rows = table.build_rows(table.load_measurements([a, b]), "fid")
    assert sorted(r.variant for r in rows) == ["trainer.lr_schedule=<absent>", "trainer.lr_schedule=None"]


def test_parallel_sweep_jobs_each_hold_their_own_gpu(tmp_path):
    """build.claim_gpu (device=auto in a multirun with several GPUs): concurrent jobs get different GPUs,
    round-robin by job number when free, and a job waits while every GPU is held."""
    import threading

    import torch

    gpu = [torch.device("cuda:0"), torch.device("cuda:1")]
    with build.claim_gpu(tmp_path, 1, count=2) as first:
        assert first == gpu[1]  # job 1 prefers GPU 1
        with build.claim_gpu(tmp_path, 3, count=2) as second:
            assert second == gpu[0]  # job 3 prefers GPU 1 too, which is held: it takes GPU 0
            got = []
            waiter = threading.Thread(target=lambda: got.append(_claim_and_release(tmp_path, 0)))
            waiter.start()
            waiter.join(0.3)
            assert waiter.is_alive() and not got  # both GPUs held: job 0 waits
        waiter.join(5)
        assert got == [gpu[0]]  # GPU 0 came free first
    with build.claim_gpu(tmp_path, 1, count=2) as again:
        assert again == gpu[1]  # locks are released on exit


def _claim_and_release(lock_dir, job_index):
    with build.claim_gpu(lock_dir, job_index, count=2, poll_s=0.01) as device:
        return device


def test_sweep_jobs_with_device_auto_take_a_gpu_only_when_several_are_visible(tmp_path, monkeypatch):
    import torch

    from otgan_lab.train import _job_device
    from tests.helpers import compose_cfg

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for device, job, expected in (("auto", 3, "cuda:1"), ("auto", None, "auto"), ("cpu", 3, "cpu")):
        cfg = compose_cfg(f"device={device}")
        with _job_device(cfg, str(tmp_path), job):
            assert cfg.device == expected
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = compose_cfg("device=auto")
    with _job_device(cfg, str(tmp_path), 3):
        assert cfg.device == "auto"  # one GPU (or a SLURM job's own): nothing to share out
