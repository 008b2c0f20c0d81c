"""`dhs grade serve` in a real browser: headless Chromium from the Debian packages (`chromium`,
`chromium-driver`) driven by Selenium, against the real uvicorn server on a free port.

Grade 20 candidates by keyboard (grades and tags), undo, reload and continue, two graders at once, and the
database equals what was typed. Hostile ids and metadata show as text. Screenshots are written to
`$DHS_SCREENSHOTS` when set (look at them), else to the test's tmp_path.
Skipped, saying why, when chromium, chromedriver or selenium is missing (`.ci/run` installs them).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from webfactory import EVIL, grades_db

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,  # a browser start is ~4 s on the 2-core box
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="headless Chromium not installed: "
                       "apt-get install -y chromium chromium-driver (Debian/Ubuntu)"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install -e '.[test]'")
pytest.importorskip("uvicorn", reason="the web app needs the [grade] extra: pip install -e '.[grade]'")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from darkhaloscope.grade.serve import start  # noqa: E402

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,820")
WAIT_S = 15


def browser(profile: Path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={profile}",):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)  # the system driver: nothing downloaded


def wait(what, timeout=WAIT_S):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = what()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what.__doc__ or what}")


def shown(d) -> str:
    return d.execute_script("return document.body.dataset.candidate || ''")


def sign_in(d, url: str, name: str) -> None:
    d.get(url)
    field = wait(lambda: d.find_element(By.ID, "ask-name"))
    field.send_keys(name, Keys.ENTER)
    wait(lambda: shown(d))


def press(d, key: str) -> None:
    d.find_element(By.TAG_NAME, "body").send_keys(key)


def saved(d) -> bool:
    """every POST of the page answered"""
    return "saving" not in d.find_element(By.ID, "progress").text


def snap(d, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("DHS_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(folder / f"{name}.png"))
    return folder / f"{name}.png"


@pytest.fixture
def served(tmp_path):
    store, scores, tier = grades_db(tmp_path, rows_per_split=10)  # 30 candidates
    srv = start(store, port=0, background=True)
    yield store, srv, tier
    srv.stop()
    store.close()


def latest(store, grader: str) -> dict[str, tuple]:
    return {g["candidate_id"]: (g["grade"], g["tag"]) for g in store.latest_grades() if g["grader"] == grader}


def exported(store, tmp_path: Path) -> dict[str, tuple]:
    """{candidate: (grade, tag)} of one grader's candidates as `dhs grade export` writes them (S: a skip)."""
    import pyarrow.parquet as pq

    from darkhaloscope.cli import main

    out = tmp_path / "graded.parquet"
    assert main(["grade", "export", "--db", str(store.path), "--out", str(out)]) == 0
    rows = pq.read_table(out).to_pylist()
    return {r["candidate_id"]: (r["grade"] or "S", r["tag"]) for r in rows if r["n_graders"] or r["n_S"]}


# 20 key sequences: a tag key (1-6) before a grade, or a grade alone
SCRIPT = ["A", "3B", "N", "1N", "C", "S", "B", "6N", "A", "5N", "C", "2N", "B", "S", "4C", "A", "N", "B", "1C", "N"]


def test_grade_20_by_keyboard_undo_reload_and_continue(served, tmp_path):
    store, srv, tier = served
    tags = ("ring", "spiral", "companion", "merger", "artefact", "other")
    d = browser(tmp_path / "profile")
    try:
        sign_in(d, srv.url, "ana")
        assert d.find_element(By.ID, "cid").text == EVIL  # the hostile id is text, not markup
        assert d.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert len(d.find_elements(By.CSS_SELECTOR, "#stage canvas")) == 7
        drawn = d.execute_script("return [...document.querySelectorAll('#stage canvas')].map(c => "
                                 "c.getContext('2d').getImageData(0, 0, 64, 64).data.reduce((a, b) => a + b, 0))")
        assert len(drawn) == 7 and min(drawn) > 64 * 64 * 255  # every panel drawn (alpha alone is 64*64*255)
        snap(d, tmp_path, "01-first-candidate")
        typed = {}
        for keys in SCRIPT:
            cid = shown(d)
            for k in keys:
                press(d, k)
            typed[cid] = (keys[-1], tags[int(keys[0]) - 1] if len(keys) == 2 else None)
            wait(lambda: shown(d) != cid)
        wait(lambda: saved(d))
        snap(d, tmp_path, "02-after-20")
        assert latest(store, "ana") == typed
        last = list(typed)[-1]
        press(d, "u")  # undo the 20th: it is on screen again, and no longer graded
        wait(lambda: shown(d) == last)
        wait(lambda: saved(d))
        del typed[last]
        assert latest(store, "ana") == typed
        d.refresh()  # reload: the name is remembered, the queue goes on from the first ungraded
        wait(lambda: shown(d) == last)
        assert "17 / 30" in d.find_element(By.ID, "progress").text
        for key in "ABC":
            cid = shown(d)
            press(d, key)
            typed[cid] = (key, None)
            wait(lambda: shown(d) != cid)
        press(d, Keys.ARROW_LEFT)  # back one, regrade it: the new grade wins, the old row stays in history
        back = list(typed)[-1]
        wait(lambda: shown(d) == back)
        wait(lambda: "your grade" in d.find_element(By.ID, "mine").text)
        press(d, "n")
        typed[back] = ("N", None)
        wait(lambda: saved(d))
        assert latest(store, "ana") == typed
        assert [h["grade"] for h in store.history(back)] == ["C", "N"]
        assert exported(store, tmp_path) == typed  # `dhs grade export` holds what was typed
        snap(d, tmp_path, "03-after-reload")
    finally:
        d.quit()


def test_two_graders_at_once_and_a_missing_stamp(served, tmp_path):
    store, srv, tier = served
    ana, bo = browser(tmp_path / "p-ana"), browser(tmp_path / "p-bo")
    try:
        sign_in(ana, srv.url, "ana")
        sign_in(bo, srv.url, "bo")
        typed = {"ana": {}, "bo": {}}
        for i in range(8):  # interleaved key presses in two browsers
            for d, name, key in ((ana, "ana", "ABCN"[i % 4]), (bo, "bo", "NCBA"[i % 4])):
                cid = shown(d)
                press(d, key)
                typed[name][cid] = (key, None)
                wait(lambda: shown(d) != cid)
        wait(lambda: saved(ana) and saved(bo))
        assert latest(store, "ana") == typed["ana"] and latest(store, "bo") == typed["bo"]
        press(ana, "s")  # any key sends one more request: the progress line now has bo's count
        wait(lambda: "bo 8" in ana.find_element(By.ID, "progress").text)
        snap(ana, tmp_path, "04-two-graders")
        victim = next(tier.rglob("*.parquet"))  # a tier file goes missing while serving
        victim.unlink()
        gone = []
        for _ in range(12):
            if bo.find_element(By.ID, "gone").is_displayed():
                gone.append(shown(bo))
                break
            cid = shown(bo)
            press(bo, "s")
            wait(lambda: shown(bo) != cid)
        assert gone, "no candidate from the removed file came up"
        assert "stamp not available" in bo.find_element(By.ID, "gone").text
        snap(bo, tmp_path, "05-stamp-gone")
        press(bo, "n")  # it can still be graded
        wait(lambda: shown(bo) != gone[0])
        wait(lambda: saved(bo))
        assert latest(store, "bo")[gone[0]] == ("N", None)
    finally:
        ana.quit()
        bo.quit()
