"""The stand soak's machinery (benchmarks/soak.py and benchmarks/test_soak_short.py): `run_soak`."""
