"""`otlab table` (issue 17): rows that differ only by their model, several metrics per table, the json and
latex formats, plots of runs with a single evaluation point, and comparisons that say whether a difference is
real: the baseline / pairwise difference intervals against scipy (Welch) and an exact bootstrap enumeration,
the significance mark and its direction, rank stability. Hand-written result.json files, no training."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from otgan_lab import table

SPECS = {"modes_covered": {"display": "modes covered", "goal": "max"}, "w2": {"display": "W2", "goal": "min"}}
PROTOCOL = {"n_samples": 500, "sampler": "standard", "suites": {"points2d": {}}, "dataset": "grid25"}
# (method, model) -> per seed (modes_covered, w2): wgan_gp/mlp covers most modes, gan/resnet has the best W2
VALUES = {("gan", "mlp"): [(18.0, 0.90), (20.0, 0.80), (19.0, 0.85)],
          ("gan", "resnet"): [(22.0, 0.30), (23.0, 0.25), (21.0, 0.35)],
          ("wgan_gp", "mlp"): [(24.0, 0.40), (25.0, 0.42), (23.0, 0.47)]}


def write_run(root: Path, name: str, *, method: str, model: str, seed: int, metrics: dict | None = None,
              status: str = "completed", dataset: str = "grid25",
              curve: list[tuple[int, float]] | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    config = {"seed": seed, "method": {"name": method}, "dataset": {"name": dataset},
              "model": {"name": model}}
    rec: dict = {"status": status, "method": method, "dataset": dataset, "model": model,
                 "sampler": "standard", "seed": seed, "precision": "fp32", "overrides": [f"seed={seed}"],
                 "config": config, "wall_time": 5.0, "metric_specs": SPECS, "primary_metric": "modes_covered"}
    if status == "completed":
        protocol = {**PROTOCOL, "dataset": dataset}
        rec.update(steps=100, steps_per_sec=20.0, metrics=metrics, protocol=protocol,
                   samplers={"standard": {"metrics": metrics, "protocol": protocol}})
    else:
        rec["error"] = "RuntimeError: boom"
    (run / "result.json").write_text(json.dumps(rec))
    if curve is not None:
        lines = [{"step": s, "eval/modes_covered": v} for s, v in curve]
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Three configs x three seeds that differ only by method and model, one final evaluation point each,
    and one failed run."""
    root = tmp_path / "sweep"
    for (method, model), values in VALUES.items():
        for seed, (modes, w2) in enumerate(values):
            write_run(root, f"{method}_{model}_{seed}", method=method, model=model, seed=seed,
                      metrics={"modes_covered": modes, "w2": w2}, curve=[(100, modes)])
    write_run(root, "failed", method="wgan_gp", model="resnet", seed=0, status="failed")
    return root


def run_main(capsys, *argv: str) -> str:
    table.main([*map(str, argv)])
    return capsys.readouterr().out


def md_rows(md: str) -> list[dict[str, str]]:
    """The leaderboard of a markdown table as {header: cell} dicts (the first table only)."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    headers = [c.strip() for c in lines[0].strip("|").split(" | ")]
    body = []
    for line in lines[2:]:
        if line.startswith("| ---") or line.startswith("| row |"):
            break
        body.append(dict(zip(headers, (c.strip() for c in line.strip("|").split(" | ")))))
    return body


# ----------------------------------------------------------------------------------------------------------
# Rows, metrics, formats


def test_rows_that_differ_by_model_name_it(sweep: Path, capsys):
    rows = md_rows(run_main(capsys, sweep, "--format", "md"))
    done = [r for r in rows if r["status"] == "completed"]
    assert {(r["method"], r["model"]) for r in done} == set(VALUES)  # a model column tells the gan rows apart
    labels = table.row_labels(table.build_rows(table.load_measurements([sweep]), "modes_covered"))
    assert len(set(labels)) == len(labels) and "gan · resnet" in labels and "gan · mlp" in labels
    # --by method,model groups by both and shows the model column, even where only one model was run
    by = md_rows(run_main(capsys, sweep, "--by", "method,model", "--format", "md"))
    assert [(r["method"], r["model"]) for r in by if r["status"] == "completed"] == \
        [("wgan_gp", "mlp"), ("gan", "resnet"), ("gan", "mlp")]
    one_model = md_rows(run_main(capsys, sweep / "gan_mlp_0", sweep / "gan_mlp_1", "--by", "method,model",
                                 "--format", "md"))
    assert one_model[0]["model"] == "mlp"
    one_json = json.loads(run_main(capsys, sweep / "gan_mlp_0", sweep / "gan_mlp_1", "--by", "method,model",
                                   "--format", "json"))
    assert one_json[0]["label"] == "gan · mlp"  # the labels (plots, pairs) name what --by names too
    plain = md_rows(run_main(capsys, sweep / "gan_mlp_0", sweep / "gan_mlp_1", "--format", "md"))
    assert "model" not in plain[0]  # nothing varies: no model column unless asked for


def test_two_metrics_each_with_its_direction(sweep: Path, capsys):
    md = run_main(capsys, sweep, "--metric", "modes_covered,w2", "--format", "md")
    rows = md_rows(md)
    assert "modes covered ↑ mean ± std" in rows[0] and "W2 ↓ mean ± std" in rows[0]
    done = [r for r in rows if r["status"] == "completed"]
    # ordered by the first metric (modes, higher first)
    assert [r["method"] + "/" + r["model"] for r in done] == ["wgan_gp/mlp", "gan/resnet", "gan/mlp"]
    assert [r["W2 ↓ best"] for r in done] == ["0.4", "0.25", "0.8"]  # the min per row: W2 is lower-is-better
    assert [r["modes covered ↑ best"] for r in done] == ["25", "23", "20"]  # the max: higher is better
    parsed = list(csv.DictReader(io.StringIO(run_main(capsys, sweep, "--metric", "modes_covered,w2",
                                                      "--format", "csv"))))
    gan = next(r for r in parsed if r["model"] == "resnet" and r["status"] == "completed")
    assert gan["metric"] == "modes_covered" and float(gan["mean"]) == pytest.approx(22.0)
    assert float(gan["w2:mean"]) == pytest.approx(0.30) and float(gan["w2:std"]) == pytest.approx(0.05)
    # --goal per metric, in order; a second direction that disagrees with the record is taken as given
    flipped = md_rows(run_main(capsys, sweep, "--metric", "w2,modes_covered", "--goal", "max,auto",
                               "--format", "md"))
    assert flipped[0]["method"] == "gan" and flipped[0]["model"] == "mlp"  # highest W2 first
    with pytest.raises(SystemExit) as exit_:
        run_main(capsys, sweep, "--metric", "w2", "--goal", "up")
    assert exit_.value.code == 2 and "--goal" in capsys.readouterr().err


def test_json_format_is_rows_with_every_number(sweep: Path, capsys):
    out = run_main(capsys, sweep, "--metric", "modes_covered,w2", "--by", "method,model", "--format", "json",
                   "--baseline", "method=gan,model=mlp")
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == 4
    first = rows[0]
    assert (first["method"], first["model"], first["status"]) == ("wgan_gp", "mlp", "completed")
    assert first["seeds"] == [0, 1, 2]
    w2 = first["metrics"]["w2"]
    x = np.array([0.40, 0.42, 0.47])
    assert w2["goal"] == "min" and w2["values"] == x.tolist() and w2["n"] == 3
    assert w2["mean"] == pytest.approx(x.mean()) and w2["std"] == pytest.approx(x.std(ddof=1))
    assert first["vs_baseline"]["modes_covered"]["excludes_zero"] is True
    assert first["vs_baseline"]["modes_covered"]["verdict"] == "better"
    assert first["rank"]["rank"] == 1 and first["rank"]["per_seed"] == [1, 1, 1]
    baseline = next(r for r in rows if r["label"] == "gan · mlp")
    assert baseline["vs_baseline"] == {"modes_covered": "baseline", "w2": "baseline"}
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["metrics"]["w2"]["mean"] == "inf" and failed["metrics"]["modes_covered"]["mean"] == "-inf"
    assert "rank" not in failed and failed["notes"] == ["RuntimeError: boom"]


def test_latex_format_booktabs_bold_best_escaped(sweep: Path, capsys, tmp_path: Path):
    out = tmp_path / "t.tex"
    tex = run_main(capsys, sweep, "--metric", "modes_covered,w2", "--format", "latex", "--out", out)
    assert out.read_text() == tex
    lines = tex.splitlines()
    assert r"\begin{tabular}" in tex and [r"\toprule", r"\midrule", r"\bottomrule"] == \
        [x for x in lines if x in (r"\toprule", r"\midrule", r"\bottomrule")]
    assert r"wgan\_gp" in tex and "wgan_gp" not in tex.replace(r"wgan\_gp", "")
    body = {tuple(c.strip() for c in line.split(" & ")[:2]): line for line in lines if " & " in line}
    # the best of each metric in bold, by its own direction: most modes (wgan_gp/mlp), lowest W2 (gan/resnet)
    assert r"$\mathbf{24 \pm 1}$" in body[(r"wgan\_gp", "mlp")]
    assert r"$\mathbf{0.3 \pm 0.05}$" in body[("gan", "resnet")]
    assert tex.count(r"\mathbf") == 2
    assert r"\pm" in body[("gan", "mlp")] and r"\mathbf" not in body[("gan", "mlp")]


# ----------------------------------------------------------------------------------------------------------
# Differences with intervals


def test_welch_interval_matches_scipy():
    rng = np.random.default_rng(3)
    for na, nb in ((3, 3), (3, 5), (2, 4), (6, 2)):
        a, b = rng.normal(10, 2, na), rng.normal(11, 0.5, nb)
        d = table.difference(a, b, "min", "welch")
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        assert d.estimate == pytest.approx(a.mean() - b.mean())
        assert (d.low, d.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert table.difference([1.0], [2.0, 3.0], "min").low is None  # one seed: no interval, a reason
    assert table.difference([1.0], [2.0, 3.0], "min").reason == "one seed on a side"


def _exact_bootstrap_quantiles(a, b, qs):
    """Quantiles of mean(a*) - mean(b*) over every equally likely pair of resamples (enumerated)."""
    means_a = [np.mean(s) for s in itertools.product(a, repeat=len(a))]
    means_b = [np.mean(s) for s in itertools.product(b, repeat=len(b))]
    diffs = np.subtract.outer(means_a, means_b).ravel()
    return np.quantile(diffs, qs)


def test_bootstrap_interval_is_seeded_and_matches_the_exact_bootstrap():
    a, b = [30.0, 32.0, 35.5], [25.0, 26.0, 24.0, 29.0]
    d = table.difference(a, b, "min", "bootstrap")
    assert d == table.difference(a, b, "min", "bootstrap")  # deterministic
    low, high = _exact_bootstrap_quantiles(a, b, [0.025, 0.975])
    spread = high - low
    assert abs(d.low - low) < 0.05 * spread and abs(d.high - high) < 0.05 * spread
    assert d.excludes_zero and d.verdict == "worse"


def test_mark_exactly_when_the_interval_excludes_zero_and_verdict_follows_the_direction():
    apart, overlapping = ([1.0, 1.2, 0.9], [2.0, 2.1, 1.9]), ([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    for method in ("welch", "bootstrap"):
        for a, b in (apart, overlapping, apart[::-1]):
            for goal in ("min", "max", None):
                d = table.difference(a, b, goal, method)
                excludes = d.low > 0 or d.high < 0
                text = table.diff_text(d)
                assert d.excludes_zero == excludes and ("*" in text) == excludes, (method, a, b, goal, text)
                lower = d.high < 0  # a significantly lower than b
                expected = "" if not excludes or goal is None else \
                    ("better" if lower == (goal == "min") else "worse")
                assert d.verdict == expected and text.endswith(expected)
    assert table.difference(*apart, "min").verdict == "better"  # lower W2: better
    assert table.difference(*apart, "max").verdict == "worse"  # fewer modes: worse


def test_baseline_column_and_pairwise_matrix(sweep: Path, capsys):
    md = run_main(capsys, sweep, "--metric", "w2", "--by", "method,model", "--format", "md",
                  "--baseline", "method=gan,model=mlp", "--pairs")
    rows = {(r["method"], r["model"]): r for r in md_rows(md) if r["status"] == "completed"}
    cell = rows[("gan", "resnet")]["Δ vs baseline [95% CI]"]
    a, b = [v[1] for v in VALUES[("gan", "resnet")]], [v[1] for v in VALUES[("gan", "mlp")]]
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert cell == f"{np.mean(a) - np.mean(b):+.3g} [{ci.low:+.3g}, {ci.high:+.3g}] * better"
    assert rows[("gan", "mlp")]["Δ vs baseline [95% CI]"] == "baseline"
    matrix = md[md.index("### pairs"):]
    body = [line.strip("|").split(" | ") for line in matrix.splitlines() if line.startswith("| ")][2:]
    names = [row[0].strip().split(". ", 1)[1] for row in body]
    assert names == ["gan · resnet", "wgan_gp · mlp", "gan · mlp"]  # leaderboard order (lowest W2 first)
    for i, j in itertools.permutations(range(3), 2):  # row i - column j is minus row j - column i
        assert float(body[i][j + 1].split()[0]) == pytest.approx(-float(body[j][i + 1].split()[0]), abs=1e-3)
        assert ("*" in body[i][j + 1]) == ("*" in body[j][i + 1])
    assert body[0][2].strip().endswith("* better") and body[1][1].strip().endswith("* worse")
    with pytest.raises(SystemExit) as exit_:  # two gan rows: the baseline must name one
        run_main(capsys, sweep, "--by", "method,model", "--baseline", "method=gan")
    assert exit_.value.code == 2 and "matches 2 rows" in capsys.readouterr().err


def test_rows_of_another_dataset_are_not_compared(tmp_path: Path, capsys):
    for seed, (x, y) in enumerate([(1.0, 5.0), (2.0, 6.0)]):
        write_run(tmp_path, f"a{seed}", method="gan", model="mlp", seed=seed, metrics={"modes_covered": x})
        write_run(tmp_path, f"b{seed}", method="gan", model="mlp", seed=seed, dataset="ring8",
                  metrics={"modes_covered": y})
    rows = json.loads(run_main(capsys, tmp_path, "--format", "json", "--pairs"))
    assert [r["label"] for r in rows] == ["gan · grid25 · P1", "gan · ring8 · P2"]
    assert [r["pairs"] for r in rows] == [[{"vs": "gan · ring8 · P2", "metric": "modes_covered",
                                             "comparable": False}],
                                           [{"vs": "gan · grid25 · P1", "metric": "modes_covered",
                                             "comparable": False}]]
    assert all("rank" not in r for r in rows)  # one row per dataset: nothing to rank
    md = run_main(capsys, tmp_path, "--format", "md", "--pairs")
    assert "| 1. gan · grid25 · P1 | — | n/c |" in md


# ----------------------------------------------------------------------------------------------------------
# Rank stability


def test_rank_stability_matches_the_exact_bootstrap_probability():
    a, b, c = [1.0, 2.0, 4.0], [2.5, 3.0, 3.5], [10.0, 11.0, 12.0]
    ranks, kept = table.rank_stability([a, b, c], "min")
    assert ranks == [1, 2, 3]
    means_a = np.array([np.mean(s) for s in itertools.product(a, repeat=3)])
    means_b = np.array([np.mean(s) for s in itertools.product(b, repeat=3)])
    # c never comes near; a keeps rank 1 unless b* < a*, b keeps rank 2 only if a* < b* (ties share a rank)
    assert kept[0] == pytest.approx(np.less_equal.outer(means_a, means_b).mean(), abs=0.03)
    assert kept[1] == pytest.approx(np.less.outer(means_a, means_b).mean(), abs=0.03)
    assert kept[2] == 1.0
    assert table.rank_stability([a, b, c], "max")[0] == [3, 2, 1]
    seeds, per_seed = table.per_seed_ranks([{0: 1.0, 1: 5.0, 2: 2.0}, {0: 2.0, 1: 3.0}], "min")
    assert seeds == [0, 1] and per_seed == [[1, 2], [2, 1]]


def test_rank_column_in_the_table(sweep: Path, capsys):
    rows = md_rows(run_main(capsys, sweep, "--format", "md"))
    assert [r["rank (kept; per seed)"] for r in rows] == ["1 (100%; 1 1 1)", "2 (100%; 2 2 2)",
                                                          "3 (100%; 3 3 3)", ""]


# ----------------------------------------------------------------------------------------------------------
# Plots


def _captured_figure(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    return figures


def test_single_evaluation_point_draws_final_values_with_a_warning(sweep: Path, tmp_path: Path, monkeypatch):
    figures = _captured_figure(monkeypatch)
    rows = table.build_rows(table.load_measurements([sweep]), "modes_covered")
    with pytest.warns(UserWarning, match=r"single evaluation point of eval/modes_covered.*eval\.every"):
        out = table.plot_curves(rows, "modes_covered", tmp_path / "p.png", "modes covered", sweep="sweep")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ax,) = figures[-1].axes
    assert "modes covered" in ax.get_title() and "sweep" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["wgan_gp · mlp (n=3)", "gan · resnet (n=3)", "gan · mlp (n=3)"]  # distinct, with n
    dots = [line for line in ax.get_lines() if line.get_label() in legend]
    assert [len(line.get_xdata()) for line in dots] == [3, 3, 3] and all(d.get_marker() == "o" for d in dots)


def test_curves_have_markers_and_the_cli_says_why_a_plot_shows_final_values(sweep: Path, tmp_path: Path,
                                                                             monkeypatch, capsys):
    for run in ("gan_mlp_0", "gan_mlp_1"):
        lines = [{"step": s, "eval/modes_covered": v} for s, v in ((50, 10.0), (100, 12.0))]
        (sweep / run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    figures = _captured_figure(monkeypatch)
    rows = table.build_rows(table.load_measurements([sweep]), "modes_covered")
    table.plot_curves(rows, "modes_covered", tmp_path / "c.png")
    (ax,) = figures[-1].axes
    assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines())
    assert ax.get_xlabel() == "generator step"
    (sweep / "gan_mlp_0" / "metrics.jsonl").unlink()
    (sweep / "gan_mlp_1" / "metrics.jsonl").unlink()
    table.main([str(sweep), "--format", "csv", "--plot", str(tmp_path / "cli.png")])
    err = capsys.readouterr().err
    assert (tmp_path / "cli.png").is_file() and "single evaluation point" in err and "eval.every" in err
