"""Figures: real PNG images of the expected size, not blank, for every kind of results file vctrial
writes (single trials, group-sequential designs, sweeps, comparisons, three-arm and multi-arm
multi-stage trials, population scenarios); and the numbers the figures show agree with independent
computations from the Dataset."""

import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
import yaml  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402

from population_helpers import chronic_files, sir_file  # noqa: E402
from vctrial.execute import ExecOptions  # noqa: E402
from vctrial.plots import figures, save_figures  # noqa: E402
from vctrial.plots import population as popplots  # noqa: E402
from vctrial.plots import trial as trialplots  # noqa: E402
from vctrial.population.output import run_population  # noqa: E402
from vctrial.results import point, write_netcdf  # noqa: E402
from vctrial.spec.population import load_population  # noqa: E402
from vctrial.spec.protocol import load_protocol  # noqa: E402
from vctrial.trial.dataset import run_trial  # noqa: E402
from vctrial.trial.design import compare, run_sweep, sweep_axes  # noqa: E402

DATA = Path(__file__).parent / "data"
PROTOCOLS = Path(__file__).parent.parent / "protocols"
OPT = ExecOptions(workers=0, progress=False)
DPI = 110
PER_POINT = {"km_by_arm", "estimate", "state_occupancy"}
POP_PAIRS = {"population_time_series", "scenarios_vs_baseline", "cost_effectiveness_plane"}

# results file -> the figures `vctrial plot` must write for it
EXPECTED = {
    "biomarker": {"estimate", "biomarker_by_arm", "state_occupancy"},
    "group_sequential": PER_POINT | {"sequential_bounds", "stopping_by_look"},
    "sweep_two_dims": PER_POINT | {"power_vs_sided", "power_vs_hazard_ratio", "power_surface"},
    "sweep_one_dim": {"estimate", "biomarker_by_arm", "state_occupancy", "power_vs_shift"},
    "compare": PER_POINT | {"operating_characteristics", "sequential_bounds_group_sequential",
                            "stopping_by_look_group_sequential"},
    "population_chronic": POP_PAIRS,
    "population_infection": POP_PAIRS,
    "three_arm": PER_POINT | {"power_by_comparison"},
    "mams": PER_POINT | {"power_by_comparison", "sequential_bounds", "stopping_by_look"},
    "multiarm_sweep": {"estimate", "biomarker_by_arm", "state_occupancy", "power_by_comparison", "power_vs_shift"},
}
# the multi-arm multi-stage file: a dose without effect, a strong one, simultaneous stopping (so that the
# first dose is sometimes stopped with the trial when the second crosses its efficacy bound)
STRONG = [{"transition": t, "hazard_ratio": 0.55} for t in ("hhf", "hhf_recurrent", "cv_death", "cv_death_after_hhf")]
MAMS = {"sample_size": 900, "follow_up.target_events": 300, "looks.stopping": "simultaneous",
        "arms.low_dose.effects": [], "arms.high_dose.effects": STRONG}
# plotted by the command line in a subprocess (one file of each layout: a single design, stacked
# protocols, a population); the others through save_figures, the function the command calls, from
# the same netCDF files (each subprocess spends seconds importing the stack on a loaded machine)
BY_COMMAND = {"group_sequential", "compare", "population_chronic"}


def assert_real_png(path: Path, min_size=(300, 400), size=None):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert h >= min_size[0] and w >= min_size[1], (path, img.shape)
    if size is not None:
        assert (h, w) == size, (path, img.shape, size)
    rgb = img[..., :3]
    # not blank: many distinct colours and a good share of non-white pixels
    codes = np.round(rgb * 255).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    assert len(np.unique(codes)) > 20
    assert (rgb.mean(axis=2) < 0.95).mean() > 0.02


def _chronic_population(tmp: Path) -> xr.Dataset:
    """Three scenarios of the illness-death model with costs: a treatment and a prevention."""
    path = chronic_files(
        tmp, population={"size": 1500, "age_min": 40, "age_max": 80,
                         "regions": [{"name": "north", "share": 0.5}, {"name": "south", "share": 0.5}]},
        horizon_years=5, costs={"discount_rate_per_year": 0.03, "state_per_year": {"ill": 2000},
                                "per_event": {"onset": 500}},
        interventions=[{"name": "drug", "type": "treatment", "start_year": 1, "cost_per_year": 300,
                        "effects": [{"transition": "death_ill", "hazard_ratio": 0.5}]},
                       {"name": "prevent", "type": "treatment", "cost_per_year": 50,
                        "effects": [{"transition": "onset", "hazard_ratio": 0.7}]}],
        scenarios=[{"name": "current_care"}, {"name": "drug", "interventions": ["drug"]},
                   {"name": "prevention", "interventions": ["prevent"]}])
    return run_population(load_population(path), 8, 3, OPT)


def _t2d_three_arm(tmp: Path) -> Path:
    """The T2D protocol as placebo + two doses (2:1:1), small, written beside the test."""
    data = yaml.safe_load((PROTOCOLS / "t2d_hba1c.yaml").read_text())
    data.update(cohort=str((PROTOCOLS / data["cohort"]).resolve()), sample_size=120,
                disease=str((PROTOCOLS / data["disease"]).resolve()))
    data["arms"] = [{"name": "placebo", "allocation": 2},
                    {"name": "low", "allocation": 1, "effects": [{"biomarker": "hba1c", "shift": -0.3}]},
                    {"name": "high", "allocation": 1, "effects": [{"biomarker": "hba1c", "shift": -0.5}]}]
    data["randomization"]["block_size"] = 8
    path = tmp / "t2d_three_arm.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _infection_population(tmp: Path) -> xr.Dataset:
    """SIR with deaths, a utility loss while infectious, and costs; vaccination against none."""
    path = sir_file(tmp, size=2000, horizon_years=0.25,
                    interventions=[{"name": "v", "type": "vaccination", "efficacy_infection": 0.6,
                                    "coverage": 0.5, "cost_per_dose": 40}],
                    scenarios=[{"name": "none"}, {"name": "vaccinate", "interventions": ["v"]}],
                    costs={"discount_rate_per_year": 0.0, "per_event": {"infection": 150, "death": 20000}})
    data = yaml.safe_load(path.read_text())
    data["infection"]["fatality"] = {"age_groups": [0, 200], "probability": [0.01]}
    data["infection"]["utility"] = {"infectious": 0.5}
    data["outputs"]["interval_days"] = 7
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return run_population(load_population(path), 10, 4, OPT)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    """Every kind of results file, simulated small and written as netCDF."""
    tmp = tmp_path_factory.mktemp("results")
    datasets = {
        "biomarker": run_trial(load_protocol(DATA / "biomarker_change.yaml"), 30, seed=1, options=OPT),
        "group_sequential": run_trial(load_protocol(PROTOCOLS / "hf_outcomes_gs.yaml",
                                                    {"sample_size": 600, "follow_up.target_events": 150}),
                                      60, seed=2, options=OPT),
        "sweep_two_dims": run_sweep(DATA / "event_driven.yaml", sweep_axes(DATA / "event_driven.yaml", [
            ("analysis.sided", ["one", "two"]), ("arms.active.effects.0.hazard_ratio", [1.0, 0.7])]),
            30, 3, OPT),
        "sweep_one_dim": run_sweep(DATA / "biomarker_change.yaml", sweep_axes(DATA / "biomarker_change.yaml", [
            ("arms.active.effects.0.shift", [0.0, -0.2, -0.4])]), 30, 3, OPT),
        "compare": compare([DATA / "event_driven.yaml", DATA / "group_sequential.yaml"], 30, 1, OPT),
        "three_arm": run_trial(load_protocol(PROTOCOLS / "hf_three_arm.yaml", {"sample_size": 600}), 40, seed=1,
                               options=OPT),
        "mams": run_trial(load_protocol(PROTOCOLS / "hf_mams.yaml", MAMS), 40, seed=3, options=OPT),
    }
    t2d = _t2d_three_arm(tmp)
    datasets["multiarm_sweep"] = run_sweep(t2d, sweep_axes(t2d, [("arms.low.effects.0.shift", [0.0, -0.3, -0.6])]),
                                           30, 4, OPT)
    (tmp / "chronic").mkdir()
    (tmp / "infection").mkdir()
    datasets["population_chronic"] = _chronic_population(tmp / "chronic")
    datasets["population_infection"] = _infection_population(tmp / "infection")
    return {name: write_netcdf(ds, tmp / f"{name}.nc") for name, ds in datasets.items()}


@pytest.fixture(scope="module")
def plotted(results, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess | None, Path]]:
    """Figures of every results file: `vctrial plot FILE --out DIR` (side by side) or save_figures."""
    out = tmp_path_factory.mktemp("figures")
    procs = {}
    for name in BY_COMMAND:
        cmd = [sys.executable, "-m", "vctrial.cli", "plot", str(results[name]), "--out", str(out / name),
               "--dpi", str(DPI)]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = {}
    for name in set(results) - BY_COMMAND:
        save_figures(_open(results[name]), out / name, dpi=DPI)
        done[name] = (None, out / name)
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        done[name] = (subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr), out / name)
    return done


def _open(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_plots_of_every_kind_of_file_are_the_figures_it_allows_as_real_images(results, plotted, name):
    proc, folder = plotted[name]
    if proc is not None:
        assert proc.returncode == 0, proc.stderr
    written = {p.stem for p in folder.glob("*.png")}
    assert written == EXPECTED[name]
    assert not list(folder.glob(".*.tmp"))
    sizes = {k: tuple(int(round(v * DPI)) for v in fig.get_size_inches()[::-1])
             for k, fig in figures(_open(results[name])).items()}
    for p in folder.glob("*.png"):
        assert_real_png(p, size=sizes[p.stem])
        assert proc is None or f"wrote {p}" in proc.stdout


def _error_bars(ax, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, lower and upper ends of the error bars of the container labelled ``label``."""
    (container,) = [c for c in ax.containers if c.get_label() == label]
    segments = container.lines[2][0].get_segments()
    x = np.array([s[0][0] for s in segments])
    lo = np.array([min(s[0][1], s[1][1]) for s in segments])
    hi = np.array([max(s[0][1], s[1][1]) for s in segments])
    return x, lo, hi


def test_power_against_a_swept_key_shows_rejection_rates_with_wilson_intervals(results):
    ds = _open(results["sweep_two_dims"])
    fig = trialplots.power_figure(ds, "hazard_ratio")
    ax = fig.axes[0]
    for sided in ds["sided"].values:
        label = f"sided={sided}"
        (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == f"power:{label}"]
        reject = ds["reject"].sel(sided=sided).transpose("hazard_ratio", "replicate").values.astype(bool)
        k, n = reject.sum(axis=1), reject.shape[1]
        assert np.allclose(line.get_ydata(), k / n)
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        _, bar_lo, bar_hi = _error_bars(ax, f"_power:{label}")
        assert np.allclose(bar_lo, lo, atol=1e-9) and np.allclose(bar_hi, hi, atol=1e-9)
    assert "Rejection rate" in ax.get_ylabel()  # HR 1 is a null point: type I error, the others power
    assert ax.get_xlabel().startswith("hazard_ratio")


def test_a_sweep_of_many_points_draws_its_first_point_and_says_so(tmp_path):
    axes = sweep_axes(DATA / "event_driven.yaml", [("sample_size", [200, 250, 300, 350, 400, 450, 500])])
    ds = run_sweep(DATA / "event_driven.yaml", axes, 8, 5, OPT)
    figs = figures(ds)
    assert set(figs) == PER_POINT | {"power_vs_sample_size"}
    assert "first of 7 sweep points (sample_size=200)" in figs["estimate"].get_suptitle()
    assert len([a for a in figs["km_by_arm"].axes if a.get_visible()]) == 1
    figs = figures(ds.isel(sample_size=slice(0, 3)))  # few points: a panel each
    assert len([a for a in figs["km_by_arm"].axes if a.get_visible()]) == 3
    assert "one panel per sweep point" in figs["estimate"].get_suptitle()


def test_a_sweep_over_the_analysis_draws_each_point_on_its_own_effect_scale(tmp_path):
    data = yaml.safe_load((DATA / "event_driven.yaml").read_text())
    data.update(cohort=str(DATA / data["cohort"]), disease=str(DATA / data["disease"]))
    data["analysis"]["tau_months"] = 24
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    ds = run_sweep(path, sweep_axes(path, [("analysis.method", ["logrank", "rmst"])]), 8, 6, OPT)
    figs = figures(ds)
    assert "power_vs_analysis_method" in figs
    hr, rmst = figs["estimate"].axes[:2]
    assert hr.get_xscale() == "log" and "hazard ratio" in hr.get_xlabel()
    assert rmst.get_xscale() == "linear" and "restricted mean survival time" in rmst.get_xlabel()
    assert rmst.get_xlabel().endswith("(months)")
    power = figs["power_vs_analysis_method"].axes[0]
    assert [t.get_text() for t in power.get_xticklabels()] == ["logrank", "rmst"]  # categories


def test_stopping_distribution_by_look_counts_every_trial_once_by_why_it_stopped(results):
    ds = _open(results["group_sequential"])
    fig = trialplots.stopping_figure(ds)
    ax = fig.axes[0]
    n = ds.sizes["replicate"]
    stop, reason, reject = ds["stop_look"].values, ds["stop_reason"].values, ds["reject"].values.astype(bool)
    looks = ds["look"].values
    heights = {}
    for patch in ax.patches:
        look = int(round(patch.get_x() + patch.get_width() / 2))
        heights[(patch.get_gid(), look)] = patch.get_height()
    total = 0.0
    for i, k in enumerate(looks):
        expected = {"stopped for efficacy": ((stop == k) & (reason == 1)).sum(),
                    "stopped for futility": ((stop == k) & (reason == 2)).sum(),
                    "final analysis, null rejected": ((stop == k) & (reason == 0) & reject).sum(),
                    "final analysis, null not rejected": ((stop == k) & (reason == 0) & ~reject).sum(),
                    "continued to the next look": (stop > k).sum()}
        for what, count in expected.items():
            assert heights.get((what, int(k)), 0.0) == pytest.approx(100 * count / n)
        total += sum(v for (what, kk), v in heights.items() if kk == k and what != "continued to the next look")
        # the bar at a look is every trial that reached it
        assert sum(v for (_, kk), v in heights.items() if kk == k) == pytest.approx(100 * (stop >= k).mean())
    assert total == pytest.approx(100.0)
    assert {"stopped for efficacy", "stopped for futility"} <= {w for w, _ in heights}


def test_z_paths_end_at_each_trials_stopping_look_against_the_bounds(results):
    ds = _open(results["group_sequential"])
    fig = trialplots.sequential_bounds_figure(ds)
    ax = fig.axes[0]
    paths = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("path:")]
    assert len(paths) == min(trialplots.PATHS, ds.sizes["replicate"])
    for r, ln in enumerate(paths):
        k = int(ds["stop_look"].values[r])
        assert len(ln.get_xdata()) == k
        assert np.allclose(ln.get_ydata(), ds["look_z"].values[r, :k])
    (eff,) = [ln for ln in ax.get_lines() if ln.get_gid() == "efficacy_bound"]
    assert np.allclose(eff.get_ydata(), np.median(ds["efficacy_bound"].values, axis=0))
    assert any(ln.get_gid() == "futility_bound" for ln in ax.get_lines())
    without = point(_open(results["compare"]).sel(protocol="group_sequential"))  # no futility rule
    lines = trialplots.sequential_bounds_figure(without).axes[0].get_lines()
    gids = {ln.get_gid() for ln in lines}
    assert "efficacy_bound" in gids and "futility_bound" not in gids


def test_compare_figure_shows_each_protocols_power_duration_and_events(results):
    ds = _open(results["compare"])
    fig = trialplots.operating_characteristics_figure(ds)
    power_ax, duration_ax = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in power_ax.get_yticklabels()] == ["event_driven", "group_sequential"]
    for i, label in enumerate(ds["protocol"].values):
        reject = ds["reject"].sel(protocol=label).values.astype(bool)
        (c,) = [c for c in power_ax.containers if c.get_label() == f"_oc:rejection:{label}"]
        assert c.lines[0].get_xdata()[0] == pytest.approx(reject.mean())
        (c,) = [c for c in duration_ax.containers if c.get_label() == f"_oc:duration:{label}"]
        assert c.lines[0].get_xdata()[0] == pytest.approx(ds["duration_months"].sel(protocol=label).values.mean())
    assert "Expected events" in fig.axes[2].get_xlabel()


def _wilson(hits: np.ndarray) -> tuple[float, float, float]:
    k, n = int(np.sum(hits)), np.size(hits)
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return k / n, lo, hi


@pytest.mark.parametrize("name", ["three_arm", "mams"])
def test_power_by_comparison_bars_are_each_arms_rejection_rate_and_the_trials(results, name):
    ds = _open(results[name])
    ax = trialplots.power_by_comparison_figure(ds).axes[0]
    bars = {p.get_gid(): p for p in ax.patches}
    reject = ds["reject"].transpose("replicate", "comparison").values.astype(bool)
    null = ds["comparison_null"].values.astype(bool)
    expected = {f"comparison:{arm}": _wilson(reject[:, i]) for i, arm in enumerate(ds["comparison"].values)}
    expected["disjunctive"] = _wilson(reject.any(axis=1))
    expected["conjunctive"] = _wilson(reject[:, ~null].all(axis=1))
    if null.any():
        expected["fwer_null"] = _wilson(reject[:, null].any(axis=1))
    assert set(bars) == set(expected)
    for gid, (rate, lo, hi) in expected.items():
        assert bars[gid].get_height() == pytest.approx(rate)
        _, bar_lo, bar_hi = _error_bars(ax, f"_interval:{gid}")
        assert bar_lo[0] == pytest.approx(max(lo, 0.0), abs=1e-9) and bar_hi[0] == pytest.approx(hi, abs=1e-9)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ("low_dose\n(type I error)" in ticks) == bool(null[0]) and "high_dose\n(power)" in ticks


@pytest.mark.parametrize("name", ["three_arm", "mams"])
def test_estimate_has_a_panel_per_comparison_with_its_own_truth(results, name):
    ds = _open(results[name])
    fig = trialplots.estimate_figure(ds)
    panels = {ax.get_gid(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {f"estimate:{arm}" for arm in ds["comparison"].values}
    for arm in ds["comparison"].values:
        ax = panels[f"estimate:{arm}"]
        one = ds.sel(comparison=arm)
        est = one["estimate"].values
        assert sum(p.get_height() for p in ax.patches) == np.sum(np.isfinite(est) & (est > 0))
        (truth,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("true effect")]
        assert truth.get_xdata()[0] == pytest.approx(np.exp(np.mean(np.log(one["true_effect"].values))))
        rate = one["reject"].values.mean()
        what = "type I error" if int(one["comparison_null"]) else "power"
        assert ax.get_title().startswith(f"{arm} vs control\n{what} {rate:.3f} (95% MC")
    assert "one panel per comparison" in fig.get_suptitle()


def test_mams_bounds_and_paths_have_a_panel_per_comparison(results):
    ds = _open(results["mams"])
    fig = trialplots.sequential_bounds_figure(ds)
    panels = {ax.get_gid(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"bounds:low_dose", "bounds:high_dose"}
    for arm in ds["comparison"].values:
        ax, one = panels[f"bounds:{arm}"], ds.sel(comparison=arm)
        paths = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("path:")]
        assert len(paths) == min(trialplots.PATHS, ds.sizes["replicate"])
        for r, ln in enumerate(paths):
            k = int(one["stop_look"].values[r])
            assert np.allclose(ln.get_ydata(), one["look_z"].values[r, :k])
        (eff,) = [ln for ln in ax.get_lines() if ln.get_gid() == "efficacy_bound"]
        assert np.allclose(eff.get_ydata(), np.median(one["efficacy_bound"].values, axis=0))
        shown = one["stop_reason"].values[:len(paths)]
        marks = [ln for ln in ax.get_lines() if ln.get_gid() == "outcome:stopped with the trial"]
        assert sum(len(m.get_xdata()) for m in marks) == (shown == 3).sum()
    assert (ds["stop_reason"].sel(comparison="low_dose").values[:trialplots.PATHS] == 3).any()  # drawn above


def test_mams_stopping_by_look_counts_each_comparison_once_by_why_it_stopped(results):
    ds = _open(results["mams"])
    fig = trialplots.stopping_figure(ds)
    panels = {ax.get_gid(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"stopping:low_dose", "stopping:high_dose"}
    n = ds.sizes["replicate"]
    for arm in ds["comparison"].values:
        one = ds.sel(comparison=arm)
        stop, reason, reject = one["stop_look"].values, one["stop_reason"].values, one["reject"].values.astype(bool)
        heights = {(p.get_gid(), int(round(p.get_x() + p.get_width() / 2))): p.get_height()
                   for p in panels[f"stopping:{arm}"].patches}
        for k in ds["look"].values:
            expected = {"stopped for efficacy": ((stop == k) & (reason == 1)).sum(),
                        "stopped for futility": ((stop == k) & (reason == 2)).sum(),
                        "stopped with the trial": ((stop == k) & (reason == 3)).sum(),
                        "final analysis, null rejected": ((stop == k) & (reason == 0) & reject).sum(),
                        "final analysis, null not rejected": ((stop == k) & (reason == 0) & ~reject).sum(),
                        "continued to the next look": (stop > k).sum()}
            for what, count in expected.items():
                assert heights.get((what, int(k)), 0.0) == pytest.approx(100 * count / n)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "stopped with the trial" in legend


def test_power_against_a_swept_key_of_a_multiarm_protocol_has_a_line_per_comparison(results):
    ds = _open(results["multiarm_sweep"])
    ax = trialplots.power_figure(ds, "shift").axes[0]
    reject = ds["reject"].transpose("shift", "replicate", "comparison").values.astype(bool)
    for i, arm in enumerate([*ds["comparison"].values, "any rejected"]):
        hits = reject.any(axis=2) if arm == "any rejected" else reject[:, :, i]
        (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == f"power:{arm}"]
        assert np.allclose(line.get_ydata(), hits.mean(axis=1))
        lo, hi = proportion_confint(hits.sum(axis=1), hits.shape[1], alpha=0.05, method="wilson")
        _, bar_lo, bar_hi = _error_bars(ax, f"_power:{arm}")
        assert np.allclose(bar_lo, lo, atol=1e-9) and np.allclose(bar_hi, hi, atol=1e-9)
    # the effect-free point of the low dose (shift 0) is drawn as its type I error
    null = ds["comparison_null"].sel(comparison="low").values.astype(bool)
    assert null.tolist() == [True, False, False]
    (hollow,) = [ln for ln in ax.get_lines() if ln.get_gid() == "null:low"]
    assert np.allclose(hollow.get_ydata(), reject[null, :, 0].mean(axis=1))
    (none,) = [ln for ln in ax.get_lines() if ln.get_gid() == "null:high"]
    assert len(none.get_xdata()) == 0


def test_the_power_surface_of_a_multiarm_sweep_is_its_disjunctive_power(tmp_path):
    path = _t2d_three_arm(tmp_path)
    ds = run_sweep(path, sweep_axes(path, [("arms.low.effects.0.shift", [0.0, -0.6]), ("sample_size", [80, 120])]),
                   12, 5, OPT)
    fig = trialplots.power_surface_figure(ds)
    shown = [float(t.get_text().split("\n")[0]) for t in fig.axes[0].texts]
    any_rejected = ds["reject"].any("comparison").mean("replicate").transpose("shift", "sample_size").values
    assert np.allclose(shown, any_rejected.ravel(), atol=0.005)
    assert "Any comparison rejected" in fig.axes[1].get_ylabel()


def test_a_multiarm_sweeps_estimate_has_a_row_per_point_and_a_panel_per_comparison(results):
    ds = _open(results["multiarm_sweep"])
    fig = trialplots.estimate_figure(ds)
    panels = {ax.get_gid(): ax for ax in fig.axes if ax.get_visible()}
    assert len(panels) == ds.sizes["shift"] * ds.sizes["comparison"]
    for shift in ds["shift"].values:
        for arm in ds["comparison"].values:
            ax = panels[f"estimate:shift={shift:g}:{arm}"]
            est = ds["estimate"].sel(shift=shift, comparison=arm).values
            assert sum(p.get_height() for p in ax.patches) == np.isfinite(est).sum()
            assert ax.get_title().startswith(f"shift={shift:g}: {arm} vs placebo")


def test_population_prevalence_is_the_share_of_all_the_living(results):
    ds = _open(results["population_chronic"])
    prev = popplots.totals(ds, "prevalence").values
    counts = ds["state_count"]
    expected = (counts.sel(state="ill") / (counts.sel(state="ill") + counts.sel(state="well")))
    assert np.allclose(prev, expected.transpose("scenario", "replicate", "time").values)
    incidence = popplots.totals(ds, "incidence").values
    assert np.allclose(incidence, ds["events"].sel(event="onset").transpose("scenario", "replicate", "time").values)


def test_a_single_scenario_population_has_only_the_time_series(results):
    ds = _open(results["population_chronic"]).isel(scenario=[0])
    figs = figures(ds)
    assert set(figs) == {"population_time_series"}
    assert [ln.get_gid() for ln in figs["population_time_series"].axes[0].get_lines()] == ["incidence:current_care"]


def test_cost_effectiveness_plane_shows_paired_differences_and_the_threshold_line(results):
    ds = _open(results["population_chronic"])
    ds.attrs["willingness_to_pay_per_qaly"] = 50_000.0
    fig = popplots.cost_effectiveness_figure(ds)
    ax = fig.axes[0]
    q = ds["qalys"].sum(["time", "age_group", "region"]).values
    c = ds["costs"].sum(["time", "age_group", "region"]).values
    for s, name in enumerate(ds["scenario"].values[1:], start=1):
        (dots,) = [col for col in ax.collections if col.get_gid() == f"replicates:{name}"]
        assert np.allclose(dots.get_offsets(), np.column_stack([q[s] - q[0], c[s] - c[0]]))
        (mean,) = [cn for cn in ax.containers if cn.get_label().startswith(f"{name}:")]
        x, y = mean.lines[0].get_xydata()[0]
        assert x == pytest.approx((q[s] - q[0]).mean()) and y == pytest.approx((c[s] - c[0]).mean())
    (wtp,) = [ln for ln in ax.get_lines() if ln.get_gid() == "wtp"]
    xs, ys = wtp.get_xdata(), wtp.get_ydata()
    assert (ys[1] - ys[0]) / (xs[1] - xs[0]) == pytest.approx(50_000.0)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("prevention: dominant") for t in labels)  # cheaper prevention saves costs
    assert any(t.startswith("drug: ICER") for t in labels)


def test_a_population_without_costs_or_qaly_differences_draws_no_plane(results):
    ds = _open(results["population_chronic"])
    ds["costs"][:] = 0.0
    ds["qalys"][:] = ds["qalys"].isel(scenario=0)  # every scenario as the baseline
    figs = figures(ds)
    assert set(figs) == {"population_time_series", "scenarios_vs_baseline"}
    assert "zero throughout, not drawn: costs" in figs["population_time_series"].get_suptitle()
    assert len([a for a in figs["population_time_series"].axes if a.get_visible()]) == 3


def test_plot_of_a_file_that_is_not_netcdf_exits_2(tmp_path):
    bad = tmp_path / "x.nc"
    bad.write_text("not netcdf")
    proc = subprocess.run([sys.executable, "-m", "vctrial.cli", "plot", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and str(bad) in proc.stderr and "Traceback" not in proc.stderr
