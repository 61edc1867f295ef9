"""A study's input data as MLflow datasets, so the runs table's Dataset column and filter work.

Every trial run logs two dataset inputs, its training and its validation split (context tags
``training`` / ``validation``). What identifies them:

* built-in data (``synthetic``, ``digits``): the generator's spec, the corruption and the split as the
  source, and a digest of that spec (the same spec generates the same images);
* an image folder: its path, its image-file count and a digest of the files' content (paths and
  bytes), so two folders of the same size never share a digest and an edited folder gets a new one.

The digest of a folder is computed once per process and folder state (paths, sizes, mtimes).
Plain data and hashing only: no backend, no image decoding.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from spp_search.data.images import IMAGE_SUFFIXES

GENERATORS = {"synthetic": "spp_search.data.make_synthetic", "digits": "spp_search.digits.make_digits"}
CONTEXTS = (("train", "training"), ("validation", "validation"))


def describe(data: dict) -> dict:
    """Name, source type, source and digest of a trial's data config (``DataSettings.for_trial``)."""
    split = {"val_fraction": data["val_fraction"], "split_seed": data["split_seed"]}
    corruption = {k: v for k, v in sorted(data.get("corruption", {}).items()) if v}
    if data["source"] in GENERATORS:
        name = data["source"]
        spec = {"generator": GENERATORS[name], **data[name], "corruption": corruption}
        digest = _digest(json.dumps(spec, sort_keys=True))
        profile = {"images": data[name].get("num_images"), **split}
        return {"name": name, "source_type": "code", "source": spec, "digest": digest, "profile": profile}
    root = Path(data["source"]).resolve()
    count, content = folder_digest(root, _state(root))
    digest = _digest(json.dumps({"content": content, "corruption": corruption}, sort_keys=True))
    source = {"uri": str(root), "files": count, "content_sha256": content, "corruption": corruption}
    return {
        "name": root.name,
        "source_type": "local",
        "source": source,
        "digest": digest,
        "profile": {"files": count, **split},
    }


def dataset_inputs(data: dict) -> list:
    """The two ``DatasetInput`` entities (training, validation) every trial run logs."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    base = describe(data)
    inputs = []
    for part, context in CONTEXTS:
        dataset = Dataset(
            name=f"{base['name']}-{part}",
            digest=_digest(f"{base['digest']}:{part}:{json.dumps(base['profile'], sort_keys=True)}"),
            source_type=base["source_type"],
            source=json.dumps(base["source"], sort_keys=True),
            profile=json.dumps({**base["profile"], "split": part}),
        )
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
    return inputs


def _state(root: Path) -> tuple:
    """Paths, sizes and modification times of the folder's image files (the digest's cache key)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return tuple((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


@lru_cache(maxsize=8)
def folder_digest(root: Path, state: tuple) -> tuple[int, str]:
    """(image-file count, SHA-256 over every file's relative path and bytes) of ``root``."""
    sha = hashlib.sha256()
    for relative, _size, _mtime in state:
        sha.update(relative.encode() + b"\0")
        with (root / relative).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
    return len(state), sha.hexdigest()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
