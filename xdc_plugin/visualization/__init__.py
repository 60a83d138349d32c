"""The cluster gallery: a static site to look at and listen to the clusters
of every clustering round of a run (``tools/visualize_clusters.py``)."""
from xdc_plugin.visualization.gallery import (GalleryError, GalleryReport,
                                              build_gallery)

__all__ = ['GalleryError', 'GalleryReport', 'build_gallery']
