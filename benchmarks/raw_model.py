"""The default model opened directly through llama-cpp-python, for experiments that read its logits.

``llm.generator`` wraps the supported, streaming API and hides the logits;
the abstention experiments (``verifier_experiment.py``,
``confidence_experiment.py``) need them, so they share this opener instead.

Worked example::

    model = open_raw_model(load_settings(), logits_all=True)
    tokens = model.prompt_tokens([{"role": "user", "content": "Hello"}])
    model.llm.eval(tokens)

Deliberately not here: anything the app uses (it goes through ``llm.generator``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.settings import Settings
from llm.models import resolve_model_path


@dataclass(frozen=True)
class RawModel:
    llm: Any  # llama_cpp.Llama
    formatter: Any  # the model's own chat template

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat-formatted prompt of ``messages`` as tokens, special tokens included."""
        text = self.formatter(messages=messages).prompt
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)


def open_raw_model(settings: Settings, *, logits_all: bool = False, context_window: int = 2048) -> RawModel:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = Llama(model_path=str(resolve_model_path(settings.llm_model, settings.model_cache)), n_ctx=context_window,
                n_threads=2, logits_all=logits_all, verbose=False)
    formatter = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                                    eos_token=llm.detokenize([llm.token_eos()]).decode(), bos_token="")
    return RawModel(llm, formatter)
