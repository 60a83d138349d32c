"""tools/gallery_screenshot.py: the top of a real gallery page, at the size
asked, in headless Chromium (the browser policy of the gallery's browser
tests: a missing browser fails unless XDC_ALLOW_NO_BROWSER=1)."""
import os
import os.path as osp
import runpy

import pytest
from conftest import REPO
from PIL import Image
from test_visualization_browser import ALLOW_SKIP, _missing_browser

from xdc_plugin.visualization import build_gallery

TOOL = runpy.run_path(osp.join(REPO, 'tools', 'gallery_screenshot.py'))


def test_the_top_of_a_gallery_page_is_saved(tiny_xdc_run, tmp_path,
                                            capsys):
    problem = _missing_browser()
    if problem and os.environ.get(ALLOW_SKIP) == '1':
        pytest.skip(f'{problem} ({ALLOW_SKIP}=1)')
    assert problem is None, problem
    work, _ = tiny_xdc_run
    build_gallery(str(work), out_dir=str(tmp_path / 'g'), workers=2,
                  progress=False)
    out = tmp_path / 'shot.png'
    TOOL['main']([str(tmp_path / 'g' / 'index.html'), str(out),
                  '--height', '600'])
    assert capsys.readouterr().out.strip() == f'wrote {out}'
    with Image.open(out) as image:
        assert image.size == (1280, 600)
        # The page drawn, not a blank frame.
        assert len(image.convert('RGB').getcolors(1 << 20)) > 100


def test_a_missing_page_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        TOOL['main']([str(tmp_path / 'none.html'), str(tmp_path / 'x.png')])
    assert 'none.html: no such file' in capsys.readouterr().err
