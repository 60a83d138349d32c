"""The feature-extraction loader of the clustering hook: the train dataset's
config with the extraction pipeline (by default the centred, unaugmented
version of the train pipeline), built by mmengine."""
import copy
from typing import Any, Dict, Mapping

from mmengine.runner import Runner
from torch.utils.data import DataLoader

from xdc_plugin.data.transforms import centred_pipeline


def _file_list(dataset):
    return [dataset.get_data_info(i)['path'] for i in range(len(dataset))]


def extract_dataset_cfg(train_dataset_cfg: Mapping[str, Any],
                        extract_dataloader: Mapping[str, Any]
                        ) -> Dict[str, Any]:
    """The extraction dataset's config: the train dataset's, with the keys
    of ``extract_dataloader.dataset`` replacing its own; without a
    ``pipeline`` there, the train pipeline centred and unaugmented
    (``centred_pipeline``: a recipe states its input once)."""
    dataset = copy.deepcopy(dict(train_dataset_cfg))
    given = copy.deepcopy(dict(extract_dataloader.get('dataset') or {}))
    if 'pipeline' not in given:
        given['pipeline'] = centred_pipeline(dataset.get('pipeline') or ())
    dataset.update(given)
    return dataset


def build_extract_loader(runner: Runner,
                         extract_dataloader: Mapping[str, Any]) -> DataLoader:
    """``Runner.build_dataloader`` of ``extract_dataloader`` whose ``dataset``
    keys replace those of ``runner.cfg.train_dataloader.dataset`` (so that
    an override of the train manifest reaches feature extraction too).
    Defaults: ``DefaultSampler`` without shuffling or padding (each rank a
    shard, no duplicates), ``default_collate``.

    Pseudo-labels are keyed by dataset index: the built dataset must list
    the train dataset's files in the same order, or ``ValueError``.
    """
    cfg = copy.deepcopy(dict(extract_dataloader))
    cfg['dataset'] = extract_dataset_cfg(
        runner.cfg.train_dataloader['dataset'], extract_dataloader)
    cfg.setdefault('sampler', dict(type='DefaultSampler', shuffle=False,
                                   round_up=False))
    cfg.setdefault('collate_fn', dict(type='default_collate'))
    loader = Runner.build_dataloader(cfg, seed=runner.seed)
    train_files = _file_list(runner.train_dataloader.dataset)
    extract_files = _file_list(loader.dataset)
    if train_files != extract_files:
        first = next((i for i, (a, b) in enumerate(
            zip(train_files, extract_files)) if a != b),
            min(len(train_files), len(extract_files)))
        raise ValueError(
            "the extraction dataset does not list the train dataset's files "
            f'in the same order ({len(extract_files)} vs {len(train_files)} '
            f'files; first difference at index {first}): pseudo-labels are '
            'keyed by dataset index. Give extract_dataloader.dataset the same '
            'file list and clip settings (they decide which files are '
            'skipped).')
    return loader
