"""The gallery opened in a real headless Chromium (Debian's ``chromium``,
driven by Playwright's Python API; Playwright's own browsers are never
used).

A missing browser or Playwright FAILS these tests with the reason: CI
installs both (``.ci/run``), so a skip there would hide a
broken gallery. For a local run without them, ``XDC_ALLOW_NO_BROWSER=1``
turns the failure into an explicit skip.
"""
import importlib.util
import os
import os.path as osp
import shutil
import sys

import numpy as np
import pytest
from conftest import REPO, save_fitted_rounds, timecode_extract_set

from xdc_plugin.clustering.round_file import load_round, round_path
from xdc_plugin.visualization import build_gallery

CHROMIUM = os.environ.get('XDC_CHROMIUM', '/usr/bin/chromium')
ALLOW_SKIP = 'XDC_ALLOW_NO_BROWSER'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu',
         '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run']
ARTIFACTS = osp.join(REPO, 'test-artifacts')
MEDIA_READY = '''() =>
    [...document.querySelectorAll('video')].every(v => v.readyState >= 2) &&
    [...document.querySelectorAll('audio')].every(a => a.readyState >= 1)'''


def _missing_browser():
    if not os.access(CHROMIUM, os.X_OK):
        return (f'{CHROMIUM} is not an executable: install Debian\'s chromium '
                '(apt-get install chromium, as root)')
    if importlib.util.find_spec('playwright') is None:
        return 'Playwright is not installed: pip install -e ".[test]"'
    return None


# Session scope: set up before (and so fails before) the session's run.
@pytest.fixture(scope='session')
def browser():
    problem = _missing_browser()
    if problem and os.environ.get(ALLOW_SKIP) == '1':
        pytest.skip(f'{problem} ({ALLOW_SKIP}=1)')
    if problem:
        pytest.fail(f'{problem}. Set {ALLOW_SKIP}=1 to skip locally.')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=FLAGS)
        yield chromium
        chromium.close()


def open_page(browser, path):
    """The page at ``path`` once every media element is playable, and the
    list that collects its console errors, failed requests and exceptions.
    """
    page = browser.new_page(viewport={'width': 1280, 'height': 900})
    errors = []
    page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.on('requestfailed', lambda r: errors.append(f'failed: {r.url}'))
    page.goto(f'file://{path}')
    page.wait_for_function(MEDIA_READY, timeout=30_000)
    return page, errors


def media_states(page):
    return page.evaluate('''() => ({
        video: [...document.querySelectorAll('video')].map(
            v => [v.readyState, v.duration, v.muted, v.loop]),
        audio: [...document.querySelectorAll('audio')].map(
            a => a.duration)})''')


def cards_of(page, source):
    return page.eval_on_selector_all(
        f'section[data-source="{source}"] .cluster-card',
        'cards => cards.map(c => ({id: +c.dataset.clusterId, '
        'purity: c.dataset.purity === undefined ? null : +c.dataset.purity, '
        'tightness: +c.dataset.tightness}))')


def save_screenshot(page, tmp_path, name):
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    os.makedirs(ARTIFACTS, exist_ok=True)
    shutil.copy(shot, osp.join(ARTIFACTS, name))
    assert shot.stat().st_size > 10_000


def test_the_gallery_of_a_tiny_run_plays_in_chromium(browser, tiny_xdc_run,
                                                     tmp_path):
    work, _ = tiny_xdc_run
    build_gallery(str(work), out_dir=str(tmp_path / 'g'), workers=2,
                  progress=False)
    final = load_round(round_path(str(work), 'final'))
    page, errors = open_page(browser, tmp_path / 'g' / 'index.html')
    assert page.title().endswith('clusters of round final')

    headings = page.eval_on_selector_all('section.source h2',
                                         'hs => hs.map(h => h.textContent)')
    assert headings == ['Audio clusters [listen]', 'Visual clusters [look]']
    for source in ('audio', 'video'):
        cards = cards_of(page, source)
        assert len(cards) == (final.sources[source].counts > 0).sum()
        purities = [c['purity'] for c in cards]
        assert purities == sorted(purities, reverse=True)
        expected = np.nan_to_num(final.sources[source].purity)
        assert purities == pytest.approx([expected[c['id']] for c in cards])
        ordering = page.inner_text(f'section[data-source="{source}"] '
                                   '.ordering')
        assert 'by purity against the dataset labels, highest first' in \
            ordering

    states = media_states(page)
    assert len(states['video']) == len(states['audio']) == 9  # every clip
    assert all(ready >= 2 and duration > 0 and muted and loop
               for ready, duration, muted, loop in states['video'])
    assert all(duration > 0 for duration in states['audio'])

    chart = page.locator('figure.chart svg')
    assert chart.count() == 1 and chart.bounding_box()['width'] > 300
    assert page.locator('figure.chart svg g[id^="axes_"]').count() == 4
    save_screenshot(page, tmp_path, 'gallery_tiny_run.png')

    page.click('nav.rounds a:text-is("0")')
    page.wait_for_function(MEDIA_READY, timeout=30_000)
    assert page.url.endswith('/round_0.html')
    assert page.inner_text('dl.run div:has(dt:text-is("round shown")) dd') \
        == '0 (epoch 0)'
    assert errors == []


def test_an_unlabelled_run_with_a_broken_clip_still_plays(
        browser, timecode_clips, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(timecode_clips, data)
    dataset = timecode_extract_set(str(data / 'unlabelled.csv'))
    save_fitted_rounds(tmp_path / 'work', dataset, [0])
    (data / 'clip2.mp4').write_bytes(b'\0' * 4096)
    build_gallery(str(tmp_path / 'work'), out_dir=str(tmp_path / 'g'),
                  workers=2, progress=False)
    page, errors = open_page(browser, tmp_path / 'g' / 'index.html')
    for source in ('audio', 'video'):
        tightness = [c['tightness'] for c in cards_of(page, source)]
        assert len(tightness) == 2 and tightness == sorted(tightness)
        assert 'by tightness' in page.inner_text(
            f'section[data-source="{source}"] .ordering')
    failed = page.locator('li.clip.failed')
    assert failed.count() == 2  # clip2, in each section
    assert all('could not decode' in text
               for text in failed.all_inner_texts())
    states = media_states(page)
    assert len(states['video']) == len(states['audio']) == 5
    assert all(ready >= 2 and duration > 0
               for ready, duration, _, _ in states['video'])
    assert all(duration > 0 for duration in states['audio'])
    assert page.locator('figure.chart').count() == 0
    save_screenshot(page, tmp_path, 'gallery_unlabelled_broken_clip.png')
    assert errors == []


def test_a_missing_browser_is_named(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], 'CHROMIUM', '/nowhere/chromium')
    assert _missing_browser() == (
        "/nowhere/chromium is not an executable: install Debian's chromium "
        '(apt-get install chromium, as root)')
