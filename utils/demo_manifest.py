"""What `make demo` wrote, so that `make clean-demo` deletes exactly that and nothing else.

The demo owns one dataset folder (VOCdevkit/demo) and output folders (logs/demo). Its
manifest, demo_manifest.json in the dataset folder, lists the images and labels it generated
and the output folders its later steps fill (the dataset's ImageSets, train.py's save_dir).
The demo refuses to write where files it did not write already are, and cleaning deletes the
listed files and folders only: a user's own files beside them survive both.

`python -m utils.demo_manifest [VOCdevkit/demo]` cleans; it needs nothing but Python.
"""

import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from utils.errors import UserError

MANIFEST_NAME = "demo_manifest.json"


class DemoFolderError(UserError):
    """The demo would write into folders holding files it did not write."""


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).absolute(), folder.absolute())).as_posix()


def read_manifest(dataset: Path) -> dict | None:
    """The demo's manifest in `dataset`, with paths resolved; None when there is none."""
    path = Path(dataset) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))
        files, outputs = listed["files"], listed["outputs"]
    except (ValueError, KeyError, TypeError) as error:
        raise DemoFolderError(f"{path} is not a demo manifest ({error}); delete the demo's "
                              "folder by hand.") from None
    return {"files": {(Path(dataset) / f).resolve() for f in files},
            "outputs": [(Path(dataset) / f).resolve() for f in outputs]}


def _files_under(folder: Path) -> list[Path]:
    return sorted(p.resolve() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def check_demo_folders(dataset: Path, outputs: Iterable[Path]) -> None:
    """Refuse, before anything is written, when `dataset` or an output folder holds files that
    an earlier demo run did not write."""
    dataset = Path(dataset)
    for folder in [dataset, *map(Path, outputs)]:
        if str(folder).strip() in ("", ".") or Path.cwd().is_relative_to(folder.resolve()) \
                or (folder != dataset and dataset.resolve().is_relative_to(folder.resolve())):
            raise DemoFolderError(f"{str(folder)!r} cannot be a demo folder: it holds the "
                                  "working folder or the dataset; name a folder of its own, "
                                  "such as VOCdevkit/demo or logs/demo.")
    previous = read_manifest(dataset) or {"files": set(), "outputs": []}
    owned = {(dataset / MANIFEST_NAME).resolve(), *previous["files"]}
    owned_dirs = previous["outputs"]
    for folder in [dataset, *map(Path, outputs)]:
        if not folder.exists():
            continue
        foreign = [p for p in _files_under(folder) if p not in owned
                   and not any(p.is_relative_to(d) for d in owned_dirs)]
        if foreign:
            shown = ", ".join(str(p) for p in foreign[:3])
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise DemoFolderError(
                f"{folder} holds files the demo did not write ({shown}{more}). The demo only "
                "writes into folders of its own: move those files, or give the demo other "
                "folders (make demo DEMO_DATA=... DEMO_OUT=...).")


def write_manifest(dataset: Path, files: Iterable[Path], outputs: Iterable[Path]) -> Path:
    """List `files` (written now) and `outputs` (folders filled later) for `clean_demo`."""
    dataset = Path(dataset)
    listed = {"files": sorted(_relative(f, dataset) for f in files),
              "outputs": [_relative(Path(o), dataset) for o in outputs]}
    path = dataset / MANIFEST_NAME
    path.write_text(json.dumps(listed, indent=1) + "\n", encoding="utf-8")
    return path


def clean_demo(dataset: Path) -> int:
    """Delete the files and output folders the manifest lists, the manifest, and the folders
    this leaves empty; returns how many files were deleted. Nothing else is touched."""
    dataset = Path(dataset)
    listed = read_manifest(dataset)
    if listed is None:
        return 0
    deleted = 0
    for folder in listed["outputs"]:
        if folder.is_dir():
            deleted += len(_files_under(folder))
            shutil.rmtree(folder)
    parents = set()
    for path in listed["files"]:
        if path.is_file():
            path.unlink()
            deleted += 1
        parents.update(path.parents)
    (dataset / MANIFEST_NAME).unlink()
    parents.add(dataset.resolve())
    for folder in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        if folder.is_relative_to(dataset.resolve()) and folder.is_dir() \
                and not any(folder.iterdir()):
            folder.rmdir()
    return deleted


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    dataset = Path(args[0] if args else "VOCdevkit/demo")
    if read_manifest(dataset) is None:
        print(f"No demo to clean: {dataset / MANIFEST_NAME} does not exist.")
        return
    print(f"Deleted {clean_demo(dataset)} files the demo wrote ({dataset}, and its outputs).")


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        sys.exit(f"error: {error}")
