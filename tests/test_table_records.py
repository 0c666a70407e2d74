"""Records you can stake a paper on (issue 12, items 5 and 10), seen from `otlab table`:
- a malformed or unreadable result.json is one row marked "unreadable" with the reason; the others print;
- a metric's direction comes from its declaration (the record's metric_specs, else the code), never its name:
  a higher-is-better metric picks the max as best and orders rows descending, an undeclared one gets a note;
- a table of failed runs only is headed by the metric the records name (primary_metric), not "fid".
Also: every key the metric suites, samplers and AE-OT's fit_end produce is declared, consistently."""

from __future__ import annotations

import ast
import csv
import inspect
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from otgan_lab import table
from otgan_lab.metrics.spec import MetricSpec, conflicting_specs, lookup_spec, specs_of, specs_record
from otgan_lab.records import record_problems

PROTOCOL = {"n_samples": 100, "sampler": "standard", "suites": {"classifier": {"min_count": 1}},
            "dataset": "mnist"}


def record(*, method: str = "gan", seed: int = 0, status: str = "completed", metrics: dict | None = None,
           lr: float = 1e-4, dataset: str = "mnist", **extra) -> dict:
    """A result.json shaped like train.py's (one sampler, its entry mirroring the top-level metrics)."""
    rec: dict = {"status": status, "method": method, "dataset": dataset, "model": "mlp",
                 "sampler": "standard", "seed": seed, "precision": "fp32", "overrides": [f"seed={seed}"],
                 "wall_time": 3.0,
                 "config": {"seed": seed, "method": {"name": method, "optim": {"lr": lr}},
                            "dataset": {"name": dataset}, "model": {"name": "mlp"}}}
    if status == "completed":
        metrics = {} if metrics is None else metrics
        rec.update(steps=10, steps_per_sec=2.0, metrics=metrics, protocol=PROTOCOL,
                   samplers={"standard": {"metrics": metrics, "protocol": PROTOCOL}})
    else:
        rec["error"] = f"RuntimeError: {status} at step 3"
    rec.update(extra)
    return rec


def write(root: Path, name: str, rec) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "result.json").write_text(rec if isinstance(rec, str) else json.dumps(rec))
    return run


def csv_rows(capsys, argv: list[str]) -> list[dict]:
    table.main([*argv, "--format", "csv"])
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def md_table(capsys, argv: list[str]) -> str:
    table.main([*argv, "--format", "md"])
    return capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------
# Malformed records


MALFORMED = {  # run name -> (record, words its note must hold)
    "metrics_list": (record(seed=10, metrics=["w2", 1.0]), "metrics is an array"),
    "samplers_list": (record(seed=11, samplers=["standard"]), "samplers is an array"),
    "sampler_entry_text": (record(seed=12, samplers={"standard": "fid=3"}),
                           "samplers['standard'] is a string"),
    "config_list": (record(seed=13, config=[1, 2]), "config is an array"),
    "seed_list": (record(seed=14) | {"seed": [0, 1]}, "seed is an array"),
    "wall_time_text": (record(seed=15, wall_time="slow"), "wall_time is a string"),
    "status_unknown": (record(seed=16, status="done"), "status is 'done'"),
    "metric_value_object": (record(seed=17, metrics={"classes_covered": {"mean": 3}}),
                            "metrics['classes_covered'] is an object"),
    "goal_unknown": (record(seed=18, metric_specs={"classes_covered": {"display": "c", "goal": "up"}}),
                     "metric_specs['classes_covered'].goal is 'up'"),
    "not_an_object": ([1, 2, 3], "the record is an array"),
    "not_json": ("{half a record", "JSONDecodeError"),
}


@pytest.fixture
def mixed_sweep(tmp_path: Path) -> Path:
    """Two good gan seeds (classes_covered 7 and 9) among every kind of malformed record."""
    root = tmp_path / "sweep"
    for seed, covered in ((0, 7.0), (1, 9.0)):
        write(root, f"good_{seed}", record(seed=seed, metrics={"classes_covered": covered}))
    for name, (rec, _) in MALFORMED.items():
        write(root, name, rec)
    return root


def test_record_problems_name_the_key_and_what_is_wrong():
    assert record_problems(record(metrics={"fid": 3.0, "n": "inf"})) == []
    assert record_problems(record(status="failed")) == []
    for name, (rec, words) in MALFORMED.items():
        if isinstance(rec, str):
            continue
        problems = record_problems(rec)
        assert any(words in p for p in problems), (name, problems)
    assert record_problems(record(metric_specs={"x": {"display": "x"}})) == ["metric_specs['x'] has no goal "
                                                                              "('min', 'max' or null)"]
    many = record_problems(record(metrics=[1], config="x", seed={"a": 1}))
    assert [p.split(" ")[0] for p in many] == ["seed", "config", "metrics", "samplers['standard'].metrics"]


def test_malformed_records_are_unreadable_rows_and_the_table_still_prints(mixed_sweep: Path, capsys):
    rows = csv_rows(capsys, [str(mixed_sweep), "--metric", "classes_covered"])
    good = [r for r in rows if r["status"] == "completed"]
    assert len(good) == 1 and good[0]["n"] == "2" and float(good[0]["mean"]) == 8.0
    bad = [r for r in rows if r["status"] == "unreadable"]
    assert len(bad) == len(MALFORMED)  # one row each: none dropped, none grouped with another
    for name, (_, words) in MALFORMED.items():
        assert any(words in r["notes"] for r in bad), (name, [r["notes"] for r in bad])
    assert all(r["notes"].startswith(("malformed result.json", "JSONDecodeError")) for r in bad)
    (seeded,) = [r for r in bad if "wall_time" in r["notes"]]
    assert seeded["method"] == "gan" and seeded["seeds"] == "15"  # what is usable still says which run it is
    assert all(r["mean"] == "" for r in bad)  # not a result: no 'inf' as a failed run would have
    md = md_table(capsys, [str(mixed_sweep)])  # the default metric too
    assert md.count("| unreadable |") == len(MALFORMED)
    assert any(line.startswith("| gan | standard |  |") and "| completed | 2 | 8 ± 1.41 |" in line
               for line in md.splitlines())  # no variant label: the bad records take no part in it
    assert str(mixed_sweep / "seed_list") in md  # the row names the run dir to go and fix


def _otlab() -> list[str]:
    script = Path(sys.executable).with_name("otlab")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "otgan_lab.cli"]


def test_otlab_table_subprocess_survives_bad_records(tmp_path: Path):
    root = tmp_path / "sweep"
    specs = {"classes_covered": {"display": "classes covered", "goal": "max"}}
    for seed, covered in ((0, 7.0), (1, 9.0)):
        write(root, f"good_{seed}", record(seed=seed, metrics={"classes_covered": covered},
                                           metric_specs=specs, primary_metric="classes_covered"))
    write(root, "bad", record(seed=2, metrics=["w2", 1.0]))
    proc = subprocess.run([*_otlab(), "table", str(root)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "unreadable" in proc.stdout and "completed" in proc.stdout
    assert "malformed" in proc.stdout and "classes covered ↑" in proc.stdout


# ----------------------------------------------------------------------------------------------------------
# Directions


def _two_methods(root: Path, metric: str, gan: tuple[float, float], wgan: tuple[float, float],
                 **extra) -> Path:
    for seed, value in enumerate(gan):
        write(root, f"gan_{seed}", record(method="gan", seed=seed, metrics={metric: value}, **extra))
    for seed, value in enumerate(wgan):
        write(root, f"wgan_{seed}", record(method="wgan_gp", seed=seed, metrics={metric: value}, **extra))
    write(root, "gan_failed", record(method="gan", seed=9, status="failed", lr=1.0, **extra))
    return root


def test_a_higher_is_better_metric_picks_the_max_and_orders_descending(tmp_path: Path, capsys):
    """classes_covered is declared "max" in metrics/classifier.py (records here carry no metric_specs):
    wgan_gp (9, 10) ranks above gan (3, 5), best seeds are the maxima, the failed run ranks last as -inf."""
    root = _two_methods(tmp_path, "classes_covered", gan=(3.0, 5.0), wgan=(9.0, 10.0))
    rows = csv_rows(capsys, [str(root), "--metric", "classes_covered"])
    assert [(r["method"], r["status"]) for r in rows] == [("wgan_gp", "completed"), ("gan", "completed"),
                                                           ("gan", "failed")]
    assert [float(r["best"]) for r in rows[:2]] == [10.0, 5.0]
    assert rows[2]["mean"] == "-inf"
    md = md_table(capsys, [str(root), "--metric", "classes_covered"])
    assert "classes covered ↑ mean ± std" in md and "higher is better" in md and "-inf (failed)" in md
    assert "not declared" not in md


def test_a_lower_is_better_metric_picks_the_min_and_orders_ascending(tmp_path: Path, capsys):
    root = _two_methods(tmp_path, "w2", gan=(3.0, 5.0), wgan=(9.0, 10.0), dataset="ring8")
    rows = csv_rows(capsys, [str(root), "--metric", "w2"])
    assert [r["method"] for r in rows] == ["gan", "wgan_gp", "gan"]
    assert [float(r["best"]) for r in rows[:2]] == [3.0, 9.0] and rows[2]["mean"] == "inf"
    ms = table.load_measurements([root])
    assert table.describe_metric(ms, "w2").source == "code"
    assert table.describe_metric(ms, "classes_covered").goal == "max"


def test_the_records_metric_specs_override_the_code(tmp_path: Path, capsys):
    """A record's own declaration wins over the code's (here it says w2 is higher-is-better)."""
    specs = {"w2": {"display": "W2 (as recorded)", "goal": "max"}}
    root = _two_methods(tmp_path, "w2", gan=(3.0, 5.0), wgan=(9.0, 10.0), metric_specs=specs)
    rows = csv_rows(capsys, [str(root), "--metric", "w2"])
    assert [r["method"] for r in rows][:2] == ["wgan_gp", "gan"] and float(rows[0]["best"]) == 10.0
    assert "W2 (as recorded) ↑ mean ± std" in md_table(capsys, [str(root), "--metric", "w2"])
    # the per-sampler entry's declaration counts too (a sampler evaluated after the run's own)
    rec = record(metrics={"score": 1.0})
    rec["samplers"]["standard"]["metric_specs"] = {"score": {"display": "score", "goal": "max"}}
    write(tmp_path / "s", "a", rec)
    assert table.describe_metric(table.load_measurements([tmp_path / "s"]), "score").goal == "max"


def test_an_undeclared_metric_has_no_best_and_a_note_until_goal_is_given(tmp_path: Path, capsys):
    root = _two_methods(tmp_path, "my_score", gan=(3.0, 5.0), wgan=(9.0, 10.0))
    rows = csv_rows(capsys, [str(root), "--metric", "my_score"])
    assert [r["best"] for r in rows] == ["", "", ""]  # no best without a direction
    assert [(r["method"], r["status"]) for r in rows] == [("gan", "completed"), ("wgan_gp", "completed"),
                                                           ("gan", "failed")]  # by name, failures last
    md = md_table(capsys, [str(root), "--metric", "my_score"])
    assert "direction of my_score not declared; pass --goal min|max" in md
    assert "direction not declared" in md and "— (failed)" in md
    rows = csv_rows(capsys, [str(root), "--metric", "my_score", "--goal", "max"])
    assert [r["method"] for r in rows][:2] == ["wgan_gp", "gan"] and float(rows[0]["best"]) == 10.0
    assert "not declared" not in md_table(capsys, [str(root), "--metric", "my_score", "--goal", "min"])


def test_informational_and_contested_directions_are_said(tmp_path: Path):
    root = _two_methods(tmp_path / "a", "kid_std", gan=(0.1, 0.2), wgan=(0.3, 0.4))
    rows = table.build_rows(table.load_measurements([root]), "kid_std")
    assert rows[0].goal is None and all(r.stats.best is None for r in rows)
    assert any("kid_std is declared informational" in n for n in table.table_notes(rows))
    for seed, goal in ((0, "min"), (1, "max")):
        write(tmp_path / "b", f"r{seed}", record(seed=seed, metrics={"s": 1.0},
                                                 metric_specs={"s": {"display": "s", "goal": goal}}))
    choice = table.describe_metric(table.load_measurements([tmp_path / "b"]), "s")
    assert choice.goal is None and "disagree" in choice.note


def test_the_report_comparison_uses_the_declared_direction(tmp_path: Path):
    from otgan_lab.reports import Report, ReportRow, Selector

    report = Report("rx", "test", "classes_covered", "test protocol", (
        ReportRow("A", None, Selector("gan", overrides={"report_row": "a"}), expected_rank=1),
        ReportRow("B", None, Selector("wgan_gp", overrides={"report_row": "b"}), expected_rank=2),
    ))
    for method, tag, covered in (("gan", "a", 9.0), ("wgan_gp", "b", 4.0)):
        rec = record(method=method, metrics={"classes_covered": covered})
        rec["config"]["report_row"] = tag
        write(tmp_path, method, rec)
    rows = table.build_rows(table.load_measurements([tmp_path]), "classes_covered")
    (verdict,) = table.compare_with_report(rows, report).verdicts
    assert "same ranking" in verdict  # rank 1 = most classes covered: agrees only if "max" is read


# ----------------------------------------------------------------------------------------------------------
# Choosing the metric


def test_a_table_of_failed_2d_runs_is_headed_by_the_records_primary_metric(tmp_path: Path, capsys):
    specs = {"modes_covered": {"display": "modes covered", "goal": "max"},
             "w2": {"display": "W2", "goal": "min"}}
    for seed in range(2):
        write(tmp_path, f"f{seed}", record(seed=seed, status="failed", dataset="ring8", primary_metric="w2",
                                           metric_specs=specs))
    md = md_table(capsys, [str(tmp_path)])
    title = next(line for line in md.splitlines() if line.startswith("###"))
    assert "W2 [w2], lower is better" in title and "fid" not in md.lower()
    assert "W2 ↓ mean ± std" in md and "inf (failed)" in md
    rows = csv_rows(capsys, [str(tmp_path)])
    assert {r["metric"] for r in rows} == {"w2"}


def test_choose_metric_reads_the_records_never_a_hardcoded_fid(tmp_path: Path):
    def chosen(*recs: dict) -> str:
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        for i, rec in enumerate(recs):
            write(root, f"r{i}", rec)
        return table.choose_metric(table.load_measurements([root]))

    # a failed run's primary_metric counts as much as a completed one's
    assert chosen(record(metrics={"fid": 3.0}), record(status="failed", primary_metric="kl_to_uniform")) \
        == "kl_to_uniform"
    # an old failed record: its resolved config names the primary metric
    old = record(status="failed")
    old["config"]["metrics"] = {"primary": "w2", "n_samples": 10}
    assert chosen(old) == "w2"
    # no primary: a key the records declare with a direction, then a measured key the code declares
    spec_only = record(status="failed", metric_specs={"n_samples": {"display": "n", "goal": None},
                                                      "hq_share": {"display": "HQ", "goal": "max"}})
    assert chosen(spec_only) == "hq_share"
    assert chosen(record(metrics={"modes_total": 8.0, "mode_kl": 0.1})) == "mode_kl"
    assert chosen(record(status="failed")) == table.NO_METRIC


# ----------------------------------------------------------------------------------------------------------
# Declarations


def test_evaluator_metric_specs_declare_every_suite_and_sampler_key():
    from otgan_lab.evaluation import Evaluator
    from otgan_lab.samplers.mh import MHSampler

    class Points:
        name, kind, meta = "ring8", "points", {}

    evaluator = Evaluator(Points(), MHSampler(), n_samples=8, suites={"points2d": {}, "classifier": {}},
                          out_dir="unused")
    specs = evaluator.metric_specs
    assert specs["w2"] == {"display": "W2", "goal": "min"}
    assert specs["classes_covered"]["goal"] == "max" and specs["modes_total"]["goal"] is None
    assert specs["sampler/acceptance_rate"]["goal"] == "max" and "sampler/platt_a" in specs
    assert json.loads(json.dumps(specs)) == specs  # goes into result.json as it is
    assert record_problems(record(metric_specs=specs)) == []


def test_the_code_declares_each_key_once_consistently():
    declarations = list(table.code_declarations())
    assert conflicting_specs(declarations) == {}
    assert lookup_spec("ot_coverage", declarations) == MetricSpec("OT cell coverage", "max")
    assert lookup_spec("sampler/never_moved", declarations).goal == "min"
    assert lookup_spec("no_such_metric", declarations) is None
    with pytest.raises(ValueError):
        MetricSpec("x", "up")


def test_metric_functions_return_only_declared_keys():
    from otgan_lab.metrics.classifier import classifier_metrics, stacked_mnist_metrics
    from otgan_lab.metrics.points2d import points2d_metrics
    from otgan_lab.metrics.prdc import prdc

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    out = points2d_metrics(torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g), centres, 1.0)
    assert set(out) == set(specs_of(points2d_metrics))
    logits = torch.randn(50, 10, generator=g)
    assert set(classifier_metrics(logits)) == set(specs_of(classifier_metrics))
    assert set(stacked_mnist_metrics(torch.randint(0, 1000, (50,), generator=g))) \
        == set(specs_of(stacked_mnist_metrics))
    real, fake = torch.randn(30, 4, generator=g), torch.randn(30, 4, generator=g)
    assert set(prdc(real, fake, k=3)) == set(specs_of(prdc))


def _dict_keys_assigned(source: str, target: str) -> set[str]:
    """String keys of every dict literal assigned to `target` (e.g. "self.stats") or returned, in `source`."""
    keys: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        value = None
        if isinstance(node, ast.Assign) and any(ast.unparse(t) == target for t in node.targets):
            value = node.value
        elif isinstance(node, ast.Return) and target == "return":
            value = node.value
        if isinstance(value, ast.Dict):
            keys |= {k.value for k in value.keys if isinstance(k, ast.Constant)}
    return keys


def test_sampler_stats_and_fit_end_results_are_declared():
    """The keys each sampler writes into `stats` (and the calibration's) and AE-OT's fit_ot returns are all
    declared, read from the source so that a new key without a declaration fails here."""
    import textwrap

    from otgan_lab.methods.aeot import AEOT
    from otgan_lab.samplers.base import Sampler
    from otgan_lab.samplers.calibration import CriticCalibration

    samplers = table._subclasses("otgan_lab.samplers", Sampler)
    assert len(samplers) >= 6
    for cls in samplers:
        written = _dict_keys_assigned(textwrap.dedent(inspect.getsource(cls)), "self.stats")
        assert written <= set(cls.stat_specs), (cls.__name__, written - set(cls.stat_specs))
    calibration = _dict_keys_assigned(textwrap.dedent(inspect.getsource(CriticCalibration.stats)), "return")
    assert calibration == set(CriticCalibration.stat_specs)
    fit = _dict_keys_assigned(textwrap.dedent(inspect.getsource(AEOT.fit_ot)), "return")
    assert fit and fit == set(AEOT.fit_end_specs)
    assert specs_record(AEOT.fit_end_specs)["ot_coverage"] == {"display": "OT cell coverage", "goal": "max"}


def test_value_bounds_follow_the_goal():
    rows = []
    for goal in ("min", "max", None):
        row = table.Row("k", "gan", "standard", "mnist", "mlp", "failed", [], "m", goal,
                        table.SeedStats(0, None, None, None, None, None), 1)
        rows.append(row.value)
    assert rows == [math.inf, -math.inf, None]
