"""tricolor's performance harness, run from the repository root as `python -m perf.<module>`.

What `make perf` runs (`perf.run`): `inputs` (perf_analyzer's input data), `analyzer` (one
perf_analyzer level with its per-model and per-process breakdown), `paired` (concurrency 1
served vs in-process), `raw_limit` (the same ONNX with no server), `torchserve` (the peer,
with `closed_loop`), then `plots` and `report` (perf/RESULTS.md). `summary` is the typed record
they all write and read; `repository` makes overridden copies of model_repository for
experiments; `compare` tabulates experiments for EXPERIMENTS.md. `studies/` holds one-off
studies and their notes (the soak, the decode study).
"""
