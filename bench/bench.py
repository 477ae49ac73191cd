"""Benchmarks: ask-path overhead, indexing throughput, incremental updates, cold start, FAISS scale.

    .venv/bin/python bench/bench.py [--quick] [--out bench/out]

Prints one table of figures with their targets, writes `<out>/results.json` and plots search
latency and memory per chunk against corpus size. Every loop is bounded, so it stops by itself:
about 10-15 minutes in full on 2 cores, under 2 minutes with --quick (small sizes, no 1M).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from bot.engine import Engine  # noqa: E402
from bot.engine.extractive import one_document  # noqa: E402
from index.chunking import chunk_document, fold  # noqa: E402
from index.chunks import Chunks  # noqa: E402
from index.embedder import Embedder  # noqa: E402
from index.indexer import build, update  # noqa: E402
from index.loaders import load_bytes, scan  # noqa: E402
from index.reader import SHIPPED, Reader, encode  # noqa: E402
from index.records import Document  # noqa: E402
from index.store import KINDS, DocInfo, Params, Store, choose_kind, make_faiss  # noqa: E402

SCIFACT = Path("/work/shared/eval/scifact/corpus.jsonl")
QA = ROOT / "tests" / "qa" / "statement_qa.jsonl"
DIM = 384
K = 10  # recall@K
CANDIDATES = 100  # dense candidates the hybrid search asks FAISS for (index/search.py)
FULL = dict(rounds=3, docs=200, sizes=(10_000, 100_000, 1_000_000), queries=200, hnsw_budget=300)
QUICK = dict(rounds=1, docs=30, sizes=(10_000, 30_000), queries=100, hnsw_budget=60)

# Questions a reader of data/statement.txt might ask (the last ones are not answered there).
QUESTIONS = """\
Will Jeremy Corbyn run as an independent?|Which seat is Jeremy Corbyn fighting to keep?
How many candidates are on the Labour shortlist in Islington North?|Who is the chair of Momentum?
Was the local constituency party consulted about the shortlist?|What did Kate Dove say?
Who bears responsibility for the mess according to Momentum?|Did the local party back Corbyn?
How long has Corbyn been the MP for Islington North?|Who blocked Jeremy Corbyn from standing?
How has Starmer treated the people of Islington?|What kind of election campaign is expected?
What does Momentum urge the Labour leadership not to repeat?|Who represents Hackney?
Who was Britain's first black woman MP?|What did Keir Starmer call Diane Abbott?
Did local members vote for Diane Abbott to run?|Did Corbyn support public ownership?
Which policies did Corbyn's leadership bring back to the mainstream?|Who imposed the shortlist?
What did Corbyn do to Labour's membership?|What kind of campaign was Corbyn subjected to?
How did Corbyn face the character assassination campaign?|What did Starmer say about the media?
Did Starmer promise to build on Corbyn's legacy?|What were Starmer's attacks really about?
Whose interests does Momentum say Starmer favours?|What are Labour's founding values?
Will Momentum allow Labour's socialist values to be driven out?|Who is Richard Townsend?
What will Momentum continue to do within the party?|Which candidates will Momentum back?
What reason do some on the right give for blocking Corbyn?|Did the NEC motion mention it?
When was the motion passed at the National Executive Committee?|Who got the motion passed?
How will many socialists feel about these events?|What are Corbyn's supporters calling for?
What are Momentum warning party activists about?|Could members be expelled for supporting him?
Can retweets lead to expulsion from Labour?|Will Momentum stay in Labour?
What is the political home of the trade union movement?|What does Momentum ask people to do?
Who took the photograph of Jeremy Corbyn?|Under what license is the image published?
Which Creative Commons version is the image licensed under?|Is Corbyn standing for Labour?
Why is Corbyn running as an independent?|What does Momentum say about Hackney?
Was there any consultation with local members?|What happened in Islington North?
How many years has Corbyn served Islington North?|Did Corbyn want to run for Labour again?
What did Starmer and his Westminster clique deny local people?|Who is Diane Abbott?
What does Momentum think of the selection process?|What did Corbyn turn Labour into?
Which policies are more urgent and popular than ever?|What positions did Corbyn champion?
Was Corbyn opposed to war and austerity?|What does Momentum say about fairer taxation?
How does Momentum describe the campaign against Corbyn?|Who did Starmer call his friend?
What does Momentum say about the media's treatment of Corbyn?|Who is Keir Starmer?
What did Starmer do instead of building on Corbyn's legacy?|Are people falsifying history?
What does Momentum say about elite interests?|Will Momentum campaign in the coming election?
What is Momentum's position on trade unionist candidates?|Is Diane Abbott being blocked too?
What was the real reason Corbyn was blocked?|Is the conflict about anti-Semitism?
What should supporters do to back Corbyn's campaign?|Are Labour officials likely to expel members?
Should Labour members advocate support for Corbyn?|What did a Momentum spokesperson say?
Will Momentum leave the Labour party?|What does Momentum want the party to be?
How can people help Momentum canvass?|What is the source of the image?
Is the image licensed under Creative Commons?|Who decides the Labour candidate in Islington?
What did the Labour apparatus do?|What did Kate Dove call the situation for Labour?
Which leader is blamed for the debacle?|What debacle does Momentum want to avoid in Hackney?
Did Corbyn face the campaign with decency?|Was Corbyn's leadership popular?
What does Momentum say Starmer's attacks drove out?|What do supporters want volunteers to do?
What should activists be aware of?|What kind of posts could get members expelled?
Who will Momentum canvass for?|What is the title of the statement?
Will Labour be divided in the election?|What is Momentum?
What happens to Corbyn's Labour membership now?|What is the weather in London today?
Who won the 1966 World Cup?|How do I reset my password?"""


class Table:
    """Rows of (figure, measure, value, target, verdict), printed once at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, fig: str, name: str, value: str, target: str = "", ok: bool | None = None):
        self.rows.append((fig, name, value, target, {True: "met", False: "MISSED"}.get(ok, "")))

    def print(self) -> None:
        _print_rows(("fig", "measure", "value", "target", "verdict"), self.rows)


def _print_rows(header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def clock(fn, *args, **kwargs):
    """(result, seconds) of one call: the only timer in this file."""
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def step(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def pct(seconds: list[float], q: float) -> float:
    """The q-th percentile of timings, in milliseconds."""
    return float(np.percentile(seconds, q) * 1000)


# -- 1. warm ask path -------------------------------------------------------------------------


def questions() -> list[str]:
    """The QA set's questions when there is one (what people actually ask), topped up to 100."""
    ours = QUESTIONS.replace("\n", "|").split("|")
    if not QA.is_file():
        return ours
    rows = [json.loads(line) for line in QA.read_text(encoding="utf-8").splitlines() if line]
    qa = [r["question"] for r in rows]
    return (qa + [q for q in ours if q not in qa])[:100]


def warm_ask(table: Table, embedder: Embedder, reader: Reader, work: Path, rounds: int) -> dict:
    """Per question, interleaved: bare encode, search, and the bot's own async answer path
    (`await engine.answer`, model work on the worker thread) with the default READER=none and
    with the bundled reader, on the shipped corpus; then the reader's bare forward pass on the
    very inputs it read for each question."""
    shutil.copytree(ROOT / "data", work / "data")
    engines = {}
    for name, r in (("ask", None), ("ask, reader", reader)):
        settings = Settings(data_dir=work / "data", state_dir=work / name.replace(", ", "-"))
        engines[name] = Engine(settings, embedder, reader=r)
        engines[name].open()
    loop = asyncio.new_event_loop()
    ops = {"encode": lambda q: embedder.encode([q]), "search": engines["ask"].search}
    for name, engine in engines.items():
        ops[name] = lambda q, e=engine: loop.run_until_complete(e.answer(q))[0]
    qs = questions()
    for q in qs[:20]:  # warm-up: first calls allocate and fill caches
        for op in ops.values():
            op(q)
    times: dict[str, list[float]] = {name: [] for name in ops}
    found = dict.fromkeys(engines, 0)
    names = list(ops)
    for r in range(rounds):
        for i, q in enumerate(qs):
            turn = i % len(names)
            for name in names[turn:] + names[:turn]:  # rotate, so no op always runs first
                out, seconds = clock(ops[name], q)
                times[name].append(seconds)
                if name in found and r == 0:
                    found[name] += out.found
    forward = [
        clock(embedder.worker.call, _forward(reader, engines["ask"], q))[1] for q in qs * rounds
    ]
    loop.close()
    p = {name: {"p50": pct(t, 50), "p95": pct(t, 95)} for name, t in times.items()}
    # paired per question, so machine noise common to both calls cancels
    reading = np.subtract(times["ask, reader"], times["search"])
    share = pct(reading, 50) / pct(forward, 50)
    gap = pct(np.subtract(times["search"], times["encode"]), 50)
    f = "1 ask"
    table.add(f, "questions x rounds", f"{len(qs)} x {rounds}")
    for name in ops:
        table.add(f, f"{name} p50 / p95", f"{p[name]['p50']:.1f} / {p[name]['p95']:.1f} ms")
    for name in engines:
        ask50, ask95 = p[name]["p50"], p[name]["p95"]
        table.add(f, f"{name}: answered", f"{found[name]} of {len(qs)}")
        table.add(f, f"{name}: async path, p50", f"{ask50:.1f} ms", "<= 40 ms", ask50 <= 40)
        table.add(f, f"{name}: async path, p95", f"{ask95:.1f} ms", "<= 60 ms", ask95 <= 60)
        table.add(f, f"{name} / encode at p50", f"{ask50 / p['encode']['p50']:.2f}x")
    table.add(f, "search - encode (median)", f"{gap:.2f} ms", "<= 5 ms", gap <= 5)
    table.add(
        f,
        "reader: ask - search / bare forward (median)",
        f"{pct(reading, 50):.1f} / {pct(forward, 50):.1f} ms = {share:.2f}x",
        "<= 1.2x",
        share <= 1.2,
    )
    return {
        "questions": len(qs),
        "rounds": rounds,
        "answered": found,
        "ms": p,
        "reader_ms": pct(reading, 50),
        "forward_ms": pct(forward, 50),
        "search_minus_encode_ms": gap,
    }


def _forward(reader: Reader, engine: Engine, question: str):
    """The reader's bare forward pass on the passages the engine would have it read."""
    chunks = [h.chunk for h in one_document(engine.search(question))]
    enc, _, _ = encode(reader.tokenizer, [question] * len(chunks), chunks)
    return lambda: reader.forward(enc)


# -- 2-3. indexing throughput and incremental updates ------------------------------------------


def write_scifact(root: Path, first: int, count: int) -> list[str]:
    """Write SciFact abstracts first..first+count as `<id>.txt` (title, blank line, text)."""
    root.mkdir(parents=True, exist_ok=True)
    names = []
    with open(SCIFACT, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= first + count:
                break
            if i >= first:
                row = json.loads(line)
                names.append(f"{row['_id']}.txt")
                (root / names[-1]).write_text(f"{row['title']}\n\n{row['text']}\n", "utf-8")
    return names


def read_docs(root: Path):
    """Documents and DocInfos as `update()` would read them."""
    docs, infos = [], {}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for path, rel in scan(root):
        data = path.read_bytes()
        doc = load_bytes(path.name, data, rel, None)
        docs.append(doc)
        infos[rel] = DocInfo(rel, doc.title, str(path), hashlib.sha256(data).hexdigest(), 0, now)
    return docs, infos


def indexing(table: Table, embedder: Embedder, work: Path, ndocs: int, parts: int = 4) -> dict:
    """Fresh build() vs raw model.encode on the same chunk texts; then update() with 0 and 1 new.

    The corpus is measured in `parts` slices, raw and build side by side in alternating order,
    so a neighbour's load lands on both rather than on whichever ran during it.
    """
    s = Settings()
    params = Params(embedder.model_id, embedder.dim, s.chunk_size, s.chunk_overlap)
    root, store = work / "scifact", Store(work / "scifact-index")
    write_scifact(root, 0, ndocs)
    docs, infos = read_docs(root)
    options = dict(ann_threshold=s.ann_threshold, kind=s.index_type)
    sizes = (s.chunk_size, s.chunk_overlap)
    build(docs[:5], infos, params, embedder)  # warm-up at these text lengths
    seconds, n = {"raw": 0.0, "build": 0.0}, 0
    for i in range(parts):
        part = docs[i::parts]
        texts = [fold(c.text) for d in part for c in chunk_document(d, *sizes)]
        n += len(texts)
        runs = {
            "raw": (embedder.model.encode, (texts,), dict(batch_size=64, show_progress_bar=False)),
            "build": (build, (part, infos, params, embedder), options),
        }
        for name in list(runs)[:: 1 if i % 2 else -1]:
            fn, args, kwargs = runs[name]
            seconds[name] += clock(fn, *args, **kwargs)[1]
    (_, full), full_s = clock(update, store, root, params, embedder, rebuild=True, **options)
    (_, same), same_s = clock(update, store, root, params, embedder, **options)
    new = write_scifact(root, ndocs, 1)[0]
    (after, added), added_s = clock(update, store, root, params, embedder, **options)
    new_chunks, ratio = after.infos[new].chunks, seconds["raw"] / seconds["build"]
    f = "2 index"
    table.add(f, "SciFact docs -> chunks", f"{ndocs} -> {n}")
    for name, label in (("raw", "raw model.encode"), ("build", "indexer.build (fresh)")):
        table.add(f, label, f"{n / seconds[name]:.1f} chunks/s ({seconds[name]:.1f} s)")
    table.add(f, "build / raw throughput", f"{ratio:.2f}x", ">= 0.8x", ratio >= 0.8)
    table.add(
        f,
        "update(), nothing changed",
        f"{same_s:.2f} s, re-embedded {same.embedded}",
        "~1 s, 0",
        same.embedded == 0 and not same.changed and same_s <= 1.5,
    )
    f = "3 incr"
    table.add(
        f,
        f"update(), +1 doc on {n} chunks",
        f"{added_s:.2f} s, re-embedded {added.embedded} (doc has {new_chunks})",
        "= doc's chunks",
        added.embedded == new_chunks,
    )
    table.add(f, "vs full update(rebuild=True)", f"{added_s / full_s:.1%} of {full_s:.1f} s")
    return {
        "docs": ndocs,
        "chunks": n,
        **{f"{k}_s": v for k, v in seconds.items()},
        "full_s": full_s,
        "unchanged_s": same_s,
        "added_s": added_s,
        "added_embedded": added.embedded,
        "added_chunks": new_chunks,
    }


# -- 4. cold start ------------------------------------------------------------------------------

CHILD = """
import json, os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, os.getcwd())
from pathlib import Path
import psutil, sentence_transformers
from bot.config import Settings
from bot.engine import Engine
from index.embedder import Embedder
from index.reader import SHIPPED, Reader
rss = lambda: psutil.Process().memory_info().rss / 1e6
t1, m1 = time.perf_counter(), rss()
embedder = Embedder()
reader = Reader(SHIPPED, embedder.worker)
t2, m2 = time.perf_counter(), rss()
engine = Engine(Settings(data_dir=Path(sys.argv[1]), state_dir=Path(sys.argv[2])), embedder,
                reader=reader)
engine.open()
engine.ask("warm")
t3, m3 = time.perf_counter(), rss()
print(json.dumps(dict(imports=t1 - t0, model=t2 - t1, open=t3 - t2, rss_imports=m1,
                      rss_model=m2, rss_index=m3)))
"""


def cold_start(table: Table, data: Path, state: Path) -> dict:
    """A fresh process: imports, Embedder(), Engine.open() of an existing index, RSS after each."""
    cmd = [sys.executable, "-c", CHILD, str(data), str(state)]
    out, wall = clock(subprocess.run, cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"cold-start process failed:\n{out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    loaded, extra = r["model"] + r["open"], r["rss_index"] - r["rss_model"]
    f = "4 cold"
    table.add(f, "imports (bot + sentence-transformers)", f"{r['imports']:.2f} s")
    table.add(f, "models / Engine.open() + first ask", f"{r['model']:.2f} s / {r['open']:.2f} s")
    table.add(f, "models and index loaded after imports", f"{loaded:.2f} s", "< 1 s", loaded < 1)
    table.add(f, "process start to ready (wall)", f"{wall:.2f} s")
    table.add(
        f,
        "RSS after imports / model / index",
        f"{r['rss_imports']:.0f} / {r['rss_model']:.0f} / {r['rss_index']:.0f} MB",
    )
    table.add(f, "memory beyond the model (shipped)", f"{extra:.0f} MB", "< 100 MB", extra < 100)
    return {**r, "wall": wall}


# -- 5. FAISS at scale ----------------------------------------------------------------------------


def synthetic(n: int, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors from a mixture of Gaussians, and queries that are perturbed held-out points.

    3,000 random centres at 1M (fewer in smaller corpora: ~100 chunks a topic, so that a 10k
    corpus is clustered too); cluster sizes (log-normal weights) and spreads vary. The noise is
    about as long as the centre: points of one cluster have cosine ~0.5 and nearest neighbours
    ~0.55-0.6, about what MiniLM gives for related passages.
    """
    rng = np.random.default_rng(seed)
    centres = min(3000, n // 100)
    c = _unit(rng.standard_normal((centres, DIM), dtype=np.float32))
    weights = rng.lognormal(0, 1, centres)
    spread = (rng.uniform(0.7, 1.3, centres) / np.sqrt(DIM)).astype(np.float32)
    x = np.empty((n + nq, DIM), np.float32)
    for a in range(0, n + nq, 100_000):  # in blocks, to bound temporary memory
        b = min(a + 100_000, n + nq)
        label = rng.choice(centres, b - a, p=weights / weights.sum())
        noise = rng.standard_normal((b - a, DIM), np.float32) * spread[label, None]
        x[a:b] = _unit(c[label] + noise)
    q = _unit(x[n:] + rng.standard_normal((nq, DIM), np.float32) * np.float32(0.3 / np.sqrt(DIM)))
    return x[:n], q


def _unit(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def probe(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, budget_s: float) -> dict:
    """One query at a time, as the bot searches: latency, and recall@K against exact.

    One OpenMP thread: a single query gains little from two, and on a busy 2-core machine two
    threads wait on each other (flat search at 30k went from 1.5 ms to ~30 ms).
    """
    faiss.omp_set_num_threads(1)
    seconds, hits = [], []
    for i, q in enumerate(queries):
        (_, ids), t = clock(index.search, q[None], CANDIDATES)
        seconds.append(t)
        hits.append(len(set(ids[0, :K]) & set(truth[i])) / K)
        if sum(seconds) > budget_s and i >= 30:  # exhaustive search at 1M is slow: stop early
            break
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return {
        "p50_ms": pct(seconds, 50),
        "p95_ms": pct(seconds, 95),
        "recall": float(np.mean(hits)),
        "queries": len(seconds),
    }


def scale(table: Table, sizes: tuple[int, ...], nq: int, hnsw_budget: float) -> list[dict]:
    """Build, single-query latency, bytes per chunk and recall@K of each index kind by size."""
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # builds and exact search use every core
    threshold, rows, hnsw_rate = Settings().ann_threshold, [], None
    for n in sizes:
        step(f"  {n:,} chunks")
        x, q = synthetic(n, nq)
        auto = choose_kind(n, "auto", threshold)
        flat, flat_s = clock(make_faiss, x, "flat")
        truth = flat.search(q, K)[1]  # exact top-K, one batched call
        for kind in KINDS:
            if kind == "hnsw" and hnsw_rate and n / hnsw_rate > hnsw_budget:
                rows.append(
                    {
                        "n": n,
                        "kind": kind,
                        "auto": kind == auto,
                        "skipped": f"build would take ~{n / hnsw_rate:.0f} s",
                    }
                )
                continue
            index, build_s = (flat, flat_s) if kind == "flat" else clock(make_faiss, x, kind)
            if kind == "hnsw":
                hnsw_rate = n / build_s / 1.2  # per vector, HNSW inserts slow as the graph grows
            row = {
                "n": n,
                "kind": kind,
                "auto": kind == auto,
                "build_s": build_s,
                "bytes_per_chunk": len(faiss.serialize_index(index)) / n,
                **probe(index, q, truth, budget_s=10),
            }
            rows.append(row)
            del index
        del flat, x
    f = "5 scale"
    top = [r for r in rows if r["n"] == sizes[-1] and "skipped" not in r]
    for r in top:
        gb = r["bytes_per_chunk"] * r["n"] / 1e9
        name = f"{r['kind']}{' (auto)' if r['auto'] else ''} at {r['n']:,}"
        table.add(f, f"{name}: p95", f"{r['p95_ms']:.2f} ms", "< 20 ms", r["p95_ms"] < 20)
        table.add(f, f"{name}: recall@{K}", f"{r['recall']:.3f}", ">= 0.95", r["recall"] >= 0.95)
        table.add(f, f"{name}: index memory", f"{gb:.2f} GB", "< 2 GB", gb < 2)
    return rows


def records(table: Table, n: int, ivf_gb: float | None, per_doc: int = 20) -> dict:
    """Memory of what the engine holds beside FAISS at `n` chunks: document texts and chunks.

    Chunks of 800 characters with 5 sentences each, 20 to a document, measured by tracemalloc;
    vectors and BM25 are memory-mapped from disk and not counted.
    """
    import tracemalloc

    size, sentence = 800, 160
    line = "Momentum will campaign for socialist Labour candidates in the coming election. "
    body = (line * (size * per_doc // len(line) + 1))[: size * per_doc]
    tracemalloc.start()
    docs = {}
    for d in range(n // per_doc):
        doc_id = f"d{d}.txt"
        docs[doc_id] = Document(doc_id, f"Doc {d}", f"{body}{d}", doc_id)  # its own string
    texts = tracemalloc.get_traced_memory()[0]
    starts = list(enumerate(range(0, size * per_doc, size)))
    sentences = [[(b, b + sentence - 1) for b in range(a, a + size, sentence)] for _, a in starts]
    rows = ((d, a, a + size, f"¶{c + 1}", sentences[c]) for d in docs for c, a in starts)
    chunks = Chunks(docs, rows)
    held = tracemalloc.get_traced_memory()[0] - texts
    objects = list(chunks)  # what a list of Chunk records, each with its text, would hold
    listed = tracemalloc.get_traced_memory()[0] - texts - held
    tracemalloc.stop()
    del objects, chunks, docs
    f, r = "6 memory", {"n": n, "texts": texts, "chunks": held, "chunk_objects": listed}
    table.add(f, f"document texts at {n:,} chunks", f"{texts / 1e9:.2f} GB")
    table.add(f, "chunk records (arrays)", f"{held / 1e6:.0f} MB = {held / n:.0f} B/chunk")
    table.add(f, "  as a list of Chunk objects", f"{listed / 1e9:.2f} GB, {listed / n:.0f} B/chunk")
    if ivf_gb is not None:
        total = ivf_gb + (texts + held) / 1e9
        table.add(f, "with the IVF index: total", f"{total:.2f} GB", "< 2 GB", total < 2)
    return r


def print_scale(rows: list[dict]) -> None:
    header = ("chunks", "kind", "build s", "p50 ms", "p95 ms", "B/chunk", f"recall@{K}", "queries")
    out = []
    for r in rows:
        name = r["kind"] + (" (auto)" if r["auto"] else "")
        if "skipped" in r:
            out.append((f"{r['n']:,}", name, f"skipped: {r['skipped']}", "", "", "", "", ""))
            continue
        out.append(
            (
                f"{r['n']:,}",
                name,
                f"{r['build_s']:.1f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['bytes_per_chunk']:.0f}",
                f"{r['recall']:.3f}",
                r["queries"],
            )
        )
    _print_rows(header, out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, color in zip(KINDS, ("tab:blue", "tab:orange", "tab:green"), strict=True):
        rs = [r for r in rows if r["kind"] == kind and "skipped" not in r]
        n = [r["n"] for r in rs]
        lat.plot(n, [r["p50_ms"] for r in rs], "o-", color=color, label=f"{kind} p50")
        lat.plot(n, [r["p95_ms"] for r in rs], "s--", color=color, label=f"{kind} p95")
        mem.plot(n, [r["bytes_per_chunk"] for r in rs], "o-", color=color, label=kind)
    lat.axhline(20, color="grey", lw=0.8, ls=":", label="p95 target")
    mem.axhline(2000, color="grey", lw=0.8, ls=":", label="2 GB at 1M")
    lat.set(
        xscale="log",
        yscale="log",
        xlabel="chunks",
        ylabel="single-query search, ms",
        title=f"FAISS search latency (k={CANDIDATES})",
    )
    mem.set(
        xscale="log",
        xlabel="chunks",
        ylabel="bytes per chunk (serialized index)",
        title="FAISS index memory per chunk",
        ylim=(0, None),
    )
    for ax in (lat, mem):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, no 1M: a smoke test")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--plot", type=Path, help="bench/scale.png, or <out>/scale.png if quick")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    plot_path = args.plot or (args.out if args.quick else ROOT / "bench") / "scale.png"
    table, results, started = Table(), {"quick": args.quick, "cpus": os.cpu_count()}, time.time()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        embedder = Embedder()
        reader = Reader(SHIPPED, embedder.worker)
        step("1 warm ask path")
        results["ask"] = warm_ask(table, embedder, reader, work / "ask", cfg["rounds"])
        step("2-3 indexing and incremental update")
        results["indexing"] = indexing(table, embedder, work / "index", cfg["docs"])
        step("4 cold start")
        results["cold_start"] = cold_start(
            table, work / "ask" / "data", work / "ask" / "ask-reader"
        )
        del embedder, reader
        step("5 FAISS at scale")
        results["scale"] = scale(table, cfg["sizes"], cfg["queries"], cfg["hnsw_budget"])
        step("6 memory beside FAISS")
        n = cfg["sizes"][-1]
        ivf = [r for r in results["scale"] if r["n"] == n and r["kind"] == "ivf"]
        gb = ivf[0]["bytes_per_chunk"] * n / 1e9 if ivf else None
        results["records"] = records(table, n, gb)
    results["seconds"], results["table"] = time.time() - started, table.rows
    print()
    table.print()
    print()
    print_scale(results["scale"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    plot(results["scale"], plot_path)
    print(f"\n{results['seconds']:.0f} s; wrote {args.out / 'results.json'} and {plot_path}")


if __name__ == "__main__":
    main()
