"""Many servers: start-up time, memory and first-question latency with lazily loaded server
indexes (the bot's way) against loading every server's index at start.

    .venv/bin/python bench/shards.py [--servers 1000] [--questions 100] [--out bench/out/shards]

Builds once (and keeps in --out) a state folder with the shipped corpus and N servers, each with
one uploaded document of its own: a short distinct text, stored and indexed with the real model
through `Engine.add_document`, as `/docs add` does. Then each measurement runs in a fresh process
(imports and model loaded first, not counted in start-up):

- lazy: `Engine.open()`; then the first question in `--questions` servers picked at random (it
  loads that server's index) and a second one in each (from memory);
- eager: `Engine.open()` and every server's index loaded, as the bot did before; the same questions;
- for both: RSS after start-up and after the questions, the cache's estimate of what it holds.

Question times are wall and CPU time (on one OpenMP thread), the CPU time being less swayed by
whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PLACES = "Hackney Camden Leyton Bow Dalston Stratford Barking Ilford Walworth Peckham".split()
BODIES = "allotment society|harbour board|chess club|food bank|tenants' association".split("|")
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def handbook(i: int) -> tuple[str, str]:
    """Server i's own document and a question it answers."""
    rng = random.Random(i)
    body, place, day = rng.choice(BODIES), rng.choice(PLACES), rng.choice(DAYS)
    hour, members = rng.randint(6, 21), rng.randint(12, 400)
    text = (
        f"# Handbook of server {i}\n\n"
        f"The {body} of {place} meets every {day} at {hour}:00 in room {i % 50 + 1}. "
        f"It has {members} members and its treasurer is elected each spring. "
        f"Minutes of every meeting are posted within {rng.randint(2, 9)} days.\n"
    )
    return text, f"When does the {body} of {place} meet?"


def guild_id(i: int) -> int:
    return ((1_400_000_000_000 + i) << 22) | 1


def build(state: Path, data: Path, servers: int) -> float:
    from bot.config import Settings
    from bot.engine import Engine
    from index.embedder import Embedder

    engine = Engine(Settings(data_dir=data, state_dir=state), Embedder())
    engine.open()
    have = {int(p.name) for p in (state / "guilds").glob("*") if p.name.isdigit()}
    started = time.perf_counter()
    for i in range(servers):
        if guild_id(i) not in have:
            engine.add_document(guild_id(i), "handbook.md", handbook(i)[0].encode(), user_id=1)
    return time.perf_counter() - started


CHILD = r"""
import json, random, statistics, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench.shards import guild_id, handbook
from bot.config import Settings
from bot.engine import Engine
from bot.health import rss
from index.embedder import Embedder

mode, state, data = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
servers, questions = int(sys.argv[5]), int(sys.argv[6])
embedder = Embedder()
embedder.encode(["warm up"])
settings = Settings(data_dir=data, state_dir=state, guild_index_cache=10**12)
base = rss()
started = time.perf_counter()
engine = Engine(settings, embedder)
engine.open()
if mode == "eager":  # what the bot did before: every server's index loaded at start
    for i in range(servers):
        engine.guilds.get(guild_id(i))
startup, after_start = time.perf_counter() - started, rss()
engine.ask("How long has Corbyn been an MP?")  # first-call costs (tokenizers, BM25) not counted
picked = random.Random(0).sample(range(servers), questions)
times = {k: [] for k in ("load", "first", "second", "load_cpu", "first_cpu", "second_cpu")}
found = 0
for round_ in ("first", "second"):
    for i in picked:
        t, c = time.perf_counter(), time.process_time()  # CPU time: less swayed by other work
        engine.guilds.get(guild_id(i))  # the first question's index load (lazy), else a hit
        loaded, loaded_cpu = time.perf_counter(), time.process_time()
        answer = engine.ask(handbook(i)[1], guild_id=guild_id(i))
        times[round_].append(time.perf_counter() - t)
        times[round_ + "_cpu"].append(time.process_time() - c)
        if round_ == "first":
            times["load"].append(loaded - t)
            times["load_cpu"].append(loaded_cpu - c)
        found += any(c.chunk.doc_id == "uploads/handbook.md" for c in answer.citations)
print(json.dumps(dict(
    startup=startup, rss_model=base, rss_started=after_start, rss_after=rss(),
    **times, found=found, asked=2 * questions,
    cached=len(engine.guilds.loaded()), cache_bytes=engine.guilds.bytes,
)))
"""


def measure(mode: str, state: Path, data: Path, servers: int, questions: int) -> dict:
    cmd = [sys.executable, "-c", CHILD, str(ROOT), mode, str(state), str(data)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # steadier on a shared machine: no spinning
    out = subprocess.run(
        [*cmd, str(servers), str(questions)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"{mode} process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ms(values: list[float], q: float) -> str:
    return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:.1f}"


def latency(r: dict, key: str) -> str:
    cpu = statistics.median(r[key + "_cpu"]) * 1000
    return f"{ms(r[key], 50)} / {ms(r[key], 95)} ms; {cpu:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "shards")
    args = parser.parse_args()
    state, data = args.out / f"state-{args.servers}", ROOT / "data"
    built = build(state, data, args.servers)
    print(f"{args.servers} servers, one upload each: built in {built:.0f} s (0 when cached)")
    size = sum(p.stat().st_size for p in (state / "indexes").rglob("*") if p.is_file())
    print(f"index files of the servers and the corpus: {size / 1e6:.1f} MB on disk")
    results = {m: measure(m, state, data, args.servers, args.questions) for m in ("lazy", "eager")}
    print("\n| measure | lazy (first question loads it) | eager (all loaded at start) |")
    print("| --- | --- | --- |")
    rows = {
        "start-up (`Engine.open()`, model already loaded)": lambda r: f"{r['startup']:.2f} s",
        "RSS after start-up": lambda r: f"{r['rss_started'] / 1e6:.0f} MB",
        "memory beyond the model after start-up": lambda r: (
            f"{(r['rss_started'] - r['rss_model']) / 1e6:.0f} MB"
        ),
        f"first question in a server ({args.questions} servers), wall p50 / p95; CPU p50": (
            lambda r: latency(r, "first")
        ),
        "of which loading the server's index": lambda r: latency(r, "load"),
        "second question there": lambda r: latency(r, "second"),
        "RSS after the questions": lambda r: f"{r['rss_after'] / 1e6:.0f} MB",
        "server indexes in memory (cache's estimate)": lambda r: (
            f"{r['cached']} ({r['cache_bytes'] / 1e6:.1f} MB)"
        ),
        "answers citing the server's own upload": lambda r: f"{r['found']} / {r['asked']}",
    }
    for name, cell in rows.items():
        print(f"| {name} | {cell(results['lazy'])} | {cell(results['eager'])} |")
    eager = results["eager"]
    per_index = (eager["rss_started"] - results["lazy"]["rss_started"]) / args.servers
    estimate = eager["cache_bytes"] / eager["cached"]
    print(f"\nmeasured RSS per loaded server index: {per_index / 1e3:.0f} KB; ", end="")
    print(f"the cache's estimate (bot/engine/cache.py footprint): {estimate / 1e3:.0f} KB")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
