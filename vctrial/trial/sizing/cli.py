"""The ``vctrial design`` command: its options and its handler."""

from __future__ import annotations

from vctrial.trial.sizing.inputs import _err, _int
from vctrial.trial.sizing.report import format_design
from vctrial.trial.sizing.simulation import run_design


#: option destinations passed to :func:`design` (values are parsed and checked there, so a mistake
#: stops with one line naming the option)
OPTIONS = ("alpha", "sided", "power", "allocation", "looks", "fractions", "spending", "gamma", "futility",
           "futility_gamma", "hazard_ratio", "hazard_ratio_ci", "hazard_ratio_breaks", "control_median",
           "control_hazard", "control_hazard_breaks", "dropout_rate", "dropout_breaks", "accrual_rate", "accrual_duration",
           "study_duration", "method", "information", "mean_difference", "sd", "sd_active", "dropout",
           "p_control", "p_active", "variance", "continuity", "visit_month")


def add_arguments(p) -> None:
    """The options of ``vctrial design`` (all read as text and checked by :func:`design`)."""
    p.add_argument("--endpoint", "-e", default="survival", metavar="survival|continuous|binary",
                   help="the primary endpoint (default survival)")
    g = p.add_argument_group("test and design")
    g.add_argument("--alpha", "-a", default="0.025", help="type I error (default 0.025, one-sided)")
    g.add_argument("--sided", default="one", metavar="one|two", help="one- or two-sided alpha (default one)")
    g.add_argument("--power", default="0.9", help="power, strictly between alpha and 1 (default 0.9)")
    g.add_argument("--allocation", default="1:1", metavar="ACTIVE:CONTROL",
                   help="randomization ratio, e.g. 2:1 or 2 (active patients per control patient; default 1:1)")
    g.add_argument("--looks", "-k", default=None, help="analyses, the final one included (default 1: a fixed design)")
    g.add_argument("--fractions", default=None, metavar="F1,...,1",
                   help="information fractions of the looks (events, or patients; default equally spaced)")
    g.add_argument("--spending", default="obf", metavar="obf|pocock|hsd|power",
                   help="alpha-spending family of the efficacy bounds (default obf)")
    g.add_argument("--gamma", default=None, help="hsd gamma (default -4) or power exponent")
    g.add_argument("--futility", default=None, metavar="obf|pocock|hsd|power",
                   help="non-binding futility bounds by this beta spending (beta = 1 - power)")
    g.add_argument("--futility-gamma", default=None, help="futility hsd gamma (default -2) or power exponent")
    s = p.add_argument_group("time-to-event (months; hazards and rates per month)")
    s.add_argument("--hazard-ratio", default=None, metavar="HR[,HR2,...]",
                   help="active/control hazard ratio; several values are pieces in time since randomization "
                        "(e.g. 1,0.6 with --hazard-ratio-breaks 4: an effect delayed 4 months)")
    s.add_argument("--hazard-ratio-ci", default=None, metavar="LOWER,UPPER",
                   help="a 95%% interval of the hazard ratio (e.g. from an earlier trial): also print the assurance, the "
                        "power averaged over it; the written protocol then simulates it (analysis.assurance)")
    s.add_argument("--hazard-ratio-breaks", default=None, metavar="M1,...", help="months where the hazard ratio changes")
    s.add_argument("--control-median", default=None, metavar="M[,...]", help="median time to event under control "
                   "(months; exponential pieces)")
    s.add_argument("--control-hazard", default=None, metavar="H[,...]", help="control hazard per month (pieces)")
    s.add_argument("--control-hazard-breaks", default=None, metavar="M1,...",
                   help="months where the control hazard changes")
    s.add_argument("--dropout-rate", default=None, metavar="D[,...]",
                   help="dropout hazard per month, both arms (default 0)")
    s.add_argument("--dropout-breaks", default=None, metavar="M1,...", help="months where the dropout hazard changes")
    s.add_argument("--accrual-rate", default=None, metavar="A[,...]",
                   help="patients per month in each accrual period: relative (scaled to the power) with "
                        "--study-duration, absolute without it (the study duration is then solved)")
    s.add_argument("--accrual-duration", default=None, metavar="M[,...]",
                   help="months of each accrual period (continuous and binary protocols: one period, default 12)")
    s.add_argument("--study-duration", default=None, metavar="M", help="months from first patient to the final analysis")
    s.add_argument("--method", default=None, metavar="schoenfeld|lachin-foulkes|ahr",
                   help="sample-size method (default lachin-foulkes, ahr with a changing hazard ratio)")
    s.add_argument("--information", default="h0-h1", metavar="h0-h1|h0",
                   help="ahr: information under H0 and H1 (gsDesign2's default) or H0 only (Schoenfeld on the AHR)")
    c = p.add_argument_group("continuous endpoint")
    c.add_argument("--mean-difference", default=None, help="active minus control mean")
    c.add_argument("--sd", default=None, help="standard deviation (common to both arms)")
    c.add_argument("--sd-active", default=None, help="standard deviation in the active arm, if different")
    b = p.add_argument_group("binary endpoint")
    b.add_argument("--p-control", default=None, help="proportion with the outcome under control")
    b.add_argument("--p-active", default=None, help="proportion with the outcome under the active treatment")
    b.add_argument("--variance", default=None, metavar="pooled|unpooled",
                   help="pooled: pooled under H0 and unpooled under H1 (Fleiss; default); unpooled: Wald")
    b.add_argument("--continuity-correction", dest="continuity", action="store_true",
                   help="Fleiss-Tytun-Ury continuity correction (fixed designs)")
    cb = p.add_argument_group("continuous and binary endpoints")
    cb.add_argument("--dropout", default=None, help="fraction lost before the visit; N enrolled = N analysed / (1 - F)")
    cb.add_argument("--visit-month", default=None, help="month of the outcome visit in the written protocol (default 6)")
    o = p.add_argument_group("output")
    o.add_argument("--out", "-o", default=None, metavar="DESIGN.yaml",
                   help="write the design as a protocol, with DESIGN_disease.yaml and DESIGN_cohort.yaml beside it "
                        "(never overwrites a file)")
    o.add_argument("--verify", default=None, metavar="N",
                   help="simulate N trials of the written protocol and print the calculated power next to the "
                        "simulated one with its 95%% Monte Carlo (Wilson) interval")
    o.add_argument("--seed", "-s", default="1", help="root random seed of --verify (default 1)")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def command(args, exec_options) -> str:
    """Run ``vctrial design`` from parsed arguments; returns the text to print."""
    if getattr(args, "resume", False):
        raise _err("--resume", "a design's verification keeps no part files to resume from")
    seed = _int("--seed", args.seed, 1)
    if not 0 <= seed < 2 ** 63:
        raise _err("--seed", f"must be between 0 and 2**63 - 1, got {args.seed!r}")
    kwargs = {k: getattr(args, k) for k in OPTIONS}
    if kwargs["variance"] is None and args.endpoint == "binary":
        kwargs["variance"] = "pooled"
    if args.endpoint != "survival" and kwargs["information"] == "h0-h1":
        kwargs["information"] = None  # the default of a survival-only option
    d = run_design(args.endpoint, out=args.out, verify_replicates=args.verify, seed=seed, exec_options=exec_options,
                   **kwargs)
    return format_design(d)
