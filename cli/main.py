"""Command line: ``kb ingest | ask | chat | search | status | collections | remove | models | ui | serve``, the
``ingest`` shortcut, and the commands of their own modules: ``kb eval | eval-qa`` (``cli.evaluation``),
``kb users | keys | audit | feedback`` (``cli.team``).

Builds the settings (flags override ``KB_*`` variables), builds the pipeline and
prints what it returns. All work happens in ``app.pipeline``.

Exit codes: 0 done (an ingest may still list files it could not use), 2 bad
settings or input, 3 the index cannot be used, 130 interrupted.

Deliberately not here: any retrieval or generation logic.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli import evaluation as cli_eval, team as cli_team
from cli.launch import run_ui
from team.binding import check_bind
from team.accounts import Accounts
from team.collections import UnknownCollectionError, delete_collection, ingest_folder
from cli.support import pipeline_or_exit as _pipeline
from cli.support import settings_or_exit as _settings
from app.pipeline import Pipeline
from app.settings import COLLECTION_NAME, Settings
from core.errors import KbError
from core.types import Answer, Turn
from llm.generator import GenerationError
from llm.models import BUILTIN_MODELS, ModelError, resolve_model_path
from retrieval.embedders import EmbedderError, load_embedder
from app.indexing import store_config
from retrieval.backend import copy_collection, open_collection as open_store
from retrieval.store import Collection, StoreError, WriteLock

commands = typer.Typer(add_completion=False, no_args_is_help=True, help="Private question answering over your documents.")

CollectionOption = Annotated[Optional[str], typer.Option("--collection", "-c", help="Knowledge base name (KB_COLLECTION).")]


@commands.command()
def ingest(
    folder: Annotated[Path, typer.Argument(help="Folder of PDF, Markdown and text files.")] = Path("data"),
    collection: CollectionOption = None,
    keep_missing: Annotated[bool, typer.Option("--keep-missing", help="Keep indexed files that are gone from the folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    password: Annotated[Optional[list[str]], typer.Option("--password", help="Password for encrypted PDFs (repeatable).")] = None,
    no_ocr: Annotated[bool, typer.Option("--no-ocr", help="Do not OCR pages without a text layer.")] = False,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="[ADDRESS]",
        help="Read and embed on a Ray cluster (KB_RAY_ADDRESS): `--ray` alone starts one on this machine, "
             "`--ray auto` joins this machine's cluster, or ray://head:10001.")] = None,
) -> None:
    """Index a folder; unchanged files are skipped, changed ones re-indexed, deleted ones removed."""
    base = _settings(collection=collection)
    settings = _settings(
        collection=collection,
        pdf_passwords=[*base.pdf_passwords, *(password or [])] or None,
        ocr=False if no_ocr else None,
        ray_address=ray,
    )
    pipeline = _pipeline(settings)
    try:
        # Documents gone from the folder are removed from the index; the files uploaded to the collection stay.
        report = ingest_folder(pipeline, folder, prune=not keep_missing, progress=False if quiet or as_json else None)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KbError as exc:  # the store cannot be used, or the Ray cluster cannot be reached
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    if as_json:
        typer.echo(report.to_json())
    else:
        typer.echo(f"{settings.collection}: {report.summary()}")
        for failure in report.failed:
            typer.echo(f"  not indexed: {failure.source}: {failure.reason}", err=True)
        for warning in report.warnings:
            typer.echo(f"  warning: {warning.source}: {warning.reason}", err=True)
        if report.interrupted:
            typer.echo("interrupted: the work done so far is saved; run the same command again to finish", err=True)
    if report.interrupted:
        raise typer.Exit(130)


DocumentOption = Annotated[
    Optional[list[str]],
    typer.Option("--document", "-d", help="Search only this document (as `kb status` lists it); repeatable."),
]


def _print_streamed_answer(
    pipeline: Pipeline, question: str, history: list[Turn], as_json: bool = False, documents: list[str] | None = None,
) -> Answer:
    """Stream one answer to the terminal, then its checked form and sources; returns the answer."""
    try:
        stream = pipeline.ask_stream(question, history, documents or None)
        streamed_pieces = []
        for piece in stream:
            streamed_pieces.append(piece)
            if not as_json:
                typer.echo(piece, nl=False)
    except (StoreError, ModelError, GenerationError, ValueError) as exc:
        typer.echo(f"\nerror: {exc}", err=True)
        raise typer.Exit(3) from None
    answer = stream.answer
    assert answer is not None
    if as_json:
        payload = {"answer": asdict(answer), "timings": asdict(stream.timings) if stream.timings else None}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return answer
    typer.echo("")
    streamed = "".join(streamed_pieces).strip()
    if answer.text != streamed:
        # Citation checking moved or dropped markers after the text was streamed.
        typer.echo(f"\nWith checked citations:\n{answer.text}")
    if answer.citations:
        typer.echo("\nSources:")
        for citation in answer.citations:
            typer.echo(f"  [{citation.number}] {citation.location}")
    elif answer.abstained and answer.sources:
        typer.echo("\nClosest passages:")
        for citation in answer.sources:
            typer.echo(f"  [{citation.number}] {citation.location}")
    elif answer.sources:
        typer.echo("\n(This answer cites none of the documents: treat it as unsupported.)")
    for sentence in answer.unsupported_sentences:
        typer.echo(f"  not found in the sources: {sentence.text.strip()}", err=True)
    for sentence in answer.withdrawn:
        typer.echo(f"  withdrawn ({sentence.withdrawn_because}): {sentence.text.strip()}", err=True)
    return answer


@commands.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question, in English or Chinese.")],
    collection: CollectionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print answer, citations and timings as JSON.")] = False,
    document: DocumentOption = None,
) -> None:
    """Answer a question from the indexed documents, citing them as \\[n]."""
    _print_streamed_answer(_pipeline(_settings(collection=collection)), question, [], as_json, document)


@commands.command()
def chat(collection: CollectionOption = None, document: DocumentOption = None) -> None:
    """A conversation in the terminal: follow-up questions ("and its weight?") keep their context."""
    pipeline = _pipeline(_settings(collection=collection))
    history: list[Turn] = []
    typer.echo("Ask a question (an empty line or Ctrl-D ends the conversation).")
    while True:
        try:
            question = input("\n> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not question:
            break
        answer = _print_streamed_answer(pipeline, question, history, documents=document)
        history.append(Turn(question, answer.text))


@commands.command()
def search(
    question: Annotated[str, typer.Argument()],
    collection: CollectionOption = None,
    top: Annotated[int, typer.Option("--top", "-k", help="How many hits to show.")] = 5,
    document: DocumentOption = None,
) -> None:
    """Show the passages retrieval finds for a question (no generation)."""
    settings = _settings(collection=collection)
    pipeline = _pipeline(settings)
    try:
        retrieval = pipeline.retrieve(question, documents=document or None)
    except (StoreError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    if retrieval.scope.scoped and not document:
        typer.echo(f"searched only the documents the question names: {', '.join(retrieval.scope.documents)}")
    for rank, hit in enumerate(retrieval.hits[:top], start=1):
        snippet = " ".join(hit.chunk.text.split())[:160]
        scores = [f"score {hit.score:.3f}"]
        if hit.dense_score is not None:
            scores.append(f"dense {hit.dense_score:.3f}")
        if hit.second_score is not None:
            scores.append(f"second {hit.second_score:.3f}")
        if hit.keyword_score is not None:
            scores.append(f"keyword {hit.keyword_score:.3f}")
        typer.echo(f"{rank}. {hit.chunk.location}  ({', '.join(scores)})\n   {snippet}")


@commands.command()
def status(collection: CollectionOption = None) -> None:
    """What the knowledge base holds."""
    settings = _settings(collection=collection)
    try:
        state = _pipeline(settings).status()
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    if not state.exists:
        typer.echo(f"{state.name}: empty; run `kb ingest <folder>`")
    else:
        second = f", second embedder {state.second_embedder}" if state.second_embedder else ""
        typer.echo(f"{state.name}: {len(state.files)} documents, {state.chunks} chunks, embedder {state.embedder}{second}")
    typer.echo(f"  embedder runs on {state.embedder_runs_on}; generator runs on {state.generator_runs_on}")
    if not state.exists:
        return
    if state.second_vectors_missing:
        typer.echo(f"  {state.second_vectors_missing} chunks have no {state.second_embedder} vector yet: "
                   "English questions use e5 and keywords only until `kb ingest` adds them")
    for source in state.files:
        record = state.records.get(source)
        typer.echo(f"  {record.description if record else source}")


@commands.command()
def collections(
    delete: Annotated[Optional[str], typer.Option("--delete", help="Delete this collection's index and the files uploaded to it (files of your own folders are not touched).")] = None,
    copy_to: Annotated[Optional[str], typer.Option("--copy-to", help="Copy the collection named by -c into Milvus (KB_MILVUS_URI), vectors and all, without embedding again.")] = None,
    collection: CollectionOption = None,
    to: Annotated[Optional[str], typer.Option("--to", help="Name of the copy (default: <name>-milvus).")] = None,
) -> None:
    """List the knowledge bases, delete one, or copy one into Milvus."""
    settings = _settings(collection=collection)
    root = settings.collections_root
    if copy_to is not None:
        _copy_collection(settings, copy_to, to or f"{settings.collection}-milvus")
        return
    if delete is not None:
        try:
            delete_collection(settings, delete)  # and its Milvus side, if it has one
        except UnknownCollectionError:
            typer.echo(f"error: no collection named {delete!r} in {root}", err=True)
            raise typer.Exit(2) from None
        except StoreError as exc:  # an ingest is writing it, or its Milvus cannot be reached
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3) from None
        typer.echo(f"deleted collection {delete} and its uploaded files")
        return
    names = sorted(p.name for p in root.iterdir() if Collection.exists(p)) if root.is_dir() else []
    if not names:
        typer.echo(f"no collections in {root}; run `kb ingest <folder>`")
    for name in names:
        typer.echo(name + ("  (current)" if name == settings.collection else ""))


def _copy_collection(settings: Settings, backend: str, name: str) -> None:
    if backend != "milvus":
        typer.echo(f"error: --copy-to takes 'milvus', not {backend!r}", err=True)
        raise typer.Exit(2)
    if not re.fullmatch(COLLECTION_NAME, name):  # a folder under the collections: no "../", no separators
        typer.echo(f"error: {name!r} is not a collection name (letters, digits, '_', '.', '-'; at most 64)", err=True)
        raise typer.Exit(2)
    pipeline = _pipeline(settings)
    target_folder = settings.collections_root / name
    second = pipeline.second_embedder.identity if pipeline.second_embedder else None
    try:
        source = pipeline.collection()
        with WriteLock(target_folder):
            target = open_store(target_folder, store_config(settings), pipeline.embedder.identity, create=True,
                                second_identity=second, backend="milvus")
            if target.backend != "milvus":
                raise StoreError(f"{target_folder} holds a local collection already; choose another name with --to")
            shown = [0]

            def progress(done: int, total: int) -> None:  # about every 5 %, on one line
                if done - shown[0] >= max(1, total // 20) or done == total:
                    shown[0] = done
                    typer.echo(f"\r{done:,} of {total:,} passages", nl=False, err=True)

            copied = copy_collection(source, target, on_progress=progress)
    except StoreError as exc:
        typer.echo(f"\nerror: {exc}", err=True)
        raise typer.Exit(3) from None
    typer.echo(f"\ncopied {copied:,} passages of {settings.collection} into Milvus as {name} "
               f"({store_config(settings).milvus_uri}); use it with -c {name}")


@commands.command()
def remove(
    sources: Annotated[list[str], typer.Argument(help="Document names as `kb status` lists them.")],
    collection: CollectionOption = None,
) -> None:
    """Remove documents from the index (your files are not touched)."""
    settings = _settings(collection=collection)
    try:
        removed = _pipeline(settings).remove_documents(sources)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    for source in sources:
        typer.echo(f"{'removed' if source in removed else 'not indexed'}: {source}")


@commands.command()
def models() -> None:
    """Assemble and verify the configured generator and embedder models (done once, then cached)."""
    settings = _settings()
    try:
        path = resolve_model_path(settings.llm_model, settings.model_cache)
        embedder = load_embedder(settings.embedding_model, settings.model_cache)
    except (ModelError, EmbedderError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{settings.llm_model}: {path} ({path.stat().st_size:,} bytes, verified)")
    typer.echo(f"embedder {embedder.identity.name}: ready, runs on {embedder.runs_on}")
    for name, model in BUILTIN_MODELS.items():
        typer.echo(f"  built-in: {name} - {model.description}")


@commands.command()
def ui() -> None:
    """Start the web UI (KB_UI_HOST, 127.0.0.1 unless you change it; another address needs accounts), a client of
    the service at KB_SERVICE_URL, which it starts itself when none answers there (cli.launch)."""
    settings = _settings()
    try:
        check_bind(settings.ui_host, Accounts(settings.home).enabled(), setting="KB_UI_HOST")
    except KbError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    command, environment = ui_process(settings)
    raise typer.Exit(run_ui(settings, command, environment))


def ui_process(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The command and environment ``kb ui`` becomes: Streamlit on the app, with the settings' address and limits.

    Streamlit's server (uvicorn) takes the client's address from X-Forwarded-For when the connection comes from
    an address in FORWARDED_ALLOW_IPS, loopback by default: any local client could then name its own address.
    It is set to KB_TRUSTED_PROXIES, empty by default (nobody's header), so the address the UI's login
    throttle sees follows the same rule as `kb serve`'s (``team.throttle``).
    """
    app_file = Path(__file__).resolve().parent.parent / "ui" / "streamlit_app.py"
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_file),
        "--server.address", settings.ui_host,
        "--server.port", str(settings.ui_port),
        "--server.maxUploadSize", str(settings.max_upload_mb),
        "--browser.gatherUsageStats", "false",
        "--server.headless", "true",
        "--client.toolbarMode", "viewer",  # no "Deploy" button: this app is meant to stay local
    ]
    return command, {**os.environ, "FORWARDED_ALLOW_IPS": ",".join(settings.trusted_proxies)}


@commands.command()
def serve() -> None:
    """Start the team service: OpenAI-compatible API, REST, accounts (KB_SERVE_HOST, 127.0.0.1 unless you change it)."""
    settings = _settings()
    typer.echo(f"Service on http://{settings.serve_host}:{settings.serve_port}  (API docs at /docs; Ctrl-C to stop)")
    sys.stdout.flush()
    # Become the server process (python -m server builds its own settings from the same KB_* variables).
    os.execv(sys.executable, [sys.executable, "-m", "server"])


# Commands defined in their own modules; registered here, after the ones above, in the order `kb --help` lists them.
commands.command(name="eval")(cli_eval.evaluate)
commands.command(name="eval-qa")(cli_eval.evaluate_qa)
commands.add_typer(cli_team.users, name="users")
commands.add_typer(cli_team.keys, name="keys")
commands.command(name="audit")(cli_team.audit)
commands.add_typer(cli_team.feedback, name="feedback")


def _ray_without_address(argv: list[str]) -> list[str]:
    """``--ray`` with no address (last, or before another option) means ``--ray local``: typer's options
    always take their value, and ``kb ingest docs --ray`` is how the README writes it."""
    fixed = []
    for position, argument in enumerate(argv):
        fixed.append(argument)
        following = argv[position + 1] if position + 1 < len(argv) else None
        if argument == "--ray" and (following is None or following.startswith("-")):
            fixed.append("local")
    return fixed


def main() -> None:
    commands(args=_ray_without_address(sys.argv[1:]))


_ingest_only = typer.Typer(add_completion=False)
_ingest_only.command()(ingest)


def ingest_entry() -> None:
    """The ``ingest`` console script: ``ingest <folder>`` is ``kb ingest <folder>``."""
    _ingest_only(args=_ray_without_address(sys.argv[1:]))


if __name__ == "__main__":
    main()
