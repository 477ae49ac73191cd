"""Which answer-type rules earn their place: each measured by leaving it out (or adding it).

    .venv/bin/python bench/type_rules.py [--split calibrate] [--qa FILE ...]

Every question is ranked once through the engine (READER=none, the default); each rule set is
then applied to the same rankings. For every rule, printed per question set: unanswerable
questions it refuses that would otherwise be answered (gain), and answerable questions whose key
fact it loses or wins, at the engine's threshold (~: a variant in place of a kept rule). A rule
is kept where, on the calibrate splits, it refuses more than it loses. `--split test` gives the
held-out figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import evaluate  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.engine import extractive, start  # noqa: E402
from index.lexical import terms  # noqa: E402

QA = [
    ROOT / "tests/qa/statement_qa.jsonl",
    ROOT / "tests/qa/real_pages.jsonl",
    ROOT.parent / "shared/train/squad2/dev-18-articles.json",
]


def _counted(question: str, sentence: str) -> bool:
    """Where the sentence names what "how many" counts, a number must stand within three words
    before it."""
    counted = re.search(r"\bhow many\s+(\w+)", question, re.I)
    if not (counted and (thing := terms(counted.group(1)))):
        return True
    words = sentence.split()
    named = [i for i, w in enumerate(words) if terms(w) == thing]
    number = re.compile(extractive._NUM, re.I)
    return not named or any(number.search(" ".join(words[max(0, i - 3) : i])) for i in named)


def _every_number(question: str, sentence: str) -> bool:
    """Every digit group of the question is in the sentence (names such as "787" too)."""
    return all(n in sentence for n in re.findall(r"\d+", question))


def _not_years(question: str, sentence: str) -> bool:
    """The numbers rule with years left out: "How many newsrooms did they visit back in 2011?"
    may be answered by a sentence that does not repeat 2011."""
    stated = zip(extractive._quantities(question), extractive._stated(question), strict=True)
    return all(p.search(sentence) for n, p in stated if not re.fullmatch(r"(1[5-9]|20)\d\d", n))


_UNITS = r"(years?|months?|weeks?|days?|hours?|minutes?|decades?|centur(y|ies))"
_NUM = extractive._NUM
# Measured and not kept (issue 23): none refused more unanswerable questions than it cost.
DROPPED = (
    extractive._rule(
        "frequency",
        r"\bhow often\b",
        rf"{_NUM}|\b(hourly|daily|weekly|monthly|quarterly|yearly|annually|every|each|per|times"
        r"|always|never|usually|regularly|rarely|seldom|often)\b",
    ),
    extractive._rule(
        "duration",
        r"\bhow long\b",
        rf"({_NUM}|\b(a|an|few|several|many))\W+(\w+\W+)?{_UNITS}\b|\bsince\b",
    ),
    extractive._rule("age", r"\bhow old\b|\bage\b", r"\d|\b(aged?|years? old|born)\b"),
    extractive._rule(
        "money",
        r"\bhow much\b.*\b(money|cost|raised?|fund|donat|spen[dt]|pay|paid|worth|budget)",
        r"[£$€¥]|\b(pounds?|dollars?|euros?|yen|million|billion|thousand|bn)\b",
    ),
    extractive.Rule("counted", _counted),  # before issue 23
    extractive.Rule("every number", _every_number),  # before issue 23: now names are left out
)


# Measured in place of a kept rule, and not adopted.
INSTEAD = {"numbers": extractive.Rule("not years", _not_years)}


def score(asked: list, rules: tuple, threshold: float) -> tuple[set, set]:
    """(ids of unanswerable questions refused, ids of answerable ones with the key fact)."""
    refused, right = set(), set()
    for a in asked:
        typed = extractive.of_type(a.row["question"], a.ranking.untyped, rules)
        ranking = dataclasses.replace(a.ranking, candidates=tuple(typed))
        answer = extractive.compose(a.row["question"], ranking, threshold)
        if not a.row["answerable"]:
            if not answer.found:
                refused.add(a.row["id"])
        elif answer.found:
            quoted = " ".join(c.quote for c in answer.citations)
            if any(evaluate._contains(quoted, f) for f in evaluate._facts(a.row)):
                right.add(a.row["id"])
    return refused, right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qa", type=Path, action="append")
    parser.add_argument("--split", default="calibrate")
    parser.add_argument("--threshold", type=float, help="default: the engine's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = start(Settings(data_dir=ROOT / "data", state_dir=Path(tmp), reader="none"))
        threshold = args.threshold or engine.threshold
        print(f"threshold {threshold}, split {args.split}")
        for path in args.qa or [p for p in QA if p.exists()]:
            asked = evaluate.question_set(engine, path, args.split)
            for a in asked:  # SQuAD's rows have no id of their own per half
                a.row.setdefault("id", id(a))
            n_un = sum(not a.row["answerable"] for a in asked)
            n_an = len(asked) - n_un
            refused, right = score(asked, extractive.RULES, threshold)
            print(f"\n{path.name}: {n_an} answerable, {n_un} unanswerable")
            print(
                f"  all rules: key fact {len(right) / n_an:.1%}, "
                f"refused {len(refused) / max(1, n_un):.1%}"
            )
            none_refused, none_right = score(asked, (), threshold)
            print(
                f"  no rules:  key fact {len(none_right) / n_an:.1%}, "
                f"refused {len(none_refused) / max(1, n_un):.1%}"
            )
            for rule in extractive.RULES:
                rest = tuple(r for r in extractive.RULES if r is not rule)
                r_refused, r_right = score(asked, rest, threshold)
                print(
                    f"  {rule.name:<14} refuses {len(refused - r_refused):3}  key facts lost "
                    f"{len(r_right - right):3}, won {len(right - r_right):3}"
                )
            for name, rule in INSTEAD.items():
                swapped = tuple(rule if r.name == name else r for r in extractive.RULES)
                s_refused, s_right = score(asked, swapped, threshold)
                print(
                    f"  ~{rule.name:<13} refuses {len(refused - s_refused):3} fewer, key facts "
                    f"won {len(s_right - right):3}, lost {len(right - s_right):3}"
                )
            for rule in DROPPED:
                o_refused, o_right = score(asked, extractive.RULES + (rule,), threshold)
                print(
                    f"  +{rule.name:<13} refuses {len(o_refused - refused):3}  key facts lost "
                    f"{len(right - o_right):3}, won {len(o_right - right):3}"
                )


if __name__ == "__main__":
    main()
