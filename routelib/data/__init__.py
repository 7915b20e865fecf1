"""Datasets: the dataset registry (:mod:`.registry`: the paper's 14 and dataset folders under the
data roots, each spec read by :mod:`.specfile`), the record schema and carve-out (:mod:`.schema`),
reading splits from local JSONL or the hub (:mod:`.loading`, :mod:`.hub`). The format is in
``docs/datasets.md``. The names below are the package's API."""
from routelib.data.loading import iter_datasets, load, local_path, subsample
from routelib.data.registry import PAPER_DATASETS, Registry, registry, roots
from routelib.data.schema import (DATASETS, DOMAINS, HOLDOUT_FRACTION, LOGICAL_SPLITS, RECORD_KEYS,
                                  TASK_TYPES, DataError, DatasetSpec, HubSpec, Record,
                                  has_train_split, holdout_group, in_holdout, physical_splits,
                                  read_jsonl, record_from_dict, resolve_split, spec)
