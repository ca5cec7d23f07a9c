"""Local text generation with llama-cpp-python; the only module that imports ``llama_cpp``.

- The model's own chat template (stored in the GGUF) formats the conversation:
  llama-cpp-python reads it from the file's metadata.
- GPU offload is automatic: all layers go to the GPU when this llama.cpp build
  can offload (``llama_supports_gpu_offload()``), none otherwise. There is no
  separate GPU code path; a CUDA build is the same code with a different wheel.
- Threads default to the number of physical cores: hyper-threads slow llama.cpp down.
- A machine with an NVIDIA GPU running a CPU-only build is the common way to
  lose the GPU silently (pip built llama.cpp before CUDA was set up). That case
  is logged once and put on ``GeneratorInfo.notice`` with the rebuild command.

Deliberately not here: prompt assembly (``llm.prompt``), citation handling
(``llm.answer``), downloading or assembling model files (``llm.models``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import KbError


log = logging.getLogger(__name__)

# The version is the one pyproject.toml pins: a rebuild must not move it.
CUDA_REBUILD_COMMAND = (
    'CMAKE_ARGS="-DGGML_CUDA=on" .venv/bin/pip install --force-reinstall --no-cache-dir llama-cpp-python==0.3.36'
)
NVIDIA_DEVICE = "/dev/nvidia0"  # present when the NVIDIA driver sees a GPU, even without nvidia-smi
_warned: set[str] = set()  # notices already logged by this process


class GenerationError(KbError):
    """The model could not be loaded or failed while generating."""


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class GeneratorInfo:
    model: str
    context_window: int
    threads: int
    gpu_layers: int
    gpu_offload_supported: bool
    notice: str | None = None  # something the user should act on, e.g. a GPU this build cannot use
    server: str | None = None  # the model server's address when generation runs there (``llm.model_server``)

    @property
    def runs_on(self) -> str:
        """Where the tokens are computed, for `kb status` and the UI."""
        return placement(self.server, self.gpu_layers, self.gpu_offload_supported, self.threads)


def placement(server: str | None, gpu_layers: int, offload_supported: bool, threads: int) -> str:
    if server:
        return f"the model server at {server}"
    if gpu_layers and offload_supported:
        # -1 means every layer; layers asked for on a build that cannot offload stay on the CPU.
        return f"GPU ({'all layers' if gpu_layers < 0 else f'{gpu_layers} layers'}, llama.cpp)"
    return f"CPU, {threads} threads (llama.cpp)"


def planned_placement(server: str | None, gpu_layers: int | None, threads: int | None) -> str:
    """Where a generator made from these settings would run, without loading a model."""
    if server:
        return placement(server, 0, False, 0)
    offload = gpu_offload_supported()
    layers = (-1 if offload else 0) if gpu_layers is None else gpu_layers
    return placement(None, layers, offload, threads or physical_cores())


class Generator(ABC):
    """A chat model that streams text."""

    info: GeneratorInfo

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens the model's tokenizer makes of ``text``."""

    @abstractmethod
    def stream_chat(self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float) -> Iterator[str]:
        """Yield the reply piece by piece as the model produces it."""


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads not counted)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores: set[tuple[str, str]] = set()
    try:
        processor = physical_id = None
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    processor, physical_id = int(value), "0"
                elif key == "physical id":
                    physical_id = value
                elif key == "core id" and processor in allowed:
                    cores.add((physical_id or "0", value))
    except OSError:
        pass
    return len(cores) or len(allowed)


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def nvidia_gpu_present() -> bool:
    """True when an NVIDIA GPU is visible: ``nvidia-smi -L`` lists one, or its device node exists."""
    if os.path.exists(NVIDIA_DEVICE):
        return True
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return False
    try:
        listed = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):  # a hung driver must not stop the app from starting
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def gpu_notice(offload_supported: bool) -> str | None:
    """The warning for an NVIDIA GPU this llama.cpp build cannot use, logged once per process; else None."""
    if offload_supported or not nvidia_gpu_present():
        return None
    notice = (
        "An NVIDIA GPU is present but this llama-cpp-python build cannot offload to it, so the model runs "
        f"on the CPU. Rebuild it with CUDA: `{CUDA_REBUILD_COMMAND}`"
    )
    if notice not in _warned:
        _warned.add(notice)
        log.warning(notice)
    return notice


class LlamaCppGenerator(Generator):
    """A GGUF model run by llama.cpp on whatever hardware this build supports."""

    def __init__(
        self,
        model_path: Path,
        context_window: int = 4096,
        threads: int | None = None,
        gpu_layers: int | None = None,
        seed: int = 0,
    ) -> None:
        # llama.cpp's threads meet at an OpenMP barrier many times per token. Spinning
        # waiters (the OpenMP default) collapse generation speed as soon as anything
        # else wants a core (measured: 2-9x slower under load; docs/benchmarks.md), so
        # wait passively unless the user chose otherwise. Must be set before the
        # OpenMP runtime starts, i.e. before the first model is loaded.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import llama_cpp

        offload = gpu_offload_supported()
        if gpu_layers is None:
            gpu_layers = -1 if offload else 0  # -1: every layer
        threads = threads or physical_cores()
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=context_window,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=gpu_layers,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise GenerationError(f"llama.cpp could not load {model_path}: {exc}") from exc
        self.info = GeneratorInfo(
            model=Path(model_path).name,
            context_window=context_window,
            threads=threads,
            gpu_layers=gpu_layers,
            gpu_offload_supported=offload,
            notice=gpu_notice(offload),
        )
        self._seed = seed

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream_chat(self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float) -> Iterator[str]:
        try:
            stream = self._llama.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                max_tokens=max_tokens,
                temperature=temperature,
                seed=self._seed,
                stream=True,
            )
            for event in stream:
                piece = event["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
        except (ValueError, RuntimeError) as exc:
            raise GenerationError(f"generation failed: {exc}") from exc
