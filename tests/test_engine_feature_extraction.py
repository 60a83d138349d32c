"""Feature extraction: rows keyed by dataset index, each rank its share,
rank 0's BN statistics on every rank, the loader over a subset."""
import os

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from test_engine_clustering_hook import build_model, toy_loader
from xdc_plugin.engine.round.feature_extraction import (extract_shard,
                                                        subset_loader)


def test_features_are_keyed_by_dataset_index():
    model = build_model()
    loader = toy_loader(7, batch_size=3)
    shard = extract_shard(model, loader)
    assert shard.indices.tolist() == list(range(7))
    assert set(shard.features) == {'video', 'audio'}
    assert model.training  # restored after the eval-mode pass
    single = loader.dataset[5]
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(video=single['video'][None], audio=single['audio'][None],
                 index=torch.tensor([5]), label=torch.tensor([2])), False)
        expected = model.extract_feat(data['video'], data['audio'])
    for modality in ('video', 'audio'):
        torch.testing.assert_close(shard.features[modality][5],
                                   expected[modality][0], rtol=1e-4,
                                   atol=1e-5)


def test_subset_loader_gives_each_rank_its_share_of_the_indices():
    loader = toy_loader(10, batch_size=2)
    missing = torch.tensor([1, 4, 6, 9, 8])
    shares = [[int(i) for batch in subset_loader(loader, missing, rank, 2)
               for i in batch['index']] for rank in (0, 1)]
    assert shares == [[1, 6, 8], [4, 9]]


def _extract_worker(rank, world_size, init_file, out_dir):
    torch_dist.init_process_group('gloo', init_method=f'file://{init_file}',
                                  rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    model = build_model('xdc')
    if rank == 1:  # as after training: BN running statistics of its own
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.mul_(2).add_(0.5)
    shard = extract_shard(model, toy_loader(9))
    np.savez(os.path.join(out_dir, f'rank{rank}.npz'),
             indices=shard.indices.numpy(),
             **{m: f.numpy() for m, f in shard.features.items()})
    torch_dist.destroy_process_group()


def test_each_rank_extracts_its_share_with_rank0_statistics(tmp_path):
    # Only rank 0's are checkpointed: a resumed run must extract the same.
    single = extract_shard(build_model('xdc'), toy_loader(9))
    mp.start_processes(_extract_worker,
                       args=(2, str(tmp_path / 'init'), str(tmp_path)),
                       nprocs=2, start_method='fork')
    for rank in (0, 1):
        ranked = np.load(tmp_path / f'rank{rank}.npz')
        assert ranked['indices'].tolist() == list(range(rank, 9, 2))
        for modality, features in single.features.items():
            np.testing.assert_allclose(
                ranked[modality], features[ranked['indices']].numpy(),
                rtol=1e-5, atol=1e-6)


def test_extraction_autocasts_as_training_and_stores_the_feature_dtype():
    model = build_model()
    conv_dtypes = set()

    def record(module, _, out):
        if isinstance(module, torch.nn.Conv3d):
            conv_dtypes.add(out.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        shard = extract_shard(model, toy_loader(5), torch.bfloat16,
                              torch.float16)
        assert conv_dtypes == {torch.bfloat16}
        conv_dtypes.clear()
        fp32 = extract_shard(model, toy_loader(5))
        assert conv_dtypes == {torch.float32}
    finally:
        hook.remove()
    for modality, rows in shard.features.items():
        assert rows.dtype == torch.float16 and rows.device == torch.device(
            'cpu')  # the model's device
        assert fp32.features[modality].dtype == torch.float32
        torch.testing.assert_close(rows.float(), fp32.features[modality],
                                   rtol=0.05, atol=0.05)
    assert shard.indices.dtype == torch.int64
