"""What members asked that the documents don't answer, and how they voted on answers.

Shared by /insights, `statement-bot insights` and `statement-bot feedback export`; no discord.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from bot.engine.db import Asked, Database, ago
from bot.engine.knowledge_db import KnowledgeRecords, Moderated
from index.chunking import sentences

# Every two questions in a group are at least this alike (cosine). Chosen for the best pairwise
# F1 on the calibrate split of tests/qa/unanswered_groups.jsonl: `python bench/group_threshold.py`.
GROUP_THRESHOLD = 0.55
MAX_GROUPED = 1000  # the newest unanswered questions of a report are grouped, at most this many
DOWNVOTED = 5  # down-voted answers a report lists
Encode = Callable[[list[str]], np.ndarray]  # texts -> unit vectors, e.g. Embedder.encode


@dataclass(frozen=True)
class Group:
    """Unanswered questions about one topic; `example` is its most asked wording."""

    example: Asked
    questions: tuple[Asked, ...]  # newest first

    @property
    def count(self) -> int:
        return len(self.questions)

    @property
    def members(self) -> int:
        return len({q.user_id for q in self.questions})


@dataclass(frozen=True)
class Insights:
    """One server's report over its last `days` days (None: everything on record)."""

    guild_id: int
    days: int | None
    asked: int
    answered: int
    members: int
    up: int
    down: int
    groups: tuple[Group, ...]  # most asked first
    downvoted: tuple[Asked, ...]  # most 👎 first
    handoffs_answered: int = 0  # questions passed on to the moderators and answered by them
    handoffs_open: int = 0
    from_moderators: int = 0  # questions the bot answered from moderators' answers
    moderated: tuple[Moderated, ...] = ()  # the answered hand-offs, with their answers


class CachedEncode:
    """An Encode that embeds each text once: a later report embeds only new questions.

    Thread-safe; keeps the `size` most recently used vectors (10,000 x 384 floats: 15 MB).
    """

    def __init__(self, encode: Encode, size: int = 10_000) -> None:
        self.encode, self.size = encode, size
        self.vecs: OrderedDict[str, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return self.encode([])
        with self.lock:
            found = {t: self.vecs[t] for t in texts if t in self.vecs}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:  # embedded outside the lock: reports of other servers need not wait
            found.update(zip(missing, self.encode(missing), strict=True))
        with self.lock:
            for text, vec in found.items():
                self.vecs[text] = vec
                self.vecs.move_to_end(text)
            while len(self.vecs) > self.size:
                self.vecs.popitem(last=False)
        return np.stack([found[t] for t in texts])


def _wording(text: str) -> str:
    """A question as a key: case, spacing and end punctuation don't make a new wording."""
    return re.sub(r"\s+", " ", text.casefold()).strip(" ?!.")


def group(questions: Sequence[str], encode: Encode, threshold: float = GROUP_THRESHOLD):
    """Indices of `questions` grouped by topic, most asked wording first in each group.

    Identical wordings (case, spacing, end punctuation aside) are one item; the rest are
    grouped by complete-linkage agglomerative clustering on cosine similarity, so every two
    wordings in a group are at least `threshold` alike.
    """
    wordings: dict[str, list[int]] = {}
    for i, question in enumerate(questions):
        wordings.setdefault(_wording(question), []).append(i)
    items = sorted(wordings.values(), key=lambda ix: (-len(ix), ix[0]))
    if len(items) < 2:
        return items
    vecs = encode([questions[ix[0]] for ix in items])
    distances = np.clip(pdist(vecs, "cosine"), 0, 2)  # 1 - cosine; rounding can dip below 0
    labels = fcluster(linkage(distances, "complete"), 1 - threshold, "distance")
    groups: dict[int, list[int]] = {}
    for ix, label in zip(items, labels, strict=True):  # most asked first, so it leads
        groups.setdefault(int(label), []).extend(ix)
    return list(groups.values())


def build(
    db: Database,
    encode: Encode,
    guild_id: int,
    days: int | None = 30,
    downvoted: int = DOWNVOTED,
    threshold: float = GROUP_THRESHOLD,
) -> Insights:
    """One server's report; embeds its unanswered questions (run it off the event loop)."""
    since = ago(days * 86400) if days else ""
    asked, answered, members, up, down = db.totals(guild_id, since)
    unanswered = db.unanswered(guild_id, since, MAX_GROUPED)
    groups = [
        Group(unanswered[ix[0]], tuple(unanswered[i] for i in sorted(ix)))
        for ix in group([a.question for a in unanswered], encode, threshold)
    ]
    groups.sort(key=lambda g: (-g.count, -g.questions[0].answer_id))
    worst = db.downvoted(guild_id, since, downvoted)
    records = KnowledgeRecords(db)
    return Insights(
        guild_id,
        days,
        asked,
        answered,
        members,
        up,
        down,
        tuple(groups),
        tuple(worst),
        *records.handoff_counts(guild_id, since),
        tuple(records.moderated(guild_id, since)),
    )


def jump_url(asked: Asked) -> str | None:
    """A link to the message that showed the answer (None for private answers)."""
    if asked.message_id is None or asked.guild_id is None:
        return None
    return f"https://discord.com/channels/{asked.guild_id}/{asked.channel_id}/{asked.message_id}"


def period(days: int | None) -> str:
    return f"last {days} days" if days else "all questions on record"


def rate(report: Insights) -> str:
    return f"{report.answered / report.asked:.0%}" if report.asked else "n/a"


# -- the terminal and JSON forms ---------------------------------------------------------------


class _Names:
    """User ids as shown: themselves, or `member 1`, `member 2`… when redacted."""

    def __init__(self, redact: bool) -> None:
        self.redact, self.seen = redact, {}

    def __call__(self, user_id: int) -> str:
        if not self.redact:
            return str(user_id)
        return self.seen.setdefault(user_id, f"member {len(self.seen) + 1}")


def to_dict(report: Insights, redact: bool = False) -> dict:
    """The report as JSON; `redact` replaces user ids by `member n`."""
    user = _Names(redact)

    def question(a: Asked) -> dict:
        return {
            "question": a.question,
            "user": user(a.user_id),
            "asked_at": a.created_at,
            "link": jump_url(a),
        }

    return {
        "guild_id": str(report.guild_id),
        "days": report.days,
        "questions": report.asked,
        "answered": report.answered,
        "answer_rate": round(report.answered / report.asked, 4) if report.asked else None,
        "members": report.members,
        "votes": {"up": report.up, "down": report.down},
        "unanswered": [
            {
                "count": g.count,
                "members": g.members,
                "example": g.example.question,
                "questions": [question(a) for a in g.questions],
            }
            for g in report.groups
        ],
        "downvoted": [
            {**question(a), "answer": a.answer, "downs": a.downs, "ups": a.ups}
            for a in report.downvoted
        ],
        "handoffs": {"answered": report.handoffs_answered, "open": report.handoffs_open},
        "answered_from_moderators": report.from_moderators,
    }


def format_text(report: Insights, redact: bool = False, groups: int = 20) -> str:
    """The report for the terminal."""
    user = _Names(redact)
    lines = [
        f"Server {report.guild_id}, {period(report.days)}",
        f"questions {report.asked} from {report.members} members, answered {report.answered} "
        f"({rate(report)}); votes 👍 {report.up} 👎 {report.down}",
        f"hand-offs {report.handoffs_answered} answered, {report.handoffs_open} open; "
        f"{report.from_moderators} questions answered from moderators' answers",
    ]
    unanswered = sum(g.count for g in report.groups)
    lines.append(f"\nunanswered, by topic ({len(report.groups)} topics, {unanswered} questions):")
    for g in report.groups[:groups]:
        lines.append(f"  {g.count:3}× ({g.members} members)  {g.example.question}")
        others = list(dict.fromkeys(q.question for q in g.questions if q is not g.example))
        lines += [f"         also: {q}" for q in others[:3]]
    if len(report.groups) > groups:
        lines.append(f"  …and {len(report.groups) - groups} more topics (--json lists all)")
    lines.append("\nmost down-voted:")
    for a in report.downvoted:
        lines.append(f"  👎 {a.downs} 👍 {a.ups}  {a.question}  (asked by {user(a.user_id)})")
        answer = a.answer if len(a.answer) <= 150 else a.answer[:149] + "…"
        lines.append(f"         answered: {answer}")
        lines.append(f"         {jump_url(a) or '(a private answer: no link)'}")
    if not report.downvoted:
        lines.append("  none")
    return "\n".join(lines)


# -- feedback as regression cases for `statement-bot eval --qa` -------------------------------


def regression_rows(reports: Sequence[Insights]) -> list[dict]:
    """Answered hand-offs, with the moderator's answer as `gold` and its first sentence as
    `key_fact`; then down-voted answers and one question per unanswered topic (none answered by
    a moderator), as `eval --qa` rows whose slots (`answerable`, `key_fact`, `gold`) an admin
    fills in."""
    rows, seen = [], set()
    for report in reports:
        for m in report.moderated:
            seen.add(m.answer_id)
            rows.append(
                {
                    "id": f"mod{m.answer_id}",
                    "split": "test",
                    "question": m.question,
                    "answer_given": m.answer_given,
                    "found": m.found,
                    "why": "answered by a moderator",
                    "guild_id": str(m.guild_id),
                    "answerable": True,
                    "key_fact": m.answer[slice(*sentences(m.answer, 0, len(m.answer))[0])],
                    "gold": m.answer,
                }
            )
    for report in reports:
        topic = {q.answer_id: g.count for g in report.groups for q in g.questions}
        cases = [(a, "down-voted") for a in report.downvoted]
        cases += [
            (g.example, "unanswered")
            for g in report.groups
            if not seen.intersection(q.answer_id for q in g.questions)
        ]
        for a, why in cases:
            if a.answer_id in seen:
                continue
            seen.add(a.answer_id)
            rows.append(
                {
                    "id": f"fb{a.answer_id}",
                    "split": "test",
                    "question": a.question,
                    "answer_given": a.answer,
                    "found": a.found,
                    "why": why,
                    "asked": topic.get(a.answer_id, 1),  # unanswered: times its topic was
                    "downs": a.downs,
                    "guild_id": str(a.guild_id),
                    "answerable": None,
                    "key_fact": "",
                    "gold": "",
                }
            )
    return rows


def slots_filled(row: dict) -> bool:
    """Whether a QA row can be scored: `answerable` is true or false, and an answerable
    question has the words its answer must contain (`key_fact`) and its passage (`gold`)."""
    if row.get("answerable") is False:
        return True
    return row.get("answerable") is True and all(
        isinstance(row.get(k), str) and row[k].strip() for k in ("key_fact", "gold")
    )


def pair_scores(labels: Sequence[str], groups: Sequence[Sequence[int]]) -> dict[str, float]:
    """Pairwise precision, recall and F1 of `groups` (lists of indices) against true labels:
    a pair counts when both questions share a group; it is right when they share a label."""
    found = {(i, j) for g in groups for i in g for j in g if i < j}
    n = len(labels)
    true = {(i, j) for i in range(n) for j in range(i + 1, n) if labels[i] == labels[j]}
    right = len(found & true)
    precision = right / len(found) if found else 1.0
    recall = right / len(true) if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "groups": len(groups)}
