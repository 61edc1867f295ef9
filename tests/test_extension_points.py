"""Every extension point is one table; an entry that lacks a field (or names something that does
not exist) fails here, naming the entry."""

from __future__ import annotations

import re

import numpy as np
import pytest

from spp_search.config.factors import FACTORS
from spp_search.infra import storage
from spp_search.model.impls import SPP_IMPLS
from spp_search.trial.outcomes import EVIDENCE, KINDS, RECORDS, STATUSES, Outcome


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_outcome_kind_says_everything(name):
    kind = KINDS[name]
    assert kind.record in RECORDS and kind.status in STATUSES, name
    assert set(kind.evidence) <= set(EVIDENCE), f"{name}: unknown evidence {set(kind.evidence) - set(EVIDENCE)}"
    assert re.fullmatch(r"#[0-9a-f]{6}", kind.colour) and kind.meaning.strip(), name
    assert (kind.explain is not None) == kind.failed, f"{name}: a failure must explain itself, ok/pruned must not"
    assert not (kind.fatal and kind.retry), name
    assert (kind.status == "FINISHED") == (kind.record == "complete"), name


def test_outcome_is_built_from_the_table_and_exception_types_have_one_home():
    assert [o.value for o in Outcome] == list(KINDS)
    raised = [t for kind in KINDS.values() for t in kind.raised_as]
    assert len(raised) == len(set(raised))


@pytest.mark.parametrize("name", sorted(SPP_IMPLS))
def test_every_spp_implementation_builds_and_pools(name):
    """The entry's ``build`` imports, makes a head, and ``any_size`` is true to what it does."""
    import keras

    from spp_search.model.variants import spp_head

    impl = SPP_IMPLS[name]
    assert impl.origin.strip() and isinstance(impl.any_size, bool), name
    assert callable(impl.load()), name
    size = (None, None) if impl.any_size else (12, 12)
    inputs = keras.Input((*size, 3))
    model = keras.Model(inputs, spp_head(inputs, name, (1, 2), "max"))
    lengths = {model(np.ones((2, s, s, 3), "float32")).shape[-1] for s in ((12, 16) if impl.any_size else (12,))}
    assert lengths == {3 * (1 + 4)}, f"{name}: output lengths {lengths}"


def test_the_spp_impl_factor_offers_every_implementation():
    for impl in SPP_IMPLS:
        assert FACTORS["spp_impl"].check("spp_impl", impl) == impl


@pytest.mark.parametrize("name", sorted(storage.SCHEMES))
def test_every_storage_scheme_says_how_to_open_lock_and_keep_alive(name):
    scheme = storage.SCHEMES[name]
    assert scheme.liveness in storage.LIVENESS and callable(scheme.open) and callable(scheme.lock), name
    assert scheme.example.split(":", 1)[0].split("+", 1)[0] == name, f"{name}: example {scheme.example}"
    assert storage.scheme_of(scheme.example) is scheme
