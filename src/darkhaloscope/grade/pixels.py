"""The pixels behind `dhs grade serve`'s image routes: a candidate id -> every rendered view (grade.images), read
from where the grades database says its stamp is (data + source_file + source_row), kept in a small LRU cache.

Nothing here takes a path from a request: the id is looked up in the database first, and the data folder,
file and row come from the database (the scores file `dhs score` wrote, or `--data`); a cutout folder
refuses a source_file that leaves it (score.sources). A stamp that is gone (data folder moved, file
deleted, row unreadable) is not an error of the server: `Views.error` says what happened and the page shows
it in place of the images.

Exercised by `dhs grade serve` and tests/grade/test_app.py.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkhaloscope.errors import DHSError, MissingInputError
from darkhaloscope.stamps.fs import is_s3

CACHE_CANDIDATES = 256  # rendered candidates kept (~70 KiB each): a grader's way back and the prefetched ones


@dataclass
class Views:
    """One candidate's panels (one PNG strip, grade.images), or `error` (why its stamp cannot be shown)."""

    png: bytes = b""
    error: str | None = None


class PixelCache:
    """Candidate id -> Views, rendered once per id (concurrent requests for one id wait for the first)."""

    def __init__(self, capacity: int = CACHE_CANDIDATES):
        self.capacity = capacity
        self._views: OrderedDict[str, Views] = OrderedDict()
        self._sources: dict[str, object] = {}
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}

    def cached(self, candidate_id: str) -> Views | None:
        """The views of a candidate rendered before (so found in the database then), or None; never blocks
        on a render: the image route answers from here in the event loop, without a thread or a query."""
        with self._lock:
            v = self._views.get(candidate_id)
            if v is not None:
                self._views.move_to_end(candidate_id)
            return v

    def views(self, candidate: dict) -> Views:
        """The rendered views of a candidate dict from `store.candidate(id)` (cached)."""
        cid = candidate["candidate_id"]
        with self._lock:
            if cid in self._views:
                self._views.move_to_end(cid)
                return self._views[cid]
            busy = self._busy.setdefault(cid, threading.Lock())
        with busy:
            with self._lock:
                if cid in self._views:
                    return self._views[cid]
            v = self._render(candidate)
            with self._lock:
                self._views[cid] = v
                self._busy.pop(cid, None)
                while len(self._views) > self.capacity:
                    self._views.popitem(last=False)
            return v

    def _render(self, candidate: dict) -> Views:
        from darkhaloscope.grade.images import render_views

        try:
            image = self._stamp(candidate)
        except (DHSError, OSError) as e:
            return Views(error=f"stamp not available: {' '.join(str(e).split())}")
        if not np.any(image) or not np.all(np.isfinite(image)):
            return Views(error=f"stamp not available: {candidate.get('source_file')} row "
                               f"{candidate.get('source_row')} could not be decoded (empty or not finite)")
        return Views(png=render_views(image))

    def _stamp(self, candidate: dict) -> np.ndarray:
        data = candidate.get("data")
        if not data:
            raise DHSError("the database records no data folder for this candidate; restart with --data DATA")
        source = self._source(str(data))
        return source.fetch([str(candidate["source_file"])], [int(candidate.get("source_row") or 0)])[0]

    def _source(self, data: str):
        from darkhaloscope.score.sources import open_source

        with self._lock:
            src = self._sources.get(data)
        if src is None:
            if not is_s3(data) and not Path(data).exists():
                raise MissingInputError(f"the data folder {data} is not here; restart with --data pointing at it")
            src = open_source(data)  # s3:// data: the S3 settings of the environment (AWS_*)
            with self._lock:
                self._sources[data] = src
        return src
