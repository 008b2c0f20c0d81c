"""Human grading of the top candidates (`dhs grade ...`): the grades database (store), consensus and agreement
between graders (consensus), the graded export and report, and the loop back into `dhs catalog`,
`dhs train --mined` and `dhs evaluate --known-lenses`. Python API: `grade.store.open_store`."""
