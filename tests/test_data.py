"""Built-in data (deterministic, position-dependent) and the image-folder loader."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from spp_search.data.images import load_folder, read_image, split
from spp_search.data.synthetic import SyntheticSpec, make_synthetic
from spp_search.infra.errors import ConfigError, DataError

SPEC = SyntheticSpec(num_images=64, num_classes=4, min_size=20, max_size=40, bands=3, seed=1)


def test_synthetic_is_deterministic_by_seed():
    a, b = make_synthetic(SPEC), make_synthetic(SPEC)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))
    c = make_synthetic(SyntheticSpec(**{**SPEC.__dict__, "seed": 2}))
    assert not np.array_equal(a.labels, c.labels) or not np.array_equal(a.images[0], c.images[0])


def test_synthetic_sizes_bands_and_balance():
    data = make_synthetic(SyntheticSpec(num_images=40, min_size=20, max_size=40, bands=5))
    sizes = data.sizes()
    assert sizes.min() >= 20 and sizes.max() <= 40 and len({tuple(s) for s in sizes}) > 10
    assert all(im.shape[-1] == 5 and im.dtype == np.uint8 for im in data.images)
    assert np.bincount(data.labels).tolist() == [10, 10, 10, 10]


def test_class_is_where_the_target_sits():
    """Band 0 minus band 2 (target disk minus blue decoy) is brightest in the label's quadrant."""
    data = make_synthetic(SyntheticSpec(num_images=200, noise=5.0, seed=3))
    hits = 0
    for image, label in zip(data.images, data.labels, strict=True):
        h, w = image.shape[:2]
        signal = image[..., 0].astype(float) - image[..., 2]
        quads = [
            signal[: h // 2, : w // 2],
            signal[: h // 2, w // 2 :],
            signal[h // 2 :, : w // 2],
            signal[h // 2 :, w // 2 :],
        ]
        hits += int(np.argmax([q.mean() for q in quads]) == label)
    assert hits / len(data) > 0.6  # well above the 0.25 of chance (the ring decoy adds noise)


def test_split_is_stratified_and_seeded():
    data = make_synthetic(SPEC)
    train, val = split(data, 0.25, seed=0)
    assert len(train) + len(val) == len(data)
    assert set(val.labels.tolist()) == {0, 1, 2, 3}
    assert np.array_equal(split(data, 0.25, seed=0)[1].labels, val.labels)


def _write(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_folder_loader_reads_png_jpeg_gray_rgba_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "cats" / "a.png", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    _write(tmp_path / "cats" / "b.jpg", rng.integers(0, 255, (25, 15, 3), dtype=np.uint8))
    _write(tmp_path / "dogs" / "c.png", rng.integers(0, 255, (12, 12), dtype=np.uint8))
    _write(tmp_path / "dogs" / "d.png", rng.integers(0, 255, (9, 11, 4), dtype=np.uint8))
    sixteen = tmp_path / "dogs" / "e.png"
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(sixteen)
    (tmp_path / "dogs" / "notes.txt").write_text("ignored")
    data = load_folder(tmp_path)
    assert data.class_names == ("cats", "dogs")
    assert data.labels.tolist() == [0, 0, 1, 1, 1]
    assert [im.shape for im in data.images] == [(20, 30, 3), (25, 15, 3), (12, 12, 1), (9, 11, 4), (8, 8, 1)]
    assert data.images[4].max() == 255 and data.images[4].dtype == np.uint8


def test_corrupt_file_is_a_data_error_naming_the_file(tmp_path):
    bad = tmp_path / "x" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="broken.png"):
        read_image(bad)


@pytest.mark.parametrize("layout", ["missing", "one_class"])
def test_folder_that_is_not_a_dataset_is_a_config_error(tmp_path, layout):
    root = tmp_path / "data"
    if layout == "one_class":
        (root / "only").mkdir(parents=True)
    with pytest.raises(ConfigError, match="`data` must"):
        load_folder(root)
