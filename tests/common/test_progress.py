"""The one progress display: plain periodic lines when stderr is not a terminal, nothing when disabled."""

import io

from darkhaloscope.common.progress import Progress


def test_plain_lines_when_the_stream_is_not_a_terminal():
    buf = io.StringIO()
    with Progress(100, "train", unit="steps", done=20, every_s=0, stream=buf) as bar:
        bar.update(50, label="epoch 1", info="loss 0.6931")
        bar.advance(10)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("epoch 1: 50/100 steps (50%), ") and lines[0].endswith(", loss 0.6931")
    assert "ETA " in lines[0] and "steps/s" in lines[0]
    assert lines[-1].startswith("epoch 1: 60/100 steps (60%)")  # one last line at the end


def test_lines_are_spaced_and_a_disabled_bar_prints_nothing():
    buf = io.StringIO()
    with Progress(10, "simulate", every_s=3600, stream=buf) as bar:
        bar.advance(5)
    assert buf.getvalue() == ""  # no line before every_s, so none at the end either
    with Progress(10, "score", enabled=False, every_s=0, stream=buf) as bar:
        bar.advance(5)
        assert bar.completed == 0
    assert buf.getvalue() == ""
    bar.print("a [bold]message[/bold]")
    assert buf.getvalue() == "a [bold]message[/bold]\n"  # messages are text, never markup
