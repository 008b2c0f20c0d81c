"""Simulated tiers: lensed arcs injected into synthetic or real hosts, with look-alike controls (`dhs simulate`).

Python API: `sim.build.simulate_tier(out, tier, rows, seed, SimConfig(...))`; every setting is a documented
field of `sim.simconfig.SimConfig`. Nothing is imported here, so `dhs --help` stays light.
"""
