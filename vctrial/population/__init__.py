"""The public-health model: a synthetic population stepped by numba kernels, with interventions
delivered by Mesa region and clinic agents, compared across scenarios with common random numbers."""
