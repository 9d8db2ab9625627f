"""Exploration views: widget structure, non-blank PNGs, slider updates, brightness, figures."""

import io
import re
import warnings

import numpy as np
import pytest
import torch

from darknb.data.video import read_frames
from darknb.errors import ConfigError
from darknb.models.enhancers import build_enhancer, save_enhancer
from darknb.report.widgets import (
    brightness_histograms,
    comparison_figure,
    frame_comparison,
)


@pytest.fixture(scope="module")
def video(tiny_synthetic):
    return sorted(tiny_synthetic.glob("*/*.mp4"))[0]


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _brightness(label_widget) -> float:
    match = re.fullmatch(r"mean brightness (\d\.\d{3})", label_widget.value)
    assert match, label_widget.value
    return float(match.group(1))


def _plain_enhancers():
    return {"gamma 2": build_enhancer("gamma", gamma=2.0), "none": build_enhancer("none")}


def test_widget_structure_images_and_brightness(video):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # modules given: no "untrained" warning
        box = frame_comparison(video, _plain_enhancers(), max_frames=6)
    assert list(box.images) == ["raw", "gamma 2", "none"] == list(box.brightness)
    assert box.num_frames == 6 and box.slider.max == 5 and box.play.max == 5
    raw = read_frames(video, [0])[0]
    for label, image in box.images.items():
        pixels = _decode_png(image.value)
        assert pixels.shape == raw.shape
        assert pixels.std() > 0, f"{label} image is uniform"
    np.testing.assert_array_equal(_decode_png(box.images["raw"].value), raw)
    np.testing.assert_array_equal(_decode_png(box.images["none"].value), raw)
    assert _brightness(box.brightness["raw"]) == pytest.approx(raw.mean() / 255, abs=6e-4)
    assert _brightness(box.brightness["gamma 2"]) > 2 * _brightness(box.brightness["raw"])
    assert int(box.images["raw"].width) >= 240  # tiny frames are shown enlarged


def test_slider_changes_images_and_labels(video):
    box = frame_comparison(video, _plain_enhancers(), max_frames=8, display_size=(64, 48))
    first = {k: im.value for k, im in box.images.items()}
    box.slider.value = 7
    for label in first:
        assert box.images[label].value != first[label], label
    raw7 = read_frames(video, [7])[0]
    np.testing.assert_array_equal(_decode_png(box.images["raw"].value), raw7)
    assert _brightness(box.brightness["raw"]) == pytest.approx(raw7.mean() / 255, abs=6e-4)
    box.slider.value = 0
    assert {k: im.value for k, im in box.images.items()} == first  # cached frames come back
    assert (box.images["raw"].width, box.images["raw"].height) == ("64", "48")


def test_untrained_zerodce_warns_and_checkpoint_does_not(video, tmp_path):
    with pytest.warns(UserWarning, match="untrained"):
        box = frame_comparison(video, ("zerodce", "gamma"), max_frames=2)
    assert list(box.images) == ["raw", "zerodce (untrained)", "gamma"]
    torch.manual_seed(1)
    ckpt = save_enhancer(build_enhancer("zerodce"), tmp_path / "zdce.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        box = frame_comparison(video, ("zerodce",), checkpoint=str(ckpt), max_frames=2)
    assert list(box.images) == ["raw", "zerodce"]
    with pytest.raises(ConfigError, match="ambiguous"):
        frame_comparison(video, ("zerodce", "zerodce++"), checkpoint=str(ckpt))
    with pytest.raises(ConfigError, match="reserved"):
        frame_comparison(video, {"raw": build_enhancer("none")})


def test_comparison_figure_grid_and_titles(video):
    fig = comparison_figure(video, _plain_enhancers(), max_frames=10)
    axes = fig.get_axes()
    assert len(axes) == 3 * 3  # rows: raw + 2 enhancers; cols: first, middle, last
    titles = [ax.get_title() for ax in axes]
    assert [ax.get_ylabel() for ax in axes[::3]] == ["raw", "gamma 2", "none"]
    assert titles[0].startswith("frame 0 | mean ") and titles[1].startswith("frame 4 | mean ")
    assert titles[2].startswith("frame 7") and titles[3].startswith("frame 0")  # 8-frame clips
    raw_mean = float(titles[0].rsplit(" ", 1)[1])
    gamma_mean = float(titles[3].rsplit(" ", 1)[1])
    assert gamma_mean > raw_mean
    assert len(comparison_figure(video, {}, frames=[1, 2]).get_axes()) == 2
    with pytest.raises(ConfigError, match="frames"):
        comparison_figure(video, {}, frames=[0, 99], max_frames=10)


def test_brightness_histograms(video):
    frames = read_frames(video, range(4))
    fig = brightness_histograms(frames, _plain_enhancers(), bins=32)
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert [lab.split(" (")[0] for lab in labels] == ["raw", "gamma 2", "none"]
    means = [float(re.search(r"mean (\d\.\d+)", lab).group(1)) for lab in labels]
    assert means[0] == pytest.approx(frames.mean() / 255, abs=1e-3) and means[1] > means[0]
    assert len(brightness_histograms(video, {}, max_frames=3).get_axes()) == 1
    with pytest.raises(ConfigError, match="uint8"):
        brightness_histograms(frames.astype(np.float32), {})


def test_class_counts_pick_video_and_brightness_summary(tiny_synthetic):
    from darknb.data.datasets import build_dataset
    from darknb.report.widgets import brightness_summary, class_counts, pick_video

    train = build_dataset("synthetic", tiny_synthetic, "train")
    test = build_dataset("synthetic", tiny_synthetic, "test")
    table = class_counts(train=train, test=test)
    assert list(table.index) == list(train.classes) and list(table.columns) == ["train", "test", "total"]
    assert table["train"].sum() == len(train.samples) and table["test"].sum() == len(test.samples)
    assert (table["total"] == 4).all()  # 2 train + 2 test scenes in the fixture
    path = pick_video(train, 1)
    assert path.is_file() and path == train.root / train.samples[1][0]
    with pytest.raises(ConfigError, match="video_index"):
        pick_video(train, len(train.samples))

    frames = np.zeros((2, 4, 4, 3), np.uint8)
    frames[:, 0, 0] = 255  # 1 of 16 pixels white, the rest black
    summary = brightness_summary(frames, {"gamma": build_enhancer("gamma")})
    assert summary.loc["raw", "clipped_white_pct"] == pytest.approx(100 / 16)
    assert summary.loc["raw", "black_pct"] == pytest.approx(100 * 15 / 16)
    assert summary.loc["raw", "mean_brightness"] == pytest.approx(1 / 16)


def test_filmstrip_shows_frames_evenly_spaced_with_a_reference_row(video):
    from darknb.report.widgets import filmstrip

    frames = read_frames(video, range(8))
    fig = filmstrip(frames, _plain_enhancers(), columns=4, reference={"well-lit": frames})
    axes = fig.get_axes()
    assert len(axes) == 4 * 4  # rows: well-lit, raw, gamma 2, none; 4 frames each
    assert [ax.get_title().split(" |")[0] for ax in axes[:4]] == ["frame 0", "frame 2", "frame 5",
                                                                  "frame 7"]
    assert [ax.get_ylabel() for ax in axes[::4]] == ["well-lit", "raw", "gamma 2", "none"]
    with pytest.raises(ConfigError, match="columns"):
        filmstrip(frames, _plain_enhancers(), columns=0)
