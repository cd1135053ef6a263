"""The stand soak's machinery (benchmarks/soak.py and tests/test_soak.py): `run_soak`."""
