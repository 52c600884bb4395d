"""What the lessons share: small settings for a quick run, where their pictures go, and the
small story model that several of them look inside. docs/course.md is the course's index.

    TINYLM_COURSE_QUICK=1   smaller settings (fewer training steps), as the tests run them
    TINYLM_COURSE_OUT=DIR   where pictures and models go [default: examples/output]
"""
from __future__ import annotations

import os
from pathlib import Path

from tinylm import load_model
from tinylm.text.corpus import make_stories
from tinylm.training.loop import TrainArgs, train

QUICK = os.environ.get("TINYLM_COURSE_QUICK") == "1"


def setting(full, quick):
    """`full` normally, `quick` under TINYLM_COURSE_QUICK=1."""
    return quick if QUICK else full


def output_dir() -> Path:
    out = Path(os.environ.get("TINYLM_COURSE_OUT") or Path(__file__).parent / "output")
    out.mkdir(parents=True, exist_ok=True)
    return out


def picture(name: str, draw, size=(7, 4)) -> Path | None:
    """Call draw(figure) on a new matplotlib figure and save it as output_dir()/name. Without
    matplotlib (an optional extra) say so and draw nothing; the lesson goes on."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(f"[picture] {name} not drawn: matplotlib is not installed "
              "(pip install 'tinylm[plot]')")
        return None
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure)
    path = output_dir() / name
    figure.savefig(path, dpi=100)
    print(f"[picture] {path}")
    return path


def story_model():
    """A small model (2 layers of width 48, grouped-query attention) trained for a few seconds
    on the built-in stories, made once and kept in output_dir()/story-model."""
    out = output_dir() / "story-model"
    if not (out / "checkpoint.npz").exists():
        print(f"training the small story model, once (a few seconds; kept in {out})")
        stories = out.parent / "stories.txt"
        stories.write_text("\n\n".join(make_stories(1000)), encoding="utf-8")
        train(TrainArgs(data=[stories], out=out, vocab_size=512, dim=48, n_layers=2, n_heads=4,
                        n_kv_heads=2, seq_len=64, batch_size=16, steps=setting(400, 200),
                        lr=3e-3, eval_every=200))
    return load_model(out)
