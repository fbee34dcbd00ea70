"""Entity boundary repair: name spans that end on a word no name ends on.

The tagger sometimes runs a name into the next word ("Formosa Petrochemical said",
"Court of Appeal for", "Royal in Dallas") or cuts it at a bracket ("PhilHealth)"). On
the gold spans of the corpus train and dev splits (3,321 ORG, 715 attack-group and
malware names), no ORG, ATTACK_GROUP or MALWARE span starts or ends on a lower-case
stop word, a reporting verb or a lower-case past-tense word, and none has unbalanced
brackets; and no name follows "Operation" (12 times in that text: "Operation Cronos",
"Operation Medusa" are law-enforcement operations, not the gangs they share a word
with). This component trims such edges (never to nothing), closes a bracket the name
opened ("NoName057(16" -> "NoName057(16)") and drops names right after "Operation".
A name that ends on a word saying what it names ("Royal ransomware", "Emotet botnet":
``ACTOR_HEADS``; no gold ORG, ATTACK_GROUP or MALWARE span in train or dev ends on one)
loses that word, and an ORG among them becomes the attack group or malware the word
says it is. Other labels are left as they are.

    nlp.add_pipe("nhs_entity_repair", after="ner")
"""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

from spacy.lang.en.stop_words import STOP_WORDS
from spacy.language import Language
from spacy.tokens import Doc, Span, Token

from ..labels import ATTACK_GROUP, MALWARE, ORG

#: Words (case-sensitive) right after which a span is not a name of the repaired labels.
NOT_AFTER: Tuple[str, ...] = ("Operation",)
#: Lower-case words after a name that say what it names ("Royal ransomware", "Emotet botnet").
ACTOR_HEADS = {
    **{w: ATTACK_GROUP for w in ("ransomware", "gang", "hackers", "crew", "cartel", "operators", "affiliates")},
    **{w: MALWARE for w in ("malware", "botnet", "trojan", "wiper", "backdoor", "implant")},
}
#: Verbs that follow a name in reporting ("X said", "X confirmed").
REPORTING_VERBS: Tuple[str, ...] = (
    "added", "admitted", "announced", "claimed", "confirmed", "disclosed", "reported", "said", "says",
    "stated", "told", "warned",
)


@Language.factory(
    "nhs_entity_repair",
    default_config={"labels": [ORG, ATTACK_GROUP, MALWARE], "edge_words": list(REPORTING_VERBS), "not_after": list(NOT_AFTER)},
    assigns=["doc.ents"],
    requires=["doc.ents"],
)
def make_entity_repair(nlp: Language, name: str, labels: List[str], edge_words: List[str], not_after: List[str]) -> "EntityRepair":
    """Create the boundary repair component.

    labels (List[str]): entity labels whose edges are repaired.
    edge_words (List[str]): lower-case words, besides stop words and past-tense words, that no
        name starts or ends on.
    not_after (List[str]): words (case-sensitive) right after which no span of these labels is kept.
    """
    return EntityRepair(name, labels=labels, edge_words=edge_words, not_after=not_after)


class EntityRepair:
    """Trim name spans' edges that cannot belong to a name, balance brackets, drop operation
    names (see the module docstring)."""

    def __init__(self, name: str = "nhs_entity_repair", *, labels: Sequence[str] = (ORG, ATTACK_GROUP, MALWARE),
                 edge_words: Iterable[str] = REPORTING_VERBS, not_after: Iterable[str] = NOT_AFTER) -> None:
        self.name = name
        self.labels = frozenset(labels)
        self.edge_words = frozenset(w.lower() for w in edge_words)
        self.not_after = frozenset(not_after)

    def is_bad_edge(self, token: Token) -> bool:
        """A lower-case stop word ("for", "in"), a listed word ("said") or past-tense word ("disabled")."""
        word = token.text
        if not word.islower():
            return False
        return word in STOP_WORDS or word in self.edge_words or (word.endswith("ed") and len(word) > 3)

    def repair(self, doc: Doc, span: Span, taken: Sequence[bool]) -> Tuple[int, int]:
        """The repaired token bounds of ``span`` (``taken``: tokens inside other entities)."""
        start, end = span.start, span.end
        while end - start > 1 and self.is_bad_edge(doc[end - 1]):
            end -= 1
        while end - start > 1 and self.is_bad_edge(doc[start]):
            start += 1
        text = doc[start:end].text
        if text.count(")") > text.count("(") and doc[end - 1].text == ")" and end - start > 1:
            end -= 1
        elif text.count("(") > text.count(")") and end < len(doc) and doc[end].text == ")" and not taken[end]:
            end += 1
        return start, end

    def __call__(self, doc: Doc) -> Doc:
        ents = list(doc.ents)
        if not ents:
            return doc
        taken = [False] * len(doc)
        for ent in ents:
            for i in range(ent.start, ent.end):
                taken[i] = True
        changed = False
        out: List[Span] = []
        for ent in ents:
            if ent.label_ in self.labels and ent.start > 0 and doc[ent.start - 1].text in self.not_after:
                changed = True
                continue
            if ent.label_ in self.labels:
                start, end = self.repair(doc, ent, taken)
                label = ent.label_
                if end - start > 1 and doc[end - 1].text in ACTOR_HEADS:
                    label = ACTOR_HEADS[doc[end - 1].text] if label == ORG else label
                    end -= 1
                if (start, end, label) != (ent.start, ent.end, ent.label_):
                    ent = Span(doc, start, end, label=label, kb_id=ent.kb_id_)
                    changed = True
            out.append(ent)
        if changed:
            doc.ents = out
        return doc

    def pipe(self, stream: Iterable[Doc], batch_size: int = 128) -> Iterable[Doc]:
        for doc in stream:
            yield self(doc)
