"""Real targets: known lenses and DR10 galaxies as a target list (`dhs catalog`), their Legacy Surveys cutouts as a
Phase 4c tier (`dhs cutouts`), and a loopback fake cutout service for tests and benchmarks.

Sits at the sim level of the layer stack: imports only stamps and the base modules (no torch).
"""
