"""Look at a user's image folder once, before any trial: what is there, and what cannot be used.

A study on a folder with a truncated JPEG used to fail every trial identically (``data_error``)
and say why only in MLflow. ``check_folder`` decodes every file once, with the same reader the
trials use (``data.read_image``), and returns a :class:`DataCheck`: per class the usable count,
size range, modes and file kinds, the band counts, the unreadable files with their reasons and
the files that are not images. ``require`` turns what makes a study pointless into a one-line
``ConfigError`` (exit 2 before anything is written):

* a class folder with fewer than 2 usable images, or no usable images at all;
* fewer than two classes with usable images;
* any unreadable file under ``data.on_unreadable: error``.

Under the default ``on_unreadable: skip`` unreadable files are left out (one warning line each,
and ``data_check.json`` on the study's parent MLflow run); ``keep`` hands them to the trials, as a
plain training script would, where the ``channel_policy`` decides (``strict``: ``data_error``).
Band-count differences are reported but not judged: reconciling them is the ``channel_policy``
factor's job.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spp_search.data.images import class_folders, image_files, read_image, validation_count
from spp_search.data.loading import BUILT_IN
from spp_search.infra.errors import ConfigError, DataError, must

ON_UNREADABLE = ("skip", "error", "keep")  # keep: the trials meet them, their channel policy decides
MIN_PER_CLASS = 2


@dataclass(frozen=True)
class FileRecord:
    """One image file: its class, how it is stored, and its decoded shape or its error."""

    path: str  # relative to the folder
    label: str
    kind: str  # the format the file really holds (PNG, JPEG, ...), not its suffix
    mode: str  # PIL's mode as stored (RGB, L, P, CMYK, I;16, ...)
    height: int = 0
    width: int = 0
    bands: int = 0  # after decoding (see data.read_image)
    error: str | None = None  # why it cannot be read (without the path)


@dataclass
class DataCheck:
    """What ``check_folder`` found in one folder."""

    root: str
    classes: list[str]
    records: list[FileRecord] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # files without an image suffix, ignored
    seconds: float = 0.0

    def usable(self, label: str | None = None) -> list[FileRecord]:
        return [r for r in self.records if r.error is None and label in (None, r.label)]

    def unreadable(self) -> list[FileRecord]:
        return [r for r in self.records if r.error is not None]

    def problems(self) -> list[str]:
        """Why a study on this folder cannot work, one sentence each (empty: it can)."""
        counts = {c: len(self.usable(c)) for c in self.classes}
        short = [c for c, n in counts.items() if n < MIN_PER_CLASS]
        if not self.usable():
            return [f"no usable images in {len(self.records)} image files"]
        found = [f"class `{c}` has {counts[c]} usable image(s), fewer than {MIN_PER_CLASS}" for c in short]
        if len(counts) - len(short) < 2:
            found.append(f"only one class has usable images ({[c for c in counts if c not in short]})")
        return found

    def summary(self) -> list[str]:
        """The human summary: one header line, one line per class, the totals, the files left out."""
        usable = self.usable()
        lines = [
            f"data {self.root}: {len(self.classes)} classes, {len(usable)} usable of {len(self.records)} image "
            f"files, {len(self.unreadable())} unreadable, {len(self.others)} other files ignored "
            f"(checked in {self.seconds:.1f} s)"
        ]
        for c in self.classes:
            mine = self.usable(c)
            bad = sum(1 for r in self.records if r.label == c and r.error)
            lines.append(f"  {c}: {len(mine)} usable, {bad} unreadable; {_sizes(mine)}; modes {_count(mine, 'mode')}")
        if usable:
            counts = Counter(r.bands for r in usable)
            lines.append(
                f"  file kinds {_count(usable, 'kind')}; "
                + ", ".join(f"{k}-band {v}" for k, v in sorted(counts.items()))
            )
            if len(counts) > 1:
                lines.append(
                    f"  band counts differ ({sorted(counts)}): the channel_policy factor decides (strict refuses them)"
                )
        lines += [f"  unreadable: {r.path}: {r.error}" for r in self.unreadable()]
        lines += [f"  ignored (not .png/.jpg/.jpeg): {p}" for p in self.others]
        return lines

    def to_dict(self) -> dict:
        """The JSON artifact (``data_check.json`` on the parent run)."""
        return {
            "root": self.root,
            "classes": {c: len(self.usable(c)) for c in self.classes},
            "usable": len(self.usable()),
            "bands": sorted({r.bands for r in self.usable()}),
            "unreadable": [{"path": r.path, "error": r.error} for r in self.unreadable()],
            "ignored": self.others,
            "problems": self.problems(),
            "files": [asdict(r) for r in self.records],
        }


def _count(records: list[FileRecord], attribute: str) -> str:
    counts = Counter(str(getattr(r, attribute)) for r in records)
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def _sizes(records: list[FileRecord]) -> str:
    if not records:
        return "no sizes"
    heights, widths = [r.height for r in records], [r.width for r in records]
    return f"height {min(heights)}-{max(heights)}, width {min(widths)}-{max(widths)} px"


def _inspect(path: Path, root: Path, label: str) -> FileRecord:
    from PIL import Image

    relative = path.relative_to(root).as_posix()
    kind, mode = "?", "?"
    try:
        with Image.open(path) as img:
            kind, mode = img.format or "?", img.mode
    except Exception:  # noqa: BLE001 - read_image below says why, in the project's words
        pass
    try:
        image = read_image(path)
    except DataError as exc:  # the reader names the file first: the record keeps the reason only
        return FileRecord(relative, label, kind, mode, error=str(exc).removeprefix(f"{path}: "))
    return FileRecord(relative, label, kind, mode, image.shape[0], image.shape[1], image.shape[2])


def check_folder(root: Path) -> DataCheck:
    """Decode every image file under ``root/<class>/`` once; ``ConfigError`` if it is no dataset."""
    start = time.perf_counter()
    folders = class_folders(root)
    check = DataCheck(str(root), [f.name for f in folders])
    for folder in folders:
        images, others = image_files(folder)
        check.records += [_inspect(p, root, folder.name) for p in images]
        check.others += [p.relative_to(root).as_posix() for p in others]
    check.seconds = time.perf_counter() - start
    return check


def require(check: DataCheck, on_unreadable: str) -> None:
    """Raise a one-line ``ConfigError`` if the folder cannot make a study (see the module doc)."""
    problems = check.problems()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(
            f"`data` {check.root}: {problems[0]}{more}; a study needs at least {MIN_PER_CLASS} usable images in "
            "each of 2 or more classes. Add images or remove the class folder (see `study.py check-data`)."
        )
    bad = check.unreadable()
    if bad and on_unreadable == "error":
        first = bad[0]
        raise ConfigError(
            f"`data` holds {len(bad)} unreadable file(s), first {first.path}: {first.error.rstrip('.')}; "
            "or set data.on_unreadable: skip to leave such files out."
        )


def policy_warning(check: DataCheck, policy: str, searched: bool) -> str | None:
    """A warning when the band counts differ and a fixed ``strict`` channel policy will refuse
    them in every trial (the study would record nothing but ``data_error``)."""
    bands = sorted({r.bands for r in check.usable()})
    if len(bands) < 2 or searched or policy != "strict":
        return None
    return (
        f"warning: images have {bands} bands and channel_policy is strict: every trial would end in data_error. "
        "Set defaults.channel_policy: pad_missing (or drop_extra) in the config, or search channel_policy."
    )


MIN_VAL_PER_CLASS = 10  # below it one image moves a class's validation accuracy by over 10 points


def validation_counts(check: DataCheck, val_fraction: float) -> dict[str, int]:
    """Validation images per class as ``images.split`` will cut them."""
    return {c: validation_count(len(check.usable(c)), val_fraction) for c in check.classes}


def split_warning(check: DataCheck, val_fraction: float) -> str | None:
    """A warning when the validation split is too small to separate the candidates: with fewer
    than ``MIN_VAL_PER_CLASS`` images in a class, validation accuracy moves in steps too coarse
    to rank configurations (18 images: 5.6 points per image), and trials tie or swap by chance."""
    counts = validation_counts(check, val_fraction)
    if not counts or min(counts.values()) >= MIN_VAL_PER_CLASS:
        return None
    total = sum(counts.values())
    smallest = min(counts, key=counts.get)
    needed = math.ceil((MIN_VAL_PER_CLASS - 0.5) / val_fraction)
    return (
        f"warning: the validation split holds {total} images ({counts[smallest]} in class {smallest!r}, "
        f"val_fraction {val_fraction:g}): one image is {100 / total:.1f} points of val_accuracy, too coarse to "
        f"tell configurations apart. Add images (about {needed} per class give {MIN_VAL_PER_CLASS} validation "
        "images each) or raise data.val_fraction."
    )


def warnings(check: DataCheck, on_unreadable: str = "skip") -> list[str]:
    """One line per unreadable file, naming it and what happens to it."""
    if on_unreadable == "keep":
        return [
            f"warning: {r.path} is unreadable ({r.error}); kept: the channel policy decides" for r in check.unreadable()
        ]
    return [
        f"warning: left out {r.path}: {r.error} (data.on_unreadable: error would stop the study instead)"
        for r in check.unreadable()
    ]


def print_check(check: DataCheck, console) -> None:
    """The check's summary on the console, as a study prints it before its first trial."""
    for line in check.summary():
        console.print(line, markup=False, highlight=False)


def print_warnings(check: DataCheck, data, channel_policy: str, searched: bool, console) -> None:
    """Stop on what makes the folder unusable (``require``); warn about what is left out or will
    fail, and about a validation split too small to rank trials. ``data``: the ``DataSettings``."""
    require(check, data.on_unreadable)
    found = [policy_warning(check, channel_policy, searched), split_warning(check, data.val_fraction)]
    for line in [*warnings(check, data.on_unreadable), *(w for w in found if w)]:
        console.print(line, markup=False, highlight=False, style="yellow")


def before_study(data, channel_policy: str, searched: bool, console) -> dict | None:
    """Check a folder source once, before anything is created: print its summary and one warning
    per file left out; a ``ConfigError`` (exit 2) if it cannot make a study. Returns the check as
    a dict for the parent MLflow run (None for built-in data). ``data``: the ``DataSettings``."""
    if data.source in BUILT_IN:
        return None
    check = check_folder(Path(data.source))
    print_check(check, console)
    print_warnings(check, data, channel_policy, searched, console)
    return check.to_dict()


def command(data, channel_policy: str, searched: bool, json_path: Path | None) -> int:
    """``check-data``: the pre-study check of ``data`` (a ``DataSettings``) on its own, with the
    full record as JSON on request; a ``ConfigError`` (exit 2) when a study could not use it."""
    import json

    from rich.console import Console

    if data.source in BUILT_IN:
        raise ConfigError(must("data", "be an image folder", data.source, "Pass --data DIR."))
    console = Console(soft_wrap=True)
    check = check_folder(Path(data.source))
    print_check(check, console)
    if json_path is not None:
        json_path.write_text(json.dumps(check.to_dict(), indent=1))
    print_warnings(check, data, channel_policy, searched, console)
    left_out = f", {len(check.unreadable())} left out" if check.unreadable() else ""
    console.print(f"ok: a study can use {len(check.usable())} images in {len(check.classes)} classes{left_out}")
    return 0
