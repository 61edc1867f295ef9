"""The real-image task: scikit-learn's handwritten digits at random scale and place among clutter."""

from __future__ import annotations

import numpy as np
import pytest

from spp_search.config.fingerprint import fingerprint
from spp_search.config.settings import build_config
from spp_search.data.digits import DigitsSpec, make_digits
from spp_search.infra.errors import ConfigError


def test_digits_are_deterministic_balanced_and_sized_as_asked():
    spec = DigitsSpec(num_images=200, num_classes=4, min_size=40, max_size=60, seed=3)
    data = make_digits(spec)
    again = make_digits(spec)
    assert all(np.array_equal(a, b) for a, b in zip(data.images, again.images, strict=True))
    assert data.class_names == ("digit_0", "digit_1", "digit_2", "digit_3")
    assert set(np.unique(data.labels)) == {0, 1, 2, 3} and min(np.bincount(data.labels)) >= 40
    sizes = data.sizes()
    assert sizes.min() >= 40 and sizes.max() <= 60 and len(np.unique(sizes[:, 0])) > 5
    assert {im.shape[-1] for im in data.images} == {3} and all(im.dtype == np.uint8 for im in data.images)
    other = make_digits(DigitsSpec(num_images=200, num_classes=4, min_size=40, max_size=60, seed=4))
    assert any(a.shape != b.shape for a, b in zip(data.images, other.images, strict=True))  # another seed, others


def test_each_handwritten_sample_is_used_once_so_no_sample_is_in_train_and_validation(monkeypatch):
    """Two images never come from the same scan while num_images <= 1797."""
    import spp_search.data.digits as digits

    seen = []
    real = digits._one_image
    monkeypatch.setattr(digits, "_one_image", lambda rng, t, o, s: seen.append(t.tobytes()) or real(rng, t, o, s))
    make_digits(DigitsSpec(num_images=300, num_classes=10))
    assert len(seen) == 300 and len(set(seen)) == 300  # 300 different scans


def test_the_target_is_placed_at_varying_scales():
    """No clutter, no noise, one colour: the ink's bounding box is the digit's (scaled) box."""
    spec = DigitsSpec(num_images=60, num_classes=2, min_size=64, max_size=64, clutter=0, noise=0.0, bands=1)
    data = make_digits(spec)
    extents = []
    for image in data.images:
        ink = image[..., 0].astype(float)
        rows = np.flatnonzero(ink.max(axis=1) > ink.min() + 40)
        extents.append(rows.max() - rows.min() + 1)
    assert min(extents) < 0.55 * 64 and max(extents) > 0.75 * 64  # scales 0.3-0.9 of 64 px


def test_config_accepts_digits_and_checks_its_values():
    config = build_config({"data": {"source": "digits", "digits": {"num_images": 100, "num_classes": 5}}})
    assert config.data.source == "digits" and config.data.digits.num_classes == 5
    with pytest.raises(ConfigError, match="`num_classes` must"):
        build_config({"data": {"source": "digits", "digits": {"num_classes": 11}}})
    with pytest.raises(ConfigError, match="`min_scale` must"):
        build_config({"data": {"digits": {"min_scale": 0.9, "max_scale": 0.5}}})


def test_a_trial_loads_digits_with_their_bands():
    from spp_search.data.loading import bands_of, load_trial_data

    cfg = build_config({"data": {"source": "digits", "digits": {"num_images": 40, "num_classes": 2}}}).data.for_trial()
    train, val = load_trial_data(cfg)
    assert len(train) + len(val) == 40 and bands_of(cfg) == 3
    assert train.class_names == ("digit_0", "digit_1")


def test_the_fingerprint_of_a_study_without_digits_is_unchanged_by_the_digits_section():
    base = build_config({})
    other = build_config({"data": {"digits": {"num_images": 99}}})
    assert fingerprint(base) == fingerprint(other)  # a synthetic study ignores the digits settings
    assert fingerprint(build_config({"data": {"source": "digits"}})) != fingerprint(base)
