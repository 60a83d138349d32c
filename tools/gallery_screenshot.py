"""Screenshot of a cluster gallery page, as the project page shows one.

    python tools/visualize_clusters.py work_dirs/avobjects_table/xdc
    python tools/gallery_screenshot.py \\
        work_dirs/avobjects_table/xdc/gallery/index.html \\
        projects/xdc/gallery_avobjects.png

Opens the page in headless Chromium (Debian's ``chromium``, or
``XDC_CHROMIUM``; driven by playwright, ``pip install -e ".[test]"``), waits
until every video and audio element can play, and saves the top ``--width``
x ``--height`` pixels as a PNG.
"""
import argparse
import os
import os.path as osp

CHROMIUM = os.environ.get('XDC_CHROMIUM', '/usr/bin/chromium')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu',
         '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run']
MEDIA_READY = '''() =>
    [...document.querySelectorAll('video')].every(v => v.readyState >= 2) &&
    [...document.querySelectorAll('audio')].every(a => a.readyState >= 1) &&
    [...document.images].every(i => i.complete)'''


def screenshot(page: str, out: str, width: int = 1280, height: int = 1500,
               timeout_s: float = 60) -> None:
    """Save the top ``width`` x ``height`` pixels of ``page`` to ``out``."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=FLAGS)
        try:
            view = browser.new_page(viewport={'width': width,
                                              'height': height})
            view.goto(f'file://{osp.abspath(page)}')
            view.wait_for_function(MEDIA_READY, timeout=timeout_s * 1000)
            view.screenshot(path=out)
        finally:
            browser.close()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('page', help='a gallery page (index.html)')
    parser.add_argument('out', help='the PNG to write')
    parser.add_argument('--width', type=int, default=1280)
    parser.add_argument('--height', type=int, default=1500)
    args = parser.parse_args(argv)
    if not osp.isfile(args.page):
        parser.error(f'{args.page}: no such file')
    if not os.access(CHROMIUM, os.X_OK):
        parser.error(f'{CHROMIUM} is not an executable: install Debian\'s '
                     'chromium or set XDC_CHROMIUM')
    screenshot(args.page, args.out, args.width, args.height)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
