"""TEMPORARY: the names `gedidata.stages.extract` still imports from here.

The old ``store/schema.py`` was split into `gedidata.domain.schema` (the layout) and
`gedidata.store.samples_h5` (HDF5 files). Remove this module at merge, once
stages/extract imports those two directly.
"""

from gedidata.domain.schema import Sample, SampleBuffer
from gedidata.store.samples_h5 import check_file, write_samples

__all__ = ["Sample", "SampleBuffer", "check_file", "write_samples"]
