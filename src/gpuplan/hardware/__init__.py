"""Hardware catalog: accelerator specs in base units (see :mod:`gpuplan.hardware.catalog`)."""

from gpuplan.hardware.catalog import CatalogError, GpuSpec, get_gpu, load_catalog

__all__ = ["CatalogError", "GpuSpec", "get_gpu", "load_catalog"]
