"""Many runs of one kind: a grid of points (seeds, one swept parameter, a TOML grid), each an
ordinary run folder, trained on a Dask cluster (``engine``), summed up in one table
(``run``). ``mapscope sweep`` and ``mapscope mlp sweep`` are this package's command lines."""
