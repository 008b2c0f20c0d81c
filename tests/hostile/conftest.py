"""Fixtures of the hostile-input suite (helpers: hostilehelpers.py)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tierfactory import make_tier


@pytest.fixture
def tier(tmp_path) -> Path:
    """A hive tier: 3 splits x 16 rows, half controls."""
    return make_tier(tmp_path / "tier", rows_per_split=16, files_per_split=1, row_group_size=8)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A valid small_cnn checkpoint (untrained weights), written the way `dhs train` writes one."""
    from darkhaloscope.config import config_to_dict
    from darkhaloscope.models import create_model
    from darkhaloscope.train.checkpoint import save_checkpoint
    from darkhaloscope.train.config import TrainConfig

    cfg = TrainConfig(model="small_cnn")
    model = create_model("small_cnn")
    return save_checkpoint({"model": model.state_dict(), "config": config_to_dict(cfg), "epoch": 0, "step": 0,
                            "best": {}}, tmp_path / "ckpt" / "best.pt")


@pytest.fixture
def silent_endpoint():
    """An 'S3 endpoint' that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    srv.close()
    for c in held:
        c.close()
