"""Build the static cluster gallery of a run: one page per round, media
beside them, nothing fetched from the network.

``build_gallery(work_dir)`` reads every ``clusters/round_<r>.npz`` of the
work dir (all of them feed the quality charts), renders the chosen rounds as
``round_<r>.html`` plus ``index.html`` (the final round, or the last one),
and writes the clips' media under ``media/``.

A round file lists the clips' paths, and whoever wrote it chose them: the
gallery reads only absolute paths under the dataset root (the one the round
file records, or ``data_root`` when given), never a URL or anything else,
which it counts and shows as not read.
"""
import os.path as osp
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from xdc_plugin.atomic_write import write_atomically
from xdc_plugin.clustering.round_file import (RoundFileError,
                                              list_round_files, load_round)
from xdc_plugin.visualization.charts import quality_chart_svg
from xdc_plugin.visualization.media import (DEFAULT_CLIP, MediaJob,
                                            MediaResult, render_all)
from xdc_plugin.visualization.selection import ORDERINGS, cluster_cards

# (source, heading, what to do with it, media kinds its clips show)
SECTIONS = (('audio', 'Audio clusters', 'listen', ('audio', )),
            ('video', 'Visual clusters', 'look', ('video', )),
            ('joint', 'Joint clusters', 'look and listen', ('video', 'audio')))
# What a round must hold for its page to be drawn.
REQUIRED = ('distances', 'paths')
TEMPLATES = osp.join(osp.dirname(osp.abspath(__file__)), 'templates')
# A URL scheme (http:, data:, concat:, ...) at the start of a path.
_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*:')


class GalleryError(RuntimeError):
    """A run (or a chosen round) that cannot be shown; the message says
    why and what to do."""


@dataclass
class GalleryReport:
    index: str
    pages: Dict[object, str]
    num_clips: int
    failed: Dict[str, str]   # clip path -> why it could not be shown
    notes: List[str] = field(default_factory=list)
    refused: Dict[str, str] = field(default_factory=dict)  # path -> why
    # not read (see ``clip_refusal``)
    read_under: str = ''  # where clips are read from, in words


def clip_refusal(path, root):
    """``(kind, why)`` when the gallery must not read ``path``: a URL, a
    relative path, no known dataset root, a path outside ``root``; None
    when it may (a file under ``root``)."""
    if _URL.match(path):
        return 'url', 'a URL, never fetched'
    if not osp.isabs(path):
        return 'relative', 'not an absolute path'
    if root is None:
        return 'no_root', ('its round file records no dataset root: pass '
                           '--data-root')
    if osp.commonpath([root, osp.normpath(path)]) != root:
        return 'outside_root', f'outside the dataset root {root}'
    return None


def load_run(work_dir):
    """``(rounds, notes)``: every readable round file in order, and a note
    for each file that cannot be read."""
    files = list_round_files(work_dir)
    if not files:
        raise GalleryError(
            f'no round files in {osp.join(work_dir, "clusters")}: train with '
            'CrossModalClusteringHook(save_assignments=True) (the default) '
            'first')
    rounds, notes = [], []
    for path in files.values():
        try:
            rounds.append(load_round(path))
        except RoundFileError as e:
            notes.append(f'skipped: {e}')
    return rounds, notes


def _lacking(round_, one_line=False):
    """What a round file lacks and what that prevents."""
    head = (f'round {round_.round_id} ({osp.basename(round_.path)}, format '
            f'{round_.version}) lacks')
    lines = round_.describe_missing()
    if one_line:
        return f'{head}: ' + '; '.join(lines)
    return f'{head}:' + ''.join(f'\n    - {line}' for line in lines)


def pick_rounds(rounds, which):
    """The rounds to draw: ``'all'`` that can be drawn, ``'final'`` or one
    round id. Raises ``GalleryError`` saying what a chosen round lacks."""
    drawable = [r for r in rounds if not set(REQUIRED) & set(r.missing)]
    if which == 'all':
        if not drawable:
            raise GalleryError(
                'no round can be shown:\n' + '\n'.join(map(_lacking, rounds))
                + '\nThese files were written before round files kept '
                'per-clip distances and file paths (or from a dataset '
                'without file paths). Train again with this version of '
                'xdc_plugin to write them.')
        return drawable
    wanted = [r for r in rounds if str(r.round_id) == str(which)]
    if not wanted:
        raise GalleryError(f'no round {which!r}; rounds: '
                           f'{[r.round_id for r in rounds]}')
    if wanted[0] not in drawable:
        raise GalleryError('cannot show ' + _lacking(wanted[0]))
    return wanted


def _clip_job(round_, index, kinds):
    windows = round_.windows
    cfg = dict(DEFAULT_CLIP, **(windows.clip_cfg if windows else {}))
    return MediaJob(
        path=round_.paths[index],
        start_sec=float(windows.start_sec[index]) if windows else None,
        frame_rate=float(windows.frame_rate[index]) if windows else None,
        clip_cfg=cfg, kinds=set(kinds))


def _page_sections(round_, top_clusters, clips_per_cluster, jobs, root,
                   refused):
    """The sections of a round's page; adds the media they need to
    ``jobs`` (``{key: MediaJob}``, one per clip across every page) and the
    clips not read to ``refused`` (``{path: MediaResult}``)."""
    sections = []
    for source, heading, verb, kinds in SECTIONS:
        if source not in round_.sources:
            continue
        ordering, cards = cluster_cards(round_, source, top_clusters,
                                        clips_per_cluster)
        for card in cards:
            for clip in card.clips:
                refusal = clip_refusal(clip.path, root)
                if refusal:
                    refused[clip.path] = MediaResult(
                        {}, ': '.join(refusal), refused=True)
                    clip.media_key = f'refused:{clip.path}'
                    continue
                job = _clip_job(round_, clip.index, kinds)
                jobs.setdefault(job.key, job).kinds.update(kinds)
                clip.media_key = job.key
        sections.append(dict(source=source, heading=heading, verb=verb,
                             kinds=kinds, ordering=ordering,
                             ordering_text=ORDERINGS[ordering], cards=cards,
                             num_clusters=round_.sources[source].num_clusters))
    return sections


def _run_summary(work_dir, round_):
    ks = ', '.join(f'{s} {c.num_clusters}' for s, c in round_.sources.items())
    if round_.has_labels:
        labels = f'{len(round_.classes or [])} classes (evaluation only)'
    else:
        labels = 'no labels'
    # The config by its file name (the page is shared; the full path, as
    # recorded, is its tooltip), as the work dir is by its name.
    return dict(name=osp.basename(osp.abspath(work_dir)),
                work_dir=osp.abspath(work_dir), config=round_.config,
                config_name=round_.config and osp.basename(round_.config),
                variant=round_.variant, k=ks,
                num_clips=round_.num_clips, labels=labels)


def _clip_roots(rounds, data_root):
    """``{round id: root}``: ``data_root`` for every round, else the one
    each round file records (None: none), and a note saying which."""
    if data_root is not None:
        root = osp.normpath(osp.abspath(data_root))
        return {r.round_id: root for r in rounds}, \
            f'clips are read only under {root} (--data-root)'
    roots = {r.round_id: osp.normpath(r.data_root) if r.data_root and
             osp.isabs(r.data_root) else None for r in rounds}
    known = sorted({root for root in roots.values() if root})
    where = ' and '.join(known) or 'no folder'
    return roots, (f'clips are read only under {where} (the dataset root '
                   'recorded in the round files; --data-root to choose '
                   'another)')


def _refused_note(refused):
    counts = Counter(m.error.split(':')[0] for m in refused.values())
    return (f'{len(refused)} clips not read (' + ', '.join(
        f'{kind}: {n}' for kind, n in sorted(counts.items())) +
        '): the gallery reads only files under the dataset root, never '
        'a URL')


def _check_arguments(top_clusters, clips_per_cluster, data_root):
    if top_clusters < 1 or clips_per_cluster < 1:
        raise GalleryError('top_clusters and clips_per_cluster must be >= '
                           f'1, got {top_clusters} and {clips_per_cluster}')
    if data_root is not None and not osp.isdir(data_root):
        raise GalleryError(f'--data-root {data_root} is not a folder')


def build_gallery(work_dir, which='all', top_clusters=12,
                  clips_per_cluster=10, out_dir=None, workers=None,
                  progress=True, data_root=None):
    """Write the gallery of ``work_dir`` into ``out_dir`` (default
    ``work_dir/gallery``) -> ``GalleryReport``. Clips are read only under
    ``data_root`` (default: the dataset root each round file records)."""
    _check_arguments(top_clusters, clips_per_cluster, data_root)
    out_dir = out_dir or osp.join(work_dir, 'gallery')
    rounds, notes = load_run(work_dir)
    shown = pick_rounds(rounds, which)
    notes += [_lacking(r, one_line=True) for r in rounds
              if r.missing and r not in shown]
    roots, where = _clip_roots(shown, data_root)
    jobs, pages, refused = {}, [], {}
    for round_ in shown:
        pages.append((round_, _page_sections(
            round_, top_clusters, clips_per_cluster, jobs,
            roots[round_.round_id], refused)))
    if refused:
        notes.append(_refused_note(refused))
    try:
        media = render_all(jobs, osp.join(out_dir, 'media'), workers,
                           progress)
    except OSError as e:
        raise GalleryError(f'cannot write the gallery into {out_dir}: '
                           f'{e.strerror}') from e
    failed = {jobs[k].path: m.error for k, m in media.items() if m.error}
    media.update((f'refused:{path}', m) for path, m in refused.items())

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    template = env.get_template('round.html')
    chart = quality_chart_svg(
        [r for r in rounds if 'metrics' not in r.missing])
    names = {r.round_id: f'round_{r.round_id}.html' for r, _ in pages}
    default = next((r for r, _ in pages if r.round_id == 'final'),
                   pages[-1][0])
    written = {}
    for round_, sections in pages:
        page_notes = list(notes)
        if round_.windows is None:
            page_notes.append('clip windows were not recorded: previews show '
                              'the middle of each file')
        html = template.render(
            run=_run_summary(work_dir, round_), round=round_,
            rounds=[(r.round_id, r.epoch, names[r.round_id]) for r, _ in
                    pages],
            chart=chart,
            sections=sections, media=media, notes=page_notes,
            basename=osp.basename)
        for name in ([names[round_.round_id]] +
                     (['index.html'] if round_ is default else [])):
            path = osp.join(out_dir, name)
            write_atomically(html.encode('utf-8'), path)
            written.setdefault(round_.round_id, path)
    return GalleryReport(index=osp.join(out_dir, 'index.html'), pages=written,
                         num_clips=len(jobs), failed=failed, notes=notes,
                         refused={p: m.error for p, m in refused.items()},
                         read_under=where)
