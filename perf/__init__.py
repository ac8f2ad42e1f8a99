"""tricolor's performance harness, run from the repository root as `python -m perf.<module>`.

What `make perf` runs (`perf.run`): `inputs` (perf_analyzer's input data), `analyzer` (one
perf_analyzer level with its per-model and per-process breakdown), `paired` (concurrency 1
served vs in-process), `interleaved` (served vs the in-process pipeline, alternating rounds),
`raw_limit` (the same ONNX with no server), the peers `torchserve` and `litserve` (one
configuration at a time, `peers` alternating each with tricolor through `closed_loop`),
`label_bench`, then `plots` and `report` (perf/RESULTS.md); `quiet` judges every measurement's
machine load and keeps a busy run out of RESULTS.md. `ab` compares two commits' servers (run it
before merging a change on the request path). `summary` is the typed record
they all write and read; `repository` makes overridden copies of model_repository for
experiments; `compare` tabulates experiments for EXPERIMENTS.md. `studies/` holds one-off
studies and their notes (the soak, the decode study).
"""
