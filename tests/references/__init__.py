"""Independent references the layers are tested against, each family in one module.

`numpy_*`: float64 NumPy written from the papers' equations and the official code, sharing
nothing with the package (`numpy_common` holds the building blocks they share).
`torch_modules`: the official PyTorch modules, re-written with their state-dict names, for the
parity tests and the benchmarks (which import this package with a `sys.path` insert).
"""
