"""Which sentence segmenter cuts real documents where a reader would: measured, not assumed.

    .venv/bin/pip install pysbd sentencex   # the candidates the project does not install
    .venv/bin/python bench/segmenters.py

Two measures. Gold sentences: every answer sentence (`gold`) of tests/qa/real_pages.jsonl, found
in its page's extracted text; a segmenter scores when the sentence is exactly one of the spans it
cuts that paragraph into. Hard cases: the labelled sentences of `CASES` (abbreviations, initials,
quotes, names with "!", lists and headings). Also printed: seconds per million characters.
index.chunking.sentences is syntok+lines: a line break that is not followed by lower case
ends a sentence (trafilatura keeps headings and <br> lines inside a block), then syntok.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.chunking import _lines, _strip, paragraphs, sentences  # noqa: E402
from index.web.extraction import extract  # noqa: E402
from index.web.pages import _decode  # noqa: E402

# Each case: the sentences, joined by one space (or by the newline they hold).
CASES = [
    ["The U.S. Environmental Protection Agency said emissions fell.", "Others disagreed."],
    ["She sings with Choir! Choir! Choir! every week.", "The group is in Toronto."],
    ["Mr. J. R. R. Tolkien wrote it in 1937.", "It sold well."],
    ["He lives at No. 10 Downing St. in London.", "It is old."],
    ["“Are you coming?” he asked.", "She nodded."],
    ["Prices rose 3.5 per cent.", "Wages fell."],
    ["The talk is at 5 p.m. on Friday.", "Bring a friend."],
    ["Contact us at info@example.com.", "We reply fast."],
    ["Corbyn said: “This is wrong.”", "He will stand."],
    ["It flies to 150 cities, e.g. London and Paris.", "It has 123 A380s."],
    ["He was born c. 1950 in St. Albans.", "He moved in Jan. 1970."],
    ["Dr. No said hi.", "Then he left."],
    ["See Fig. 3 for details.", "It is clear."],
    ["The vote was 52 vs. 48 per cent.", "Turnout was high."],
    ["Apple Inc. and Amazon.com Inc. reported results.", "Shares rose."],
    ["It costs $1.5bn.", "That is a lot."],
    ["What did he say?", "Nothing at all!", "Then silence."],
    ["The meeting is on Thursdays at 7.30pm.", "All are welcome."],
    ["A spokesperson said: “We will stay.", "We will keep fighting.", "Sign up today.”"],
    ["“But Starmer did the opposite.", "We will not allow it.”", "Then he left."],
    ["Prof. Smith et al. found the effect.", "It was small."],
    ["Sen. Warren (D-Mass.) spoke first.", "Others followed."],
]
CASES_NL = [  # a heading or list items on their own lines
    ["Key points", "The first item.", "The second item."],
    ["Results", "Emissions fell 2% in 2019."],
]
_OLD_END = re.compile(
    r"(?<=[.!?…])[\"'”’)\]]*(?=\s+[\"'“‘(\[]*[A-Z0-9À-Ý])|(?<=[.!?…][\"'”’)\]])(?=\s)"
)
_OLD_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Prof.", "e.g.", "i.e.", "etc.", "vs.")


def regex(text: str) -> list[str]:
    """The pattern used before issue 23."""
    spans, pos = [], 0
    for m in _OLD_END.finditer(text):
        if not text[max(0, m.start() - 6) : m.start()].endswith(_OLD_ABBREVIATIONS + ("No.",)):
            spans.append(text[pos : m.end()])
            pos = m.end()
    return [*spans, text[pos:]]


def candidates() -> dict:
    """The segmenters installed, by name (syntok is the project's own)."""
    import syntok.segmenter

    def syn(t: str) -> list[str]:
        out = []
        for paragraph in syntok.segmenter.analyze(t):
            for s in paragraph:
                out.append(t[s[0].offset : s[-1].offset + len(s[-1].value)])
        return out

    found = {"regex": regex, "syntok": syn}
    try:
        from sentencex import segment

        found["sentencex"] = lambda t: list(segment("en", t))
    except ImportError:
        pass
    try:
        import pysbd

        found["pysbd"] = pysbd.Segmenter(language="en", clean=False).segment
    except ImportError:
        pass
    return found


def spans(cut, text: str) -> set[tuple[int, int]]:
    """The trimmed spans of `cut`'s pieces, found in order in text."""
    out, pos = set(), 0
    for piece in cut(text):
        piece = piece.strip()
        if piece and (at := text.find(piece, pos)) >= 0:
            out.add(_strip(text, at, at + len(piece)))
            pos = at + len(piece)
    return out


def by_lines(cut):
    """`cut` within lines: a line break not followed by lower case ends a sentence."""

    def run(text: str) -> list[str]:
        return [piece for a, b in _lines(text, 0, len(text)) for piece in cut(text[a:b])]

    return run


def gold_sentences() -> list[tuple[str, tuple[int, int]]]:
    """(paragraph, span of its gold sentence) for each real-page question."""
    qa = ROOT / "tests/qa/real_pages.jsonl"
    folder = qa.with_suffix("")
    texts: dict[str, str] = {}
    out = []
    for line in qa.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if not row.get("gold"):
            continue
        doc = row["doc"]
        if doc not in texts:
            data = gzip.decompress((folder / f"{doc}.html.gz").read_bytes())
            texts[doc] = extract(_decode(data, None, doc))[0]
        text = texts[doc]
        at = text.find(row["gold"])
        for a, b in paragraphs(text) if at >= 0 else []:
            if a <= at < b:
                out.append((text[a:b], (at - a, at - a + len(row["gold"]))))
    return out


def main() -> None:
    golds = gold_sentences()
    cases = [(" ".join(c), c) for c in CASES] + [("\n".join(c), c) for c in CASES_NL]
    texts = "\n\n".join(p for p, _ in golds) * 5
    print(f"{len(golds)} gold sentences from real pages, {len(cases)} hard cases")
    print(f"{'segmenter':<22} {'gold exact':>10} {'cases right':>12} {'s/M chars':>10}")
    found = candidates()
    found |= {f"{name}+lines": by_lines(cut) for name, cut in found.items()}
    found["chunking.sentences"] = lambda t: [t[a:b] for a, b in sentences(t, 0, len(t))]
    for name, cut in found.items():
        exact = sum(span in spans(cut, p) for p, span in golds)
        right = sum([p.strip() for p in cut(text) if p.strip()] == want for text, want in cases)
        began = time.perf_counter()
        cut(texts)
        took = (time.perf_counter() - began) / max(1, len(texts)) * 1e6
        print(
            f"{name:<22} {exact / max(1, len(golds)):10.1%} {right:6}/{len(cases):<5} {took:10.2f}"
        )


if __name__ == "__main__":
    main()
