"""Every rank must list the same files in the same order: pseudo-labels are
keyed by dataset index, and ``claim_rows`` sums rows over ranks by index.
Ranks build their datasets independently (a file-system hiccup on one node
can give it another N or order), so before training the ranks compare a
digest of their file lists and all stop, with the same error, when they
differ.

The comparison runs in ``CrossModalClusteringHook.before_train`` (see
there for why).
"""
from typing import Iterable, List, Optional

from mmengine import dist
from mmengine.dataset import BaseDataset

from xdc_plugin.data.prepared_manifest import file_list_digest

__all__ = ['DatasetMismatchError', 'check_ranks_agree', 'dataset_paths']

# On a mismatch, ranks compare digests of blocks of this many paths, then
# send the paths of the first differing blocks only (at most MAX_BLOCKS).
BLOCK = 4096
MAX_BLOCKS = 8


class DatasetMismatchError(RuntimeError):
    """The ranks' datasets list different files."""


def dataset_paths(dataset: BaseDataset,
                  indices: Optional[Iterable[int]] = None) -> List[str]:
    """The paths of ``dataset``'s items (of ``indices``, default all)."""
    if indices is None:
        indices = range(len(dataset))
    return [dataset.get_data_info(i)['path'] for i in indices]


def _digest(dataset):
    """``AVClipDataset`` keeps the digest of the list it kept (before any
    ``indices`` subset, which every rank takes alike); other datasets are
    read item by item."""
    digest = getattr(dataset, 'file_list_digest', None)
    return digest or file_list_digest(dataset_paths(dataset))


def _first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
                min(len(a), len(b)))


def _blocks(paths):
    return [paths[i:i + BLOCK] for i in range(0, len(paths), BLOCK)]


def _locate(dataset, differ):
    """``{rank: (index, path of rank 0, path of rank, exact)}``: where each
    rank of ``differ`` first differs from rank 0 (a path is None past the
    end of its list; not ``exact``: somewhere in the ``BLOCK`` paths from
    ``index``). Each rank sends a digest per block of ``BLOCK`` paths, then
    the paths of the blocks where a difference starts (the first
    ``MAX_BLOCKS`` of them)."""
    paths = dataset_paths(dataset)
    blocks = _blocks(paths)
    digests = dist.all_gather_object([file_list_digest(b) for b in blocks])
    first = {r: _first_difference(digests[0], digests[r]) for r in differ}
    wanted = sorted(set(first.values()))[:MAX_BLOCKS]
    sent = dist.all_gather_object(
        {b: blocks[b] if b < len(blocks) else [] for b in wanted})
    where = {}
    for rank, b in first.items():
        if b not in wanted:
            where[rank] = (b * BLOCK, None, None, False)
            continue
        ref, theirs = sent[0][b], sent[rank][b]
        i = _first_difference(ref, theirs)
        where[rank] = (b * BLOCK + i, ref[i] if i < len(ref) else None,
                       theirs[i] if i < len(theirs) else None, True)
    return where


def _describe(sizes, where):
    lines = []
    for rank, (index, ref, theirs, exact) in sorted(where.items()):
        head = f'rank {rank}: N={sizes[rank]} (rank 0: N={sizes[0]}); '
        if not exact:
            lines.append(head + f'first difference among indices {index}-'
                         f'{index + BLOCK - 1}')
            continue
        shown = '; '.join(f'{name} {p!r}' if p is not None else
                          f'{name} no file there'
                          for name, p in (('rank 0 has', ref),
                                          (f'rank {rank} has', theirs)))
        lines.append(head + f'first difference at index {index}: {shown}')
    return '\n'.join(lines)


def check_ranks_agree(dataset: BaseDataset,
                      what: str = 'train dataset') -> None:
    """Raise ``DatasetMismatchError`` on every rank unless every rank's
    ``dataset`` has the same length and file list digest. The message names
    the ranks that differ from rank 0, their N and the first index where
    their file lists differ, with both paths. A no-op in one process."""
    if dist.get_world_size() == 1:
        return
    everyone = dist.all_gather_object((len(dataset), _digest(dataset)))
    differ = [r for r, theirs in enumerate(everyone) if theirs != everyone[0]]
    if not differ:
        return
    where = _locate(dataset, differ)
    raise DatasetMismatchError(
        f'the ranks do not list the same files in their {what} (pseudo-'
        'labels are keyed by dataset index: training would pair clips with '
        f'wrong labels); ranks {differ} differ from rank 0:\n' +
        _describe([n for n, _ in everyone], where) +
        '\nCheck that every node sees the same manifest and files.')
