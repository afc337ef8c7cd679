"""The trainer stage: ``run(cfg) -> ModelView | None``.

A light module on purpose: it loads the dataset manifest, picks the training
crops and checks the classes, and only then imports ``train`` (and with it
torch), so bad input fails in a fraction of a second with one line.
"""

from csc_common.views import DatasetView, ModelView, load

from csc_trainer.config import TrainConfig
from csc_trainer.io import check_classes, training_crop_entries


def run(cfg: TrainConfig, *, args: list[str] | None = None) -> ModelView | None:
    """Train as configured; returns the written model manifest (None when stopped by --stop-after).

    ``args`` (the command line) is recorded in the manifest's producer block.
    """
    ds = load(cfg.dataset, DatasetView)
    entries = training_crop_entries(ds, crop_ids=cfg.crop_ids)
    check_classes(cfg.class_list, entries)
    from csc_trainer.train import train  # torch is imported here, after the input checks

    return train(cfg, ds, entries, args=args)
