"""Datasets: loaders (a registry), preprocessing and the prepared on-disk form."""

from sidrec.data import amazon2014  # noqa: F401  (registers the loader)
from sidrec.data import interactions  # noqa: F401  (registers the loader)
from sidrec.data import lastfm  # noqa: F401  (registers the loader)
from sidrec.data import movielens  # noqa: F401  (registers the loader)
from sidrec.data import sequences, synthetic  # noqa: F401  (register the loaders)
from sidrec.data.base import RawDataset, available_datasets, load_dataset, register_dataset
from sidrec.data.prepared import EvalExamples, PreparedData
from sidrec.data.preprocess import k_core, prepare

__all__ = [
    "EvalExamples",
    "PreparedData",
    "RawDataset",
    "available_datasets",
    "k_core",
    "load_dataset",
    "prepare",
    "register_dataset",
]
