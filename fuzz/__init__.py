"""Coverage-guided fuzz targets (atheris), one per decoder reachable from the network.

Each `fuzz_*.py` module defines `SEEDS` (valid encodings the fuzzer mutates),
`ALLOWED` (the documented error types that decoder may raise on bad input) and
`one_input(data)`. `python -m fuzz.run` runs them (see `make fuzz`).
"""
