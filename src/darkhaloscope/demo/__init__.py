"""`dhs demo`: the whole toolkit on data it makes itself, in one command, on a laptop CPU.

The top layer below the CLI: it composes the public APIs of sim, audit, train, evaluate and review,
one function per stage (`demo.stages`), run in order by `demo.run.run_demo`. Exercise: `dhs demo --quick`.
"""
