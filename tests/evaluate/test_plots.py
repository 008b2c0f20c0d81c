"""The report's galleries: titles and captions inside the figure and readable (issue #25 4.7: gallery titles
were clipped at both ends, stamp captions were 6 pt)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from tierfactory import fake_stamp

from darkhaloscope.evaluate.plots import CAPTION_PT, OCCLUSION_LEGEND, gallery_figure


@pytest.mark.parametrize("n,overlays", [(2, True), (7, False)])
def test_gallery_text_stays_inside_the_figure_and_is_readable(n, overlays):
    rng = np.random.default_rng(0)
    images = np.stack([fake_stamp(rng, lens=True) for _ in range(n)])
    captions = [f"p={0.99 - k / 100:.3g} ring: full inclined\n{'region_split=test/part-00000.parquet:' * 2}{k}"
                for k in range(n)]
    fig = gallery_figure(images, captions, "Highest-scored controls (false positives at the operating point)",
                         overlays=rng.normal(size=(n, 64, 64)) if overlays else None)
    FigureCanvasAgg(fig).draw()  # the canvas savefig uses: constrained layout applied
    width, height = fig.bbox.width, fig.bbox.height
    texts = [fig._suptitle] + [ax.title for ax in fig.axes if ax.get_title()]
    assert len(texts) == 1 + n * (2 if overlays else 1)
    for t in texts:
        box = t.get_window_extent()
        assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height, (t.get_text(), box, width)
    assert all(t.get_fontsize() >= CAPTION_PT >= 8 for t in texts[1:])
    if overlays:
        assert OCCLUSION_LEGEND.split()[-1] in fig._suptitle.get_text().replace("\n", " ")
