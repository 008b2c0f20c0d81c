"""The GO/NO-GO review (`dhs review --data DATA [--run RUN] --out review.md`): a thin composer of the
public APIs of audit, train (loop steps, resume_check, bench) and evaluate. Python API:
`review.review.run_review`."""
