"""The GO/NO-GO review (`dhs review --data DATA [--run RUN] --out review.md`) and the end-to-end demo
(`dhs demo --out DIR`). Python API: `review.review.run_review`, `review.demo.run_demo`."""
