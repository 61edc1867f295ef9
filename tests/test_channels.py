"""Corruption injection and channel policies on real files."""

from __future__ import annotations

import numpy as np
import pytest

from spp_search.data.channels import conform
from spp_search.data.corruption import CorruptionSpec, corrupt, through_files
from spp_search.data.synthetic import SyntheticSpec, make_synthetic
from spp_search.infra.errors import ConfigError, DataError

DATA = make_synthetic(SyntheticSpec(num_images=40, min_size=16, max_size=24, seed=2))


def test_corruption_rates_hit_the_expected_counts():
    spec = CorruptionSpec(missing_bands=0.1, extra_bands=0.1, swapped_channels=0.25, odd_sizes=0.1, seed=1)
    bad = corrupt(DATA, spec, max_size=24)
    bands = [im.shape[-1] for im in bad.images]
    assert bands.count(2) == 4 and bands.count(4) == 4 and bad.orders.count("bgr") == 10
    sides = [max(im.shape[:2]) for im in bad.images]
    assert sum(s <= 6 or s == 96 for s in sides) == 4


def test_file_kinds_go_through_real_png_files(tmp_path):
    spec = CorruptionSpec(grayscale=0.1, sixteen_bit=0.1, unreadable=0.05, swapped_channels=0.1)
    files = through_files(corrupt(DATA, spec, 24), spec, tmp_path)
    assert sum(im is None for im in files.images) == 2
    assert all(e and "cannot decode" in e for im, e in zip(files.images, files.errors, strict=True) if im is None)
    assert sum(im is not None and im.shape[-1] == 1 for im in files.images) == 8
    assert files.orders.count("bgr") == 4 and all(n.endswith(".png") for n in files.names)
    again = through_files(corrupt(DATA, spec, 24), spec, tmp_path)  # cached: same folder
    assert again.names == files.names


def test_strict_policy_names_the_first_bad_file(tmp_path):
    spec = CorruptionSpec(unreadable=0.05)
    files = through_files(corrupt(DATA, spec, 24), spec, tmp_path)
    with pytest.raises(DataError, match=r"\.png: unreadable.*\(2 of 40 images\)"):
        conform(files, 3, "strict", "as_is")
    assert len(conform(files, 3, "pad_missing", "as_is")) == 38


def test_pad_missing_and_drop_extra():
    bad = corrupt(DATA, CorruptionSpec(missing_bands=0.1, extra_bands=0.1), 24)
    with pytest.raises(DataError, match="has 2 bands, the model takes 3"):
        conform(bad, 3, "strict", "as_is")
    padded = conform(bad, 3, "pad_missing", "as_is")
    assert {im.shape[-1] for im in padded.images} == {3}
    with pytest.raises(DataError, match="fewer than 3 bands"):
        conform(bad, 3, "drop_extra", "as_is")
    only_extra = corrupt(DATA, CorruptionSpec(extra_bands=0.2), 24)
    assert {im.shape[-1] for im in conform(only_extra, 3, "drop_extra", "as_is").images} == {3}


def test_grayscale_is_replicated_not_zero_filled():
    gray = corrupt(DATA, CorruptionSpec(grayscale=1.0), 24)
    out = conform(gray, 3, "pad_missing", "as_is").images[0]
    assert np.array_equal(out[..., 0], out[..., 2])


def test_normalize_restores_rgb_and_as_is_keeps_the_damage():
    bad = corrupt(DATA, CorruptionSpec(swapped_channels=1.0), 24)
    restored = conform(bad, 3, "strict", "normalize")
    assert all(np.array_equal(a, b) for a, b in zip(restored.images, DATA.images, strict=True))
    kept = conform(bad, 3, "strict", "as_is")
    assert not np.array_equal(kept.images[0], DATA.images[0])


def test_rates_are_validated():
    with pytest.raises(ConfigError, match="`unreadable` must be a rate"):
        CorruptionSpec(unreadable=1.5)
    with pytest.raises(ConfigError, match="summing to at most 1"):
        CorruptionSpec(grayscale=0.6, unreadable=0.6)


def test_two_sources_of_the_same_size_never_share_the_corruption_cache(tmp_path):
    """The cache folder was keyed by the corruption spec and the image count only: a second
    dataset of 40 images (another folder, another generator seed) got the first one's files."""
    spec = CorruptionSpec(unreadable=0.05)
    other = make_synthetic(SyntheticSpec(num_images=40, min_size=16, max_size=24, seed=3))
    first = through_files(corrupt(DATA, spec, 24), spec, tmp_path)
    second = through_files(corrupt(other, spec, 24), spec, tmp_path)
    assert first.names[0].rsplit("/", 2)[0] != second.names[0].rsplit("/", 2)[0]  # two cache folders
    readable = [i for i, im in enumerate(second.images) if im is not None and first.images[i] is not None]
    assert any(not np.array_equal(first.images[i], second.images[i]) for i in readable)
    again = through_files(corrupt(other, spec, 24), spec, tmp_path)  # the same content: cached
    assert again.names == second.names
