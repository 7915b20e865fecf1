"""Datasets: the record schema and dataset registry (:mod:`.schema`), reading splits from local
JSONL or the hub (:mod:`.loading`, :mod:`.hub`). The names below are the package's API."""
from routelib.data.loading import iter_datasets, load, subsample
from routelib.data.schema import (DATASETS, DOMAINS, HOLDOUT_FRACTION, LOGICAL_SPLITS, RECORD_KEYS,
                                  TASK_TYPES, DataError, DatasetSpec, Record, has_train_split,
                                  holdout_group, in_holdout, physical_splits, read_jsonl,
                                  record_from_dict, spec)
