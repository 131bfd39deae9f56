"""``vctrial calibrate``: fit a disease file's free parameters to published figures.

The search is scipy's bounded nonlinear least squares (``scipy.optimize.least_squares``,
trust-region reflective) on the standardized residuals (simulated mean - published) / SE, plus
(value - prior mean) / prior SD for each prior. Why least squares rather than a black-box search
(Optuna, ABC): the targets are means with published standard errors, so the fit is a weighted
least-squares problem; with common random numbers (the same seed for every candidate) the
simulated means are smooth functions of the parameters, so a Gauss-Newton method needs tens of
evaluations where a black-box sampler needs thousands; and its Jacobian at the optimum gives the
Laplace approximation of the posterior, (J'J)^-1, for parameter draws.

Parameters are searched on their scale (log for positive ones), and the Jacobian is computed by
forward differences of ``method.step`` on that scale, all columns as one batch of jobs: in parallel
on Ray with ``--workers``. Every evaluated candidate's studies are kept as part files next to the
output, so ``--resume`` replays an interrupted search from them, and the result is the same.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
import yaml
from scipy import optimize

import vctrial
from vctrial.errors import SpecError
from vctrial.execute import ExecOptions, RunError, _ray_connected, _session, run_jobs
from vctrial.spec.protocol import Protocol
from vctrial.spec.study import CalibrationSpec, Study, disease_from, parameter_value, with_parameters
from vctrial.study.check import figure_dataset
from vctrial.study.evaluate import study_jobs

log = logging.getLogger("vctrial")


@dataclass
class _Search:
    """The objective with its evaluation cache (search-scale vector -> figure means and values)."""

    study: Study
    replicates: int
    seed: int
    options: ExecOptions
    budget: int
    cache: dict[tuple, dict[str, np.ndarray]] = field(default_factory=dict)
    order: list[tuple] = field(default_factory=list)
    bar: object = None

    @property
    def spec(self) -> CalibrationSpec:
        return self.study.spec

    def values(self, x: np.ndarray) -> dict[str, float]:
        """Parameter values (their own units) at a search-scale vector."""
        return {p.path: float(math.exp(v) if p.log_scale else v) for p, v in zip(self.spec.parameters, x)}

    def protocols(self, x: np.ndarray) -> dict[str, Protocol]:
        data = with_parameters(self.study.disease_data, disease_values(self.study, self.values(x)))
        try:
            disease = disease_from(data, Path(next(iter(self.study.protocols.values())).disease.path))
        except SpecError as exc:
            raise SpecError(str(self.study.path), "parameters", f"the candidate {self.values(x)} makes an invalid "
                            f"disease model: {exc.reason}") from None
        return {name: Protocol(p.path, p.spec, p.text, p.cohort, disease) for name, p in self.study.protocols.items()}

    def run(self, xs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Figure values (per replicate) of several candidates, simulating the new ones as one batch of jobs."""
        keys = [tuple(np.round(x, 12)) for x in xs]
        new = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if new:
            if len(self.order) + len(new) > self.budget:
                raise _Budget()
            jobs, owner = [], []
            for k in new:
                batch = study_jobs(self.study, self.protocols(np.array(k)))
                jobs += batch
                owner += [k] * len(batch)
            options = self.options
            if options.workers and options.workers > 1:  # split each candidate's studies over the workers too
                largest = max(j.patients for j in jobs) * self.replicates
                options = dataclasses.replace(options, chunk_patients=min(options.chunk_patients,
                                                                          -(-largest // options.workers)))
            quiet = log.level
            log.setLevel(max(quiet, logging.WARNING))
            try:
                results = run_jobs(jobs, self.replicates, self.seed, options)
            finally:
                log.setLevel(quiet)
            for k in new:
                self.cache[k] = {}
            for k, arrays in zip(owner, results):
                self.cache[k].update(arrays)
            self.order += new
            if self.bar is not None:
                self.bar.update(len(new))
        return [self.cache[k] for k in keys]

    def residuals(self, values: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        r = []
        for f in self.spec.targets:
            v = values[f.name]
            mean = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
            if not np.isfinite(mean):
                mean = 0.0 if f.measure in ("proportion", "cumulative_incidence") else 1e6
            r.append((mean - f.observed) / f.se)
        for p, xi in zip(self.spec.parameters, x):
            if p.prior is not None:
                centre = math.log(p.prior.mean) if p.log_scale else p.prior.mean
                r.append((xi - centre) / p.prior.sd)
        return np.asarray(r)


class _Budget(Exception):
    """The evaluation budget is spent."""


@dataclass
class Fit:
    """A finished calibration: the estimate, its approximate posterior, and the evaluations."""

    start: np.ndarray
    estimate: np.ndarray
    covariance: np.ndarray
    identified: np.ndarray
    objective_start: float
    objective: float
    evaluations: int
    status: str
    values_start: dict[str, np.ndarray]
    values_fit: dict[str, np.ndarray]
    draws: np.ndarray


def disease_values(study: Study, values: dict[str, float]) -> dict[str, float]:
    """Every number of the disease file a candidate sets: each parameter, and the numbers that scale
    with it (``scales_with``: multiplied by the parameter's value over its starting value)."""
    out = dict(values)
    for p in study.spec.parameters:
        start = float(parameter_value(study.disease_data, p.path))
        for other in p.scales_with:
            out[other] = float(parameter_value(study.disease_data, other)) * values[p.path] / start
    return out


def search_bounds(spec: CalibrationSpec) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([math.log(p.lower) if p.log_scale else p.lower for p in spec.parameters])
    hi = np.array([math.log(p.upper) if p.log_scale else p.upper for p in spec.parameters])
    return lo, hi


def start_vector(study: Study) -> np.ndarray:
    x = []
    for p in study.spec.parameters:
        v = float(parameter_value(study.disease_data, p.path))
        x.append(math.log(v) if p.log_scale else v)
    return np.array(x)


def fit(study: Study, replicates: int | None = None, seed: int | None = None,
        options: ExecOptions = ExecOptions(), progress: bool = True) -> Fit:
    """Search the parameters; see the module docstring."""
    from tqdm.auto import tqdm

    spec = study.spec
    assert isinstance(spec, CalibrationSpec)
    replicates = replicates or spec.replicates
    seed = spec.seed if seed is None else seed
    lo, hi = search_bounds(spec)
    x0 = np.clip(start_vector(study), lo, hi)
    step = spec.method.step
    k = len(x0)
    # k + 1 candidates are kept for the Jacobian at the fit (the Laplace approximation)
    search = _Search(study, replicates, seed, options, spec.method.max_evaluations - (k + 1))

    def jacobian_points(x: np.ndarray) -> list[np.ndarray]:
        pts = []
        for i in range(k):
            h = step if x[i] + step <= hi[i] else -step
            pts.append(x + h * np.eye(k)[i])
        return pts

    def residual(x: np.ndarray) -> np.ndarray:
        (v,) = search.run([x])
        return search.residuals(v, x)

    def jac(x: np.ndarray) -> np.ndarray:
        pts = jacobian_points(x)
        vals = search.run([x] + pts)
        r0 = search.residuals(vals[0], x)
        return np.stack([(search.residuals(v, p) - r0) / (p - x)[i] for i, (v, p) in enumerate(zip(vals[1:], pts))],
                        axis=1)

    bar = tqdm(total=spec.method.max_evaluations, desc="calibrating", unit="candidate", disable=not progress,
               dynamic_ncols=True)
    search.bar = bar
    status = ""
    with bar, _ray_for(options) as inner:
        search.options = inner
        r_start = residual(x0)
        (start_values,) = search.run([x0])
        for i, f in enumerate(spec.targets):
            if not np.isfinite(start_values[f.name]).any():
                raise SpecError(str(study.path), f"targets[{i}]", f"no simulated study gives {f.name} a value at "
                                "the starting parameters (a follow-up too short for it, an arm nobody enters, a "
                                "median not reached?): it cannot be fitted")
        try:
            # the search runs on the offset from the start (z = x - x0), so that scipy's relative step
            # tolerance (xtol (xtol + |z|)) measures moves, not the size of log rates
            res = optimize.least_squares(lambda z: residual(x0 + z), np.zeros(k), jac=lambda z: jac(x0 + z),
                                         bounds=(lo - x0, hi - x0), method="trf", x_scale=1.0,
                                         max_nfev=spec.method.max_evaluations, ftol=spec.method.tolerance,
                                         xtol=spec.method.tolerance, gtol=spec.method.tolerance)
            status = f"converged ({res.message.rstrip('.')})"
        except _Budget:
            status = (f"stopped: the budget of {spec.method.max_evaluations} evaluations is spent (the last {k + 1} "
                      "kept for the Jacobian at the fit)")
        best = min(search.order, key=lambda key: float(np.sum(search.residuals(search.cache[key], np.array(key)) ** 2)))
        x_hat = np.array(best)
        search.budget = spec.method.max_evaluations
        J = jac(x_hat)
    cov, identified = _laplace(J)
    rng = np.random.default_rng([int(seed), 0xCA1])
    draws = _draws(rng, x_hat, cov, identified, lo, hi, spec.method.draws)
    return Fit(start=x0, estimate=x_hat, covariance=cov, identified=identified,
               objective_start=float(np.sum(r_start ** 2)),
               objective=float(np.sum(search.residuals(search.cache[tuple(np.round(x_hat, 12))], x_hat) ** 2)),
               evaluations=len(search.order), status=status,
               values_start=search.cache[tuple(np.round(x0, 12))],
               values_fit=search.cache[tuple(np.round(x_hat, 12))], draws=draws)


class _ray_for:
    """Connect to (or start) Ray once for the whole search when the options ask for it."""

    def __init__(self, options: ExecOptions):
        self.options = options
        self.session = None

    def __enter__(self) -> ExecOptions:
        o = self.options
        wants = bool(o.workers) or o.address is not None
        if not wants or _ray_connected():
            return ExecOptions(workers=0 if not wants and not _ray_connected() else o.workers, progress=False,
                               out=o.out, resume=o.resume, chunk_patients=o.chunk_patients, shared_parts=True)
        self.session = _session(o, True)
        s = self.session.__enter__()
        log.info("calibrating %s", s.mode)
        return ExecOptions(workers=o.workers or s.limit, progress=False, out=o.out, resume=o.resume,
                           chunk_patients=o.chunk_patients, shared_parts=True)

    def __exit__(self, *exc) -> None:
        if self.session is not None:
            self.session.__exit__(*exc)


def _laplace(J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(J'J)^-1 on the search scale; a parameter the targets do not move is marked unidentified."""
    info = J.T @ J
    identified = np.diag(info) > 1e-8
    cov = np.full(info.shape, np.nan)
    idx = np.flatnonzero(identified)
    if idx.size:
        sub = info[np.ix_(idx, idx)]
        cov[np.ix_(idx, idx)] = np.linalg.pinv(sub)
    return cov, identified


def _draws(rng, x_hat, cov, identified, lo, hi, n: int) -> np.ndarray:
    """Draws from the normal approximation, reflected into the bounds; unidentified parameters stay at the estimate."""
    k = len(x_hat)
    out = np.tile(x_hat, (n, 1))
    idx = np.flatnonzero(identified)
    if n and idx.size:
        sub = cov[np.ix_(idx, idx)]
        w, v = np.linalg.eigh((sub + sub.T) / 2)
        root = v * np.sqrt(np.clip(w, 0.0, None))
        out[:, idx] = x_hat[idx] + rng.standard_normal((n, idx.size)) @ root.T
    for i in range(k):  # reflect at the bounds (twice covers all but absurdly wide spreads), then clip
        for _ in range(2):
            out[:, i] = np.where(out[:, i] < lo[i], 2 * lo[i] - out[:, i], out[:, i])
            out[:, i] = np.where(out[:, i] > hi[i], 2 * hi[i] - out[:, i], out[:, i])
        out[:, i] = np.clip(out[:, i], lo[i], hi[i])
    return out


def to_values(spec: CalibrationSpec, x: np.ndarray) -> np.ndarray:
    """Search-scale vectors (..., k) to parameter values."""
    logs = np.array([p.log_scale for p in spec.parameters])
    return np.where(logs, np.exp(x), x)


def fit_dataset(study: Study, f: Fit, replicates: int, seed: int) -> xr.Dataset:
    """The calibration result: targets (published, at the start, at the fit), parameters, draws."""
    spec = study.spec
    ds = figure_dataset(study, f.values_fit, seed, 0.95, None, "calibration")
    start = figure_dataset(study, f.values_start, seed, 0.95, None, "calibration")
    ds["start_mean"] = start["simulated_mean"].assign_attrs(long_name="mean over simulated studies at the starting values")
    ds["standardized_residual"] = ((ds.simulated_mean - ds.observed) / ds.observed_se).assign_attrs(
        long_name="(simulated mean - published) / published SE at the fit", units="1")
    names = [p.path for p in spec.parameters]
    est = to_values(spec, f.estimate)
    se_search = np.sqrt(np.diag(f.covariance))
    logs = np.array([p.log_scale for p in spec.parameters])
    z = 1.959963984540054
    lo_s, hi_s = search_bounds(spec)
    lo95 = to_values(spec, np.clip(f.estimate - z * se_search, lo_s, hi_s))  # the interval within the bounds
    hi95 = to_values(spec, np.clip(f.estimate + z * se_search, lo_s, hi_s))
    ds = ds.assign_coords(parameter=names, draw=np.arange(f.draws.shape[0]))
    ds["start_value"] = (("parameter",), to_values(spec, f.start), {"long_name": "value in the input disease file"})
    ds["estimate"] = (("parameter",), est, {"long_name": "calibrated value"})
    ds["se_search_scale"] = (("parameter",), se_search, {"long_name": "approximate posterior SD on the search scale "
                                                         "(log scale: relative SD)", "units": "1"})
    ds["interval_lower"] = (("parameter",), lo95, {"long_name": "95% interval of the Laplace approximation"})
    ds["interval_upper"] = (("parameter",), hi95, {"long_name": "95% interval of the Laplace approximation"})
    ds["lower_bound"] = (("parameter",), [p.lower for p in spec.parameters], {"long_name": "search bound"})
    ds["upper_bound"] = (("parameter",), [p.upper for p in spec.parameters], {"long_name": "search bound"})
    ds["log_scale"] = (("parameter",), logs, {"long_name": "searched on the log scale", "units": "1"})
    ds["identified"] = (("parameter",), f.identified, {"long_name": "the targets move this parameter", "units": "1"})
    ds["draws"] = (("draw", "parameter"), to_values(spec, f.draws),
                   {"long_name": "parameter draws from the Laplace approximation of the posterior"})
    n_res = len(spec.targets) + sum(p.prior is not None for p in spec.parameters)
    df = n_res - int(f.identified.sum())
    from scipy.stats import chi2

    ds.attrs.update({"fit_df": int(df), "fit_p_value": float(chi2.sf(f.objective, df)) if df > 0 else float("nan")})
    at_lo = np.isclose(f.estimate, search_bounds(spec)[0], rtol=0, atol=1e-9)
    at_hi = np.isclose(f.estimate, search_bounds(spec)[1], rtol=0, atol=1e-9)
    ds["at_bound"] = (("parameter",), np.where(at_lo, -1, np.where(at_hi, 1, 0)).astype(np.int8),
                      {"long_name": "the estimate is at its lower (-1) or upper (1) bound (0: inside)", "units": "1"})
    ds.attrs.update({"method": spec.method.name, "step": spec.method.step, "evaluations": f.evaluations,
                     "status": f.status, "objective_start": f.objective_start, "objective": f.objective,
                     "replicates": int(replicates),
                     "disease_file": str((Path(study.path).parent / spec.disease).resolve()),
                     "disease_text": (Path(study.path).parent / spec.disease).read_text(encoding="utf-8"),
                     "scales_with": json.dumps({p.path: list(p.scales_with) for p in spec.parameters})})
    return ds


def calibrated_disease_text(study: Study, ds: xr.Dataset, out_path: Path) -> str:
    """The disease file with the calibrated values and a ``calibration`` provenance block."""
    spec = study.spec
    values = {str(p): float(v) for p, v in zip(ds.parameter.values, ds.estimate.values)}
    data = with_parameters(study.disease_data, disease_values(study, values))
    data["calibration"] = {
        "calibration_file": str(study.path),
        "source_disease_file": spec.disease,
        "method": f"{spec.method.name} (scipy.optimize.least_squares, trf), step {spec.method.step:g}",
        "seed": int(ds.attrs["seed"]),
        "replicates": int(ds.attrs["replicates"]),
        "evaluations": int(ds.attrs["evaluations"]),
        "objective_start": round(float(ds.attrs["objective_start"]), 6),
        "objective": round(float(ds.attrs["objective"]), 6),
        "results_file": out_path.name,
        "vctrial_version": vctrial.__version__,
        "parameters": {str(p): {"start": float(s), "estimate": float(e)}
                       for p, s, e in zip(ds.parameter.values, ds.start_value.values, ds.estimate.values)},
        "targets": {str(n): {"published": float(o), "simulated": float(m), "source": str(src)}
                    for n, o, m, src in zip(ds.figure.values, ds.observed.values, ds.simulated_mean.values,
                                            ds.source.values) if np.isfinite(m)},
    }
    head = (f"# Written by vctrial calibrate from {spec.disease} with {Path(study.path).name}.\n"
            f"# The comments of the source file (where each fixed number comes from) are not repeated here:\n"
            f"# read them there. The calibration block records the targets, method, seed and fit.\n")
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


def format_fit(ds: xr.Dataset) -> str:
    """Printed report: every target against its simulated value, every parameter's move."""
    from vctrial.study.check import fmt

    lines = [f"{ds.attrs['name']}: {ds.attrs['evaluations']} evaluations of {ds.attrs['replicates']} simulated "
             f"studies each, seed {ds.attrs['seed']}; {ds.attrs['status']}",
             f"objective (sum of squared standardized residuals): {ds.attrs['objective_start']:.2f} at the start, "
             f"{ds.attrs['objective']:.2f} at the fit", _fit_line(ds), ""]
    rows = [["target", "measure", "published ± SE", "start", "fit ± MC SE", "z"]]
    for i, name in enumerate(ds.figure.values):
        m = str(ds.measure.values[i])
        rows.append([str(name), m, f"{fmt(m, float(ds.observed[i]))} ± {fmt(m, float(ds.observed_se[i]))}",
                     fmt(m, float(ds.start_mean[i])),
                     f"{fmt(m, float(ds.simulated_mean[i]))} ± {fmt(m, float(ds.mc_se[i]))}",
                     f"{float(ds.standardized_residual[i]):+.2f}"])
    rows.append([])
    rows.append(["parameter", "", "start", "estimate", "95% interval", "bounds"])
    for i, name in enumerate(ds.parameter.values):
        ok = bool(ds.identified[i])
        bound = {-1: " (at lower bound)", 1: " (at upper bound)"}.get(int(ds.at_bound[i]), "")
        rows.append([str(name), "", f"{float(ds.start_value[i]):.4g}", f"{float(ds.estimate[i]):.4g}{bound}",
                     f"[{float(ds.interval_lower[i]):.4g}, {float(ds.interval_upper[i]):.4g}]" if ok else "not identified",
                     f"[{float(ds.lower_bound[i]):g}, {float(ds.upper_bound[i]):g}]"])
    widths = [max(len(r[k]) for r in rows if len(r) > k) for k in range(6)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _fit_line(ds: xr.Dataset) -> str:
    """Whether the fit reproduces the targets within their published uncertainty (a chi-square test of the
    objective; Monte Carlo error of the simulated means is not in it)."""
    df, p = ds.attrs["fit_df"], ds.attrs["fit_p_value"]
    if df <= 0:
        return f"fit: as many free parameters as targets and priors ({df} degrees of freedom): no test of fit"
    verdict = ("consistent with the targets" if p >= 0.05
               else "the targets are NOT all reproduced within their published uncertainty")
    return f"fit: chi-square {ds.attrs['objective']:.2f} on {df} degrees of freedom, p = {p:.3g}: {verdict}"


def run_command(file: str, out: str, disease_out: str | None, replicates: int | None, seed: int | None,
                options: ExecOptions) -> tuple[xr.Dataset, Path]:
    """``vctrial calibrate``: check everything, search, write the results and the calibrated disease file.

    ``options.progress`` shows one bar over candidate evaluations."""
    from vctrial.results import check_outputs, write_netcdf, write_text
    from vctrial.spec.study import load_study

    study = load_study(file)
    if study.spec.kind != "calibration":
        raise SpecError(file, "kind", "vctrial calibrate takes a calibration file (validation files run with vctrial check)")
    out_path = Path(out)
    d_out = Path(disease_out) if disease_out else out_path.with_suffix(".yaml")
    check_outputs({"--out": out_path, "--disease-out": d_out}, [file])
    seed = study.spec.seed if seed is None else seed
    replicates = replicates or study.spec.replicates
    progress = options.progress
    options = ExecOptions(workers=options.workers, progress=False, address=options.address, out=out_path,
                          resume=options.resume, chunk_patients=options.chunk_patients,
                          threads_per_task=options.threads_per_task)
    f = fit(study, replicates, seed, options, progress=progress)
    ds = fit_dataset(study, f, replicates, seed)
    ds.attrs["disease_out"] = str(d_out.resolve())
    text = calibrated_disease_text(study, ds, out_path)
    try:
        disease_from(yaml.safe_load(text), d_out)
    except SpecError as exc:  # pragma: no cover - a bug, not a user error
        raise RunError(f"the calibrated disease file would be invalid: {exc}") from None
    write_text(text, d_out)
    write_netcdf(ds, out_path)
    return ds, d_out
