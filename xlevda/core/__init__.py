"""Torch-only numerics. Nothing in this package imports xarray or dask."""
