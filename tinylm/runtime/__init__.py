"""The runtime: the C sources that run a .bin, and their arithmetic in NumPy.

csrc/ (tinylm.c: the portable runtime, read top to bottom; the matrix kernels per CPU;
serve.c: the device loop every firmware shares), build.py (compiling them here), c_engine.py
(calling them through ctypes), fixedpoint.py, engine.py and sampler.py (the same integer
arithmetic in NumPy, which the tests hold the C to). Imports core, text and export.
"""
