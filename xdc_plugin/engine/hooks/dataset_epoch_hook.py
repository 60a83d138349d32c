"""Tell the train dataset the epoch, so that its samples are seeded by
(seed, epoch, index) and a resumed run draws what the uninterrupted one
would have drawn."""
from mmengine.hooks import Hook
from mmengine.runner import Runner

from xdc_plugin.registry import HOOKS


@HOOKS.register_module()
class DatasetEpochHook(Hook):
    """Before each training epoch, ``train_dataloader.dataset.set_epoch``
    (``AVClipDataset``); before training, a dataset ``seed`` left None
    becomes the runner's seed (``randomness.seed``).

    DataLoader workers copy the dataset when they start, so they see the
    new epoch only if they are re-created every epoch:
    ``persistent_workers=True`` with workers is an error.
    """

    priority = 'NORMAL'

    def before_train(self, runner: Runner) -> None:
        loader = runner.train_dataloader
        if loader.persistent_workers and loader.num_workers > 0:
            raise ValueError(
                'train_dataloader.persistent_workers=True keeps the workers '
                "of the first epoch, which would repeat that epoch's random "
                'clips and crops: set it to false (DatasetEpochHook)')
        if getattr(loader.dataset, 'seed', 0) is None:
            loader.dataset.seed = runner.seed

    def before_train_epoch(self, runner: Runner) -> None:
        runner.train_dataloader.dataset.set_epoch(runner.epoch)
