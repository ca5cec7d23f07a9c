"""The Milvus connection and the two collections a knowledge base uses there: the one module that imports pymilvus.

A knowledge base stored in Milvus (``retrieval.milvus_store``) is two Milvus collections:

- ``<name>``: one row per passage. ``id`` (our chunk id), ``document`` (the source, partition key), ``page``,
  ``heading_path`` (JSON text), ``start_char``, ``end_char``, ``ocr``, ``header``, the document's fields
  (``title``, ``organisation``, ``year``, ``quarter``, ``period_end``, ``version``, ``published``) as scalars,
  ``text``, ``keywords`` (the passage's keyword tokens, ``text.keywords``, with a BM25 function into
  ``sparse``) and ``vector`` (the embedder's). The second embedder's vectors have a collection of their
  own (``<name>_second``, ``retrieval.milvus_second``).
- ``<name>_meta``: one row per document (hash, chunk ids, pages, reader version, record) and a header row
  (format version, embedder identity, next id, generation). Milvus wants a vector field in every collection,
  so it carries a 2-dimensional one that is never searched.

Keyword tokens, not the raw text, go through Milvus's analyzer: the tokens are the project's own (jieba
search mode for Chinese, stemmed English minus stopwords), so BM25 sees the same terms on both backends.
Each token is written with every non-word character as ``_`` ("3.11" -> "3_11"), so Milvus Lite's
``standard`` analyzer (``\\w+``) and a server's ``whitespace`` analyzer both split them back exactly.

Errors of Milvus come out as ``StoreError`` naming the address; a Milvus Lite file that another process
holds open says how to share it (Milvus Lite's server mode, or a Milvus server).

Deliberately not here: what the rows mean (``retrieval.milvus_store``), Milvus's own rankers (fusion stays
``retrieval.fusion``), users and roles on the server (the token is passed through, never stored).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

from retrieval.manifest import StoreError

MAX_TEXT = 65_535  # bytes: Milvus's longest VARCHAR
QUERY_PAGE = 4_096  # rows per query page (Milvus caps offset + limit at 16,384)
KEYS_PER_FILTER = 500  # string keys in one filter expression
_NON_WORD = re.compile(r"\W", re.UNICODE)
_connections: dict[tuple[str, str], MilvusConnection] = {}
_connections_lock = threading.Lock()


class _NoSessionTimestamp(logging.Filter):
    """Milvus Lite keeps no session timestamps; pymilvus warns on every paged query and then uses the
    client's clock, which is right for a store in this process."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_NoSessionTimestamp())


class _LiteStartFailure(logging.Filter):
    """Milvus Lite logs the traceback of a file it cannot open (another process's lock, a file where its folder
    should be) and pymilvus then raises only "Open local milvus failed": the record is kept here, not printed,
    and ``MilvusConnection`` turns it into an error that says what to do."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and "Failed to start" in record.getMessage():
            self.failures.last = record.exc_info[1]
            return False
        return True

    def take(self) -> BaseException | None:
        failure, self.failures.last = getattr(self.failures, "last", None), None
        return failure


_lite_start_failure = _LiteStartFailure()
logging.getLogger("milvus_lite.server_manager").addFilter(_lite_start_failure)


def keyword_field_token(token: str) -> str:
    """A keyword token as it is written into the ``keywords`` field: one ``\\w+`` word."""
    return _NON_WORD.sub("_", token)


def literal(value: str) -> str:
    """A string literal for a Milvus filter expression. Milvus's parser knows the escapes ``\\\\ \\" \\n \\r``
    (``\\t`` too) but not ``\\u`` or ``\\x``, and takes any other character as it is: JSON's escapes would be refused."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _keys_filter(keys: Sequence[str]) -> str:
    """The filter of the rows with these string primary keys (``key``: only ``<name>_meta`` has string keys).
    pymilvus's own ``get``/``delete`` by string ids put each between single quotes unescaped, so a document
    named ``it's.md`` broke the expression and one named ``x' or key != '`` matched every row."""
    return f"key in [{', '.join(literal(key) for key in keys)}]"


def is_lite(uri: str) -> bool:
    return "://" not in uri


class MilvusConnection:
    """One client per address and token, shared by every collection of the process (a Milvus Lite file
    may be opened by one process only, and a second client in the same process would start it twice)."""

    def __init__(self, uri: str, token: str | None) -> None:
        self.uri = uri
        self.lite = is_lite(uri)
        self._loaded: set[str] = set()
        try:
            if self.lite:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
                _lite_start_failure.take()
            self._client = MilvusClient(uri=uri, token=token or "")
            # Milvus Lite in its server mode (``milvus-lite server``) speaks over http too, with Lite's analyzers.
            self.lite_engine = self.lite or str(self._client.get_server_version()).startswith("milvus_lite")
        except (MilvusException, OSError) as exc:
            if not self.lite:
                raise StoreError(f"cannot reach Milvus at {uri}: {getattr(exc, 'message', exc)}") from None
            cause = _lite_start_failure.take()
            if cause is not None and type(cause).__name__ != "DataDirLockedError":
                raise StoreError(f"cannot open the Milvus Lite file {uri} (KB_MILVUS_URI): {cause}") from None
            if cause is not None or isinstance(exc, MilvusException):
                raise StoreError(
                    f"cannot open the Milvus Lite file {uri}: another process (an ingest, `kb serve` or `kb ui`) "
                    "has it open, and Milvus Lite allows one process per file. To share it, run it as a server "
                    f"(`.venv/bin/milvus-lite server --data-dir {uri} --port 19530`) and set "
                    "KB_MILVUS_URI=http://127.0.0.1:19530, or use a Milvus server"
                ) from None
            raise StoreError(f"cannot open the Milvus Lite file {uri} (KB_MILVUS_URI): {exc}") from None

    @classmethod
    def to(cls, uri: str, token: str | None) -> MilvusConnection:
        key = (str(Path(uri).resolve()) if is_lite(uri) else uri, token or "")
        with _connections_lock:
            if key not in _connections:
                _connections[key] = cls(uri, token)
            return _connections[key]

    def _call(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except MilvusException as exc:
            raise StoreError(f"Milvus at {self.uri}: {what} failed: {exc.message}") from None

    # ----- collections -------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether the collection exists; when it does, it is loaded for search (Milvus Lite reopens a file
        with every collection released, and a server may have released one)."""
        if name in self._loaded:
            return True
        if not self._call("has_collection", self._client.has_collection, name):
            return False
        state = self._call("get_load_state", self._client.get_load_state, name)
        if "Loaded" not in str(state.get("state")):
            self._call("load_collection", self._client.load_collection, name)
        self._loaded.add(name)
        return True

    def drop(self, name: str) -> None:
        self._loaded.discard(name)
        if self._call("has_collection", self._client.has_collection, name):
            self._call("drop_collection", self._client.drop_collection, name)

    def create_passages(self, name: str, dim: int, index: str) -> None:
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("document", DataType.VARCHAR, max_length=MAX_TEXT, is_partition_key=True)
        for field in ("heading_path", "header", "text", "title"):
            schema.add_field(field, DataType.VARCHAR, max_length=MAX_TEXT)
        for field in ("page", "start_char", "end_char", "year", "quarter"):
            schema.add_field(field, DataType.INT64, nullable=field in ("page", "year", "quarter"))
        schema.add_field("ocr", DataType.BOOL)
        for field in ("organisation", "period_end", "version", "published"):
            schema.add_field(field, DataType.VARCHAR, max_length=1024, nullable=True)
        # Lite's "standard" is \w+ (keeps a Chinese word whole); a server's "standard" splits Chinese into
        # characters, its "whitespace" does what Lite's does here.
        analyzer = {"tokenizer": "standard" if self.lite_engine else "whitespace"}
        schema.add_field("keywords", DataType.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True,
                         analyzer_params=analyzer)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="keywords_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["keywords"], output_field_names=["sparse"]))
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index_params = self._client.prepare_index_params()
        index_params.add_index("vector", index_type=index, metric_type="IP", params=_vector_index_params(index))
        index_params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                               params={"bm25_k1": 1.2, "bm25_b": 0.75})  # the local index's k1 and b
        self._call("create_collection", self._client.create_collection, name, schema=schema,
                   index_params=index_params, consistency_level="Strong")

    def create_second(self, name: str, dim: int) -> None:
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("document", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("second_of", DataType.VARCHAR, max_length=256)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index_params = self._client.prepare_index_params()
        index_params.add_index("vector", index_type="FLAT", metric_type="IP")  # read back by id, never searched
        self._call("create_collection", self._client.create_collection, name, schema=schema,
                   index_params=index_params, consistency_level="Strong")

    def create_meta(self, name: str) -> None:
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=MAX_TEXT)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("payload", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)
        index_params = self._client.prepare_index_params()
        index_params.add_index("unused", index_type="FLAT", metric_type="L2")
        self._call("create_collection", self._client.create_collection, name, schema=schema,
                   index_params=index_params, consistency_level="Strong")

    def vector_dim(self, name: str, field: str) -> int | None:
        described = self._call("describe_collection", self._client.describe_collection, name)
        for row in described["fields"]:
            if row["name"] == field:
                return int(row.get("params", {}).get("dim", 0)) or None
        return None

    def vector_index(self, name: str) -> str:
        described = self._call("describe_index", self._client.describe_index, name, "vector")
        return str(described.get("index_type", "?")).lower()

    # ----- rows --------------------------------------------------------------
    def insert(self, name: str, rows: Sequence[dict]) -> None:
        if rows:
            self._call("insert", self._client.insert, name, list(rows))

    def upsert(self, name: str, rows: Sequence[dict], partial: bool = False) -> None:
        if rows:
            self._call("upsert", self._client.upsert, name, list(rows), partial_update=partial)

    def delete(self, name: str, expression: str) -> None:
        self._call("delete", self._client.delete, name, filter=expression)

    def delete_ids(self, name: str, ids: Sequence) -> None:
        if not len(ids):
            return
        if isinstance(ids[0], str):  # by our own, escaped filter (``_keys_filter``)
            for start in range(0, len(ids), KEYS_PER_FILTER):
                self._call("delete", self._client.delete, name, filter=_keys_filter(ids[start:start + KEYS_PER_FILTER]))
            return
        self._call("delete", self._client.delete, name, ids=list(ids))

    def flush(self, name: str) -> None:
        self._call("flush", self._client.flush, name)

    def get(self, name: str, ids: Sequence, fields: Sequence[str]) -> list[dict]:
        if not len(ids):
            return []
        if isinstance(ids[0], str):  # by our own, escaped filter (``_keys_filter``)
            rows = []
            for start in range(0, len(ids), KEYS_PER_FILTER):
                part = ids[start:start + KEYS_PER_FILTER]
                rows += self._call("get", self._client.query, name, filter=_keys_filter(part),
                                   output_fields=list(fields), limit=len(part))
            return rows
        return list(self._call("get", self._client.get, name, ids=list(ids), output_fields=list(fields)))

    def query(self, name: str, expression: str, fields: Sequence[str]) -> Iterator[dict]:
        """Every row matching ``expression``, page by page (any number of rows)."""
        iterator = self._call("query", self._client.query_iterator, name, batch_size=QUERY_PAGE,
                              filter=expression, output_fields=list(fields))
        try:
            while True:
                page = self._call("query", iterator.next)
                if not page:
                    return
                yield from page
        finally:
            iterator.close()

    def count(self, name: str, expression: str = "") -> int:
        rows = self._call("count", self._client.query, name, filter=expression, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def search(self, name: str, field: str, query: Sequence[float] | str, k: int, expression: str,
               fields: Sequence[str]) -> list[tuple[int, float, dict]]:
        """(id, score, row) of the ``k`` best rows, best first. ``query`` is a vector, or the keyword text of a
        BM25 search; BM25 scores come back from Milvus negated (more negative is better) and are made positive."""
        bm25 = isinstance(query, str)
        params = {"metric_type": "BM25"} if bm25 else {"metric_type": "IP"}
        hits = self._call("search", self._client.search, name, data=[query], anns_field=field, limit=k,
                          filter=expression, output_fields=list(fields), search_params=params)[0]
        return [(int(hit["id"]), abs(float(hit["distance"])) if bm25 else float(hit["distance"]), hit["entity"])
                for hit in hits]


def _vector_index_params(index: str) -> dict:
    if index == "HNSW":
        return {"M": 16, "efConstruction": 200}
    if index == "IVF_FLAT":
        return {"nlist": 1024}
    return {}
