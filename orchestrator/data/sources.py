"""Where rows come from: the dataset reader of the data layer.

`load_rows(path, split, config_name)` reads every form the papers released their data in, through
`datasets`:

- a `save_to_disk` folder (Visual-RFT's `DatasetDict`s; `load_task_dataset` is this case alone);
- a local `.json` / `.jsonl` meta file (Reason-RFT's `*-train-*-cot.json`: a JSON list, or JSON lines),
  whose image paths (a string or a list of strings) are resolved against the file's folder, or
  `image_root`, into absolute path strings; every field is kept;
- a local `.parquet` / `.csv` file, or a local dataset repo folder of data files (`load_dataset(folder)`);
- a Hub id `org/name`, with an optional `@split` suffix and a config name (`load_dataset(id, name)`).

Image columns come back undecoded (`{"bytes", "path"}` dicts, or path strings), and `decode_image`
turns one value into a PIL image or None, so one bad image is a skipped, counted row rather than a
crash of the loader. An empty dataset is a one-line ValueError naming the path.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from PIL import Image

# owner/name, as the Hub spells dataset ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Meta-file fields that hold image paths (Reason-RFT: image; ShareGPT: images; Visual-RFT's JSON: image_path).
IMAGE_FIELDS = ("image", "images", "image_path")
_DATA_FILES = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


def _undecoded(feature: Any) -> Any:
    """The same feature with every `Image` inside it set to decode=False."""
    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    if isinstance(feature, datasets.List):
        return datasets.List(_undecoded(feature.feature), length=feature.length)
    if isinstance(feature, datasets.Features | dict):
        return type(feature)({k: _undecoded(v) for k, v in feature.items()})
    return feature


def undecode_images(dataset: datasets.Dataset) -> datasets.Dataset:
    """`dataset` with its image columns undecoded (cast_column only swaps the feature: no rewrite, no
    cache file next to the dataset)."""
    for name, feature in dataset.features.items():
        undecoded = _undecoded(feature)
        if undecoded != feature:
            dataset = dataset.cast_column(name, undecoded)
    return dataset


def _split_name(names: list[str], split: str | None, where: str) -> str:
    """The split to read: `split`, else "train", else the only one."""
    if split is not None:
        if split not in names:
            raise ValueError(f"{where} has no split {split!r} (splits: {', '.join(names)})")
        return split
    if "train" in names:
        return "train"
    if len(names) == 1:
        return names[0]
    raise ValueError(f"{where} holds splits {names}; name one (path@split or the split setting)")


def _pick_split(loaded: Any, split: str | None, where: str) -> datasets.Dataset:
    """One split of a `DatasetDict` (see `_split_name`); a `Dataset` as it is."""
    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    return loaded[_split_name(list(loaded), split, where)]


def load_task_dataset(path: str | Path, split: str | None = None) -> datasets.Dataset:
    """Load a dataset saved with `save_to_disk` (a `DatasetDict` gives `split`, else "train").

    Only the chosen split is read, so another split's problems cannot fail it. Image columns come
    back undecoded (`{"bytes", "path"}` dicts): decode each with `decode_image` so one bad image is a
    skipped row rather than a crash of the whole data loader.
    """
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"dataset not found: {p}")
    target = p
    index = p / "dataset_dict.json"
    if index.is_file():
        try:
            names = list(json.loads(index.read_text())["splits"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{index}: unreadable split list ({_one_line(e)})") from None
        target = p / _split_name(names, split, str(p))
    elif split not in (None, "train"):
        raise ValueError(f"{p} is a single saved dataset; it has no split {split!r}")
    try:
        loaded = datasets.load_from_disk(str(target))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"not a saved Hugging Face dataset: {p}") from e
    except IndexError:  # datasets cannot concatenate zero shards: a dataset saved with no rows
        which = "" if target == p else f" (split {target.name!r})"
        raise ValueError(f"dataset {p}{which} has no rows") from None
    return undecode_images(_pick_split(loaded, split, str(p)))


def _is_saved(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _read_meta(path: Path) -> list[dict]:
    """The rows of a JSON list or a JSON-lines file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{path}:{n}: not a JSON line ({e})") from None
    else:
        try:
            rows = json.loads(text)
        except ValueError as e:
            raise ValueError(f"{path}: not JSON ({e})") from None
        if isinstance(rows, dict) and isinstance(rows.get("data"), list):
            rows = rows["data"]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: expected a list of row objects")
    return rows


def _resolve(value: Any, root: Path, where: str) -> Any:
    """Image path(s) made absolute against `root`; URLs and absolute paths stay as they are."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_resolve(v, root, where) for v in value]
    if isinstance(value, dict) and "path" in value:  # {"path": ...} items, as some meta files have
        return _resolve(value["path"], root, where)
    if not isinstance(value, str):
        kind = type(value).__name__
        raise ValueError(f"{where}: an image must be a path string or a list of them, got {kind}")
    if "://" in value or Path(value).is_absolute():
        return value
    return str((root / value).resolve())


def _column(name: str, values: list, where: str) -> list:
    """One column Arrow can hold: single image paths become lists when other rows have lists, numbers
    become strings when other rows have strings; anything else mixed is an error naming the column."""
    if name in IMAGE_FIELDS and any(isinstance(v, list) for v in values):
        values = [[v] if isinstance(v, str) else v for v in values]
    kinds = {type(v) for v in values if v is not None}
    if str in kinds and kinds <= {str, int, float}:
        values = [None if v is None else str(v) for v in values]
    try:
        pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as e:
        raise ValueError(f"{where}: column {name!r} mixes value types ({_one_line(e)})") from None
    return values


def load_meta_file(path: str | Path, image_root: str | Path | None = None) -> datasets.Dataset:
    """A JSON list or JSON-lines meta file as a Dataset (all fields kept), its image paths absolute
    (resolved against `image_root`, default the file's folder)."""
    p = Path(path).expanduser().resolve()
    rows = _read_meta(p)
    root = Path(image_root).expanduser().resolve() if image_root is not None else p.parent
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    columns = {}
    for key in keys:
        values = [row.get(key) for row in rows]
        if key in IMAGE_FIELDS:
            values = [_resolve(v, root, f"{p} row {i} field {key!r}") for i, v in enumerate(values)]
        columns[key] = _column(key, values, str(p))
    return datasets.Dataset.from_dict(columns)


def _load_dataset(source: str, split: str | None, config_name: str | None, where: str, **kwargs) -> Any:
    try:
        return datasets.load_dataset(source, name=config_name, split=split, **kwargs)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"dataset not found: {where} ({_one_line(e)})") from None
    except ValueError as e:
        raise ValueError(f"{where}: {_one_line(e)}") from None


def _split_suffix(path: str, split: str | None) -> tuple[str, str | None]:
    """`path@split` → (path, split); a split given both ways must agree."""
    base, _, suffix = path.rpartition("@")
    if not base or not suffix or "/" in suffix:
        return path, split
    if split is not None and split != suffix:
        raise ValueError(f"{path} names split {suffix!r} but the split setting is {split!r}")
    return base, suffix


def load_rows(
    path: str | Path,
    split: str | None = None,
    config_name: str | None = None,
    image_root: str | Path | None = None,
) -> datasets.Dataset:
    """Rows of a dataset from any source in the module docstring, image columns undecoded.

    `split` picks a split (a `path@split` suffix does too); without one, "train" or the only split.
    `config_name` is the dataset config of a Hub id or repo folder; `image_root` is where a meta
    file's relative image paths start (default: its folder).
    """
    text = str(path)
    local = Path(text).expanduser()
    if not local.exists():
        text, split = _split_suffix(text, split)
        local = Path(text).expanduser()
    if local.is_file():
        suffix = local.suffix.lower()
        if suffix in (".json", ".jsonl"):
            if split not in (None, "train"):
                raise ValueError(f"{local} is one meta file; it has no split {split!r}")
            dataset = load_meta_file(local, image_root)
        elif suffix in _DATA_FILES:
            builder = _DATA_FILES[suffix]
            loaded = _load_dataset(builder, split or "train", None, str(local), data_files=str(local))
            dataset = undecode_images(loaded)
        else:
            raise ValueError(f"{local}: unsupported data file (use .json, .jsonl, .parquet, .csv, a folder)")
    elif local.is_dir():
        if _is_saved(local):
            dataset = load_task_dataset(local, split)
        else:
            loaded = _load_dataset(str(local), split, config_name, str(local))
            dataset = undecode_images(_pick_split(loaded, split, str(local)))
    elif _HUB_ID.match(text):
        loaded = _load_dataset(text, split, config_name, text)
        dataset = undecode_images(_pick_split(loaded, split, text))
    else:
        raise FileNotFoundError(f"dataset not found: {path} (no such file or folder, nor a Hub id org/name)")
    if len(dataset) == 0:
        which = f" (split {split!r})" if split else ""
        raise ValueError(f"dataset {path}{which} has no rows")
    return dataset


def decode_image(value: Any) -> Image.Image | None:
    """A PIL RGB image from a dataset value (PIL image, {"bytes","path"} dict, bytes, or a path),
    or None when it cannot be decoded. Never raises."""
    try:
        if isinstance(value, Image.Image):
            image = value
        else:
            if isinstance(value, dict):
                data, path = value.get("bytes"), value.get("path")
                source = io.BytesIO(data) if data else path
            elif isinstance(value, bytes | bytearray):
                source = io.BytesIO(value)
            elif isinstance(value, str | Path):
                source = value
            else:
                return None
            if source is None:
                return None
            image = Image.open(source)
            image.load()  # force the decode here, where errors are caught
        return image.convert("RGB")
    except Exception:  # any decoder error means "bad sample", never a crash
        return None
