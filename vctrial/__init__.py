"""vctrial: virtual clinical trials and public-health scenarios on synthetic patients."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vctrial")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

MAX_REPLICATES = 10_000_000
"""Most replicates (simulated trials, draws, populations) one run may ask for; more are refused before
anything is allocated (``--replicates``, ``--draws``...)."""
