"""``nhs_record_builder``: assemble ``IncidentRecord``s from a tagged document.

Three small trained models (scikit-learn logistic regressions over sparse
context features, trained on the corpus gold records by ``nhs-nlp records train``
and saved with the pipeline as JSON, no pickles):

- **incident**: does the article report an incident at all? (document words)
- **role**: is an organisation the victim, downstream-affected, another party
  (investigator, reporter, vendor) or not part of any incident? (words around
  each mention, its sentence, its position and how often it is named; the
  probabilities of all mentions of one name are averaged)
- **attack type**: ransomware, data breach, DDoS, … (the words of the sentences
  that mention the incident's victims and attackers, and of the whole article;
  optionally also the mean embeddings of those sentences and of the article by the
  pretrained sentence encoder all-MiniLM-L6-v2, see ``nhs_nlp.sentence_encoder``)

Records are then assembled by rules: victims named together belong to one
incident (``victims_together``), each incident takes the attack groups named in
most of its sentences (``incident_seeds``), and every other item joins the
incident whose victims or attackers are named nearest to it.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
from spacy.language import Language
from spacy.pipeline import Sentencizer
from spacy.tokens import Doc, Span
from spacy.util import ensure_path

from ..extensions import install_extensions
from ..labels import ATTACK_GROUP, ATTACK_TYPES, MALWARE, ORG, QUANTITY, SERVICE
from ..records import ROLE_FIELDS, IncidentRecord
from .linker import CUE_WORDS, cue_near

ROLE_CLASSES: Tuple[str, ...] = ("victim", "affected", "other", "none")
_CUE_WORDS = frozenset(CUE_WORDS)
Features = Dict[str, float]

_WINDOW = 5
_STOP_EDGES = re.compile(r"^(?:the\s+)|(?:['’]s)$", re.I)

ATTACK_VERBS = {
    "attack", "attacked", "attacks", "hit", "hits", "breached", "breach", "targeted", "targeting", "compromised",
    "infiltrated", "struck", "crippled", "infected", "hacked", "encrypted", "extorted", "victim", "victims",
    "suffered", "fell",
}
# Words that say something happened (features of the incident model).
INCIDENT_WORDS = ATTACK_VERBS | {
    "ransomware", "cyberattack", "cyber-attack", "cyber", "hack", "hackers", "outage", "incident", "leaked",
    "stolen", "ddos", "disrupted", "down", "offline", "claimed",
}
DOWNSTREAM_VERBS = {
    "affected", "affecting", "disrupted", "impacted", "served", "serves", "uses", "used", "supplied",
    "supplies", "relies", "rely", "customers", "clients", "postponed", "cancelled", "diverted",
}
OTHER_VERBS = {
    "said", "says", "told", "confirmed", "warned", "investigating", "investigated", "advised", "reported",
    "published", "announced", "added", "according", "urged", "fined", "issued", "working", "helping",
    "statement", "spokesperson", "spokesman", "spokeswoman",
}

# Words that name an attack type, by family (features of the attack-type model).
ATTACK_CUES: Dict[str, str] = {
    **{w: "ransomware" for w in ("ransomware", "ransom", "encrypted", "encryption", "extortion", "decryptor", "decryption", "leak")},
    **{w: "ddos" for w in ("ddos", "denial-of-service", "denial", "traffic", "flood", "flooded", "offline")},
    **{w: "wiper" for w in ("wiper", "wiped", "destructive", "erased", "wiping")},
    **{w: "phishing" for w in ("phishing", "phish", "emails", "email", "credentials", "lure")},
    **{w: "supply chain" for w in ("supply-chain", "supplier", "update", "updates", "software", "vendor", "third-party")},
    **{w: "data breach" for w in ("breach", "stolen", "leaked", "exfiltrated", "accessed", "exposed", "records", "data")},
}

# Countries and nationalities an attribution can name, mapped to the country.
_NATIONS = {
    "russia": "Russia", "russian": "Russia", "russian-speaking": "Russia", "china": "China", "chinese": "China",
    "north korea": "North Korea", "north korean": "North Korea", "iran": "Iran", "iranian": "Iran",
    "belarus": "Belarus", "belarusian": "Belarus", "ukraine": "Ukraine", "ukrainian": "Ukraine",
    "vietnam": "Vietnam", "vietnamese": "Vietnam", "pakistan": "Pakistan", "pakistani": "Pakistan",
    "india": "India", "indian": "India", "turkey": "Turkey", "turkish": "Turkey", "israel": "Israel",
    "israeli": "Israel", "syria": "Syria", "syrian": "Syria", "nigeria": "Nigeria", "nigerian": "Nigeria",
    "brazil": "Brazil", "brazilian": "Brazil", "romania": "Romania", "romanian": "Romania",
    "united states": "United States", "american": "United States", "britain": "United Kingdom",
    "british": "United Kingdom", "uk": "United Kingdom", "us": "United States",
}
_ATTRIBUTION_CUES = re.compile(
    r"\b(?:state[- ]backed|state[- ]sponsored|nation[- ]state|linked|backed|based|speaking|affiliated|"
    r"attributed|blamed|believed|operat\w*|military|intelligence|government[- ]backed|sponsored|behind|from|spy|spies)\b",
    re.I,
)
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"])}
_DATE_RE = re.compile(
    r"\b(?:(?P<d1>\d{1,2})(?:st|nd|rd|th)?\s+(?P<m1>January|February|March|April|May|June|July|August|September|October|November|December)"
    r"|(?P<m2>January|February|March|April|May|June|July|August|September|October|November|December)\s+(?P<d2>\d{1,2})(?:st|nd|rd|th)?)"
    r"(?:,?\s+(?P<y1>(?:19|20)\d{2}))?"
    r"|\b(?P<m3>January|February|March|April|May|June|July|August|September|October|November|December)\s+(?P<y2>(?:19|20)\d{2})\b"
)


# ---------------------------------------------------------------------------
# A linear model saved as JSON
# ---------------------------------------------------------------------------


class LinearModel:
    """A logistic regression over named sparse features, stored as JSON.

    Training uses scikit-learn (``DictVectorizer`` + ``LogisticRegression``); at
    run time only the weights are needed, so the component carries no pickles.
    """

    def __init__(self, classes: Sequence[str] = (), weights: Optional[Dict[str, List[float]]] = None,
                 bias: Optional[List[float]] = None) -> None:
        self.classes = list(classes)
        self.weights: Dict[str, List[float]] = weights or {}
        self.bias: List[float] = bias or [0.0] * len(self.classes)

    @property
    def is_trained(self) -> bool:
        return bool(self.classes) and bool(self.weights)

    @classmethod
    def fit(cls, X: List[Features], y: List[str], *, C: float = 1.0, class_weight: Optional[str] = "balanced",
            seed: int = 0) -> "LinearModel":
        """Fit on feature dicts and labels (needs at least two classes)."""
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        vec = DictVectorizer()
        Xm = vec.fit_transform(X)
        clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=2000, random_state=seed)
        clf.fit(Xm, y)
        classes = [str(c) for c in clf.classes_]
        coef = clf.coef_
        bias = clf.intercept_
        if len(classes) == 2:  # sklearn keeps one row for binary problems: make it symmetric
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            bias = np.array([-bias[0] / 2, bias[0] / 2])
        weights = {}
        for j, name in enumerate(vec.feature_names_):
            col = coef[:, j]
            if np.any(np.abs(col) > 1e-6):
                weights[name] = [round(float(v), 6) for v in col]
        return cls(classes, weights, [round(float(b), 6) for b in bias])

    def scores(self, feats: Features) -> np.ndarray:
        s = np.array(self.bias, dtype=float)
        for name, value in feats.items():
            w = self.weights.get(name)
            if w is not None:
                s += value * np.asarray(w)
        return s

    def predict_proba(self, feats: Features) -> Dict[str, float]:
        s = self.scores(feats)
        e = np.exp(s - s.max())
        p = e / e.sum()
        return {c: float(v) for c, v in zip(self.classes, p)}

    def contributions(self, feats: Features, label: str) -> List[Tuple[float, str]]:
        """Features of ``feats`` ranked by how much they push towards ``label``."""
        k = self.classes.index(label)
        out = [(value * self.weights[name][k], name) for name, value in feats.items() if name in self.weights]
        return sorted(out, reverse=True)

    def to_dict(self) -> Dict[str, Any]:
        return {"classes": self.classes, "bias": self.bias, "weights": dict(sorted(self.weights.items()))}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "LinearModel":
        return cls(data["classes"], data["weights"], data["bias"])


# ---------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------


def org_key(text: str) -> str:
    """Normalised organisation name: case, whitespace, leading "the", possessive, stray brackets/quotes."""
    t = " ".join(text.replace("’", "'").split()).lower()
    t = t.strip(_KEY_STRIP)
    t = re.sub(r"^the\s+", "", t)
    t = re.sub(r"'s?$", "", t)
    return t.strip(_KEY_STRIP)


_KEY_STRIP = " .,;:'\"()[]“”‘"
# Words a company's full name adds to its short name ("Latitude Financial", "MGM Resorts
# International", "Capita plc"): with them removed, two names are one organisation.
BUSINESS_WORDS = frozenset({
    "ltd", "limited", "plc", "inc", "incorporated", "corp", "corporation", "co", "company", "llc", "llp", "pte",
    "pty", "sa", "ag", "gmbh", "se", "nv", "bv", "group", "holdings", "international", "global", "industries",
    "financial", "entertainment", "resorts", "software", "technologies", "technology", "systems", "solutions",
    "motors",
})
_ACRONYM_SKIP = frozenset({"of", "and", "for", "the", "&", "de", "du", "des", "la", "le", "für", "und"})


def core_name(key: str) -> str:
    """An organisation key without trailing business words (never empty)."""
    words = [w.strip(".,") for w in key.split()]
    while len(words) > 1 and words[-1] in BUSINESS_WORDS:
        words.pop()
    return " ".join(words)


def acronym(name: str) -> str:
    """Initials of a name ("Hewlett Packard Enterprise" -> "HPE", "Südwestfalen-IT" -> "SIT");
    short all-capital words count whole, "of"/"and"/"the" not at all."""
    out = []
    for word in re.split(r"[\s\-/]+", name.strip(_KEY_STRIP)):
        if not word or word.lower() in _ACRONYM_SKIP:
            continue
        if word.isupper() and len(word) <= 4:
            out.append(word)
        elif word[0].isalpha():
            out.append(word[0].upper())
    return "".join(out)


_NOT_ORGANISATION_HEADS = frozenset({"ransomware", "malware", "gang", "hackers"})


def is_proper_name(text: str) -> bool:
    """An organisation's name, not a description: some capital letter or digit ("eBay", "NHS",
    "3M"; not "city council"), and not an attacker's ("Royal ransomware")."""
    words = text.lower().split()
    if words and words[-1] in _NOT_ORGANISATION_HEADS:
        return False
    return any(ch.isupper() or ch.isdigit() for ch in text)


def same_organisation(a: str, b: str) -> bool:
    """Whether two organisation names in one article name one organisation: equal but for
    business words ("Latitude" / "Latitude Financial", "Capita" / "Capita plc"), or one is
    the other's acronym ("HPE" / "Hewlett Packard Enterprise"). Measured on the train split's
    gold records: such pairs share their role in 141 of 170 cases where either has one."""
    ka, kb = org_key(a), org_key(b)
    if not ka or not kb:
        return False
    if core_name(ka) == core_name(kb):
        return True
    for short, long_ in ((a.strip(_KEY_STRIP), b), (b.strip(_KEY_STRIP), a)):
        if 2 <= len(short) <= 6 and short.isupper() and len(re.split(r"[\s\-/]+", long_.strip())) > 1 and acronym(long_) == short:
            return True
    return False


_sentencizer = Sentencizer()


def sentence_ids(doc: Doc) -> List[int]:
    """Sentence number of every token (sentences from the pipeline, else a rule-based split)."""
    if not doc.has_annotation("SENT_START"):
        _sentencizer(doc)
    ids: List[int] = [0] * len(doc)
    for i, sent in enumerate(doc.sents):
        for t in range(sent.start, sent.end):
            ids[t] = i
    return ids


def _word(tok) -> Optional[str]:
    if tok.is_punct or tok.is_space:
        return None
    if tok.like_num:
        return "<num>"
    return tok.lower_


class DocContext:
    """What the features need to know about one document, computed once."""

    def __init__(self, doc: Doc, spans: Sequence[Span], link_of: Optional[Callable[[Span], Optional[Dict[str, Any]]]] = None) -> None:
        self.doc = doc
        # The alias-table entry of an attack-group/malware name (span._.link at run time).
        self.link_of = link_of or (lambda span: span._.link if Span.has_extension("link") else None)
        self.sent_of = sentence_ids(doc) if len(doc) else []
        self.sents = list(doc.sents) if len(doc) else []
        self.spans = list(spans)
        self.actor_sents: Set[int] = {self.sent_of[s.start] for s in spans if s.label_ in (ATTACK_GROUP, MALWARE)}
        self.service_sents: Set[int] = {self.sent_of[s.start] for s in spans if s.label_ == SERVICE}
        self.org_sents: Set[int] = {self.sent_of[s.start] for s in spans if s.label_ == ORG}
        orgs = [s for s in spans if s.label_ == ORG]
        self.org_counts = Counter(org_key(s.text) for s in orgs)
        ranked = [k for k, _ in self.org_counts.most_common()]
        self.org_rank = {k: i for i, k in enumerate(ranked)}
        self.first_org_sent: Dict[str, int] = {}
        # Sentence embeddings computed so far (``incident_embedding``), by sentence number.
        self.sent_vectors: Dict[int, np.ndarray] = {}
        for s in orgs:
            self.first_org_sent.setdefault(org_key(s.text), self.sent_of[s.start])


def mention_features(ctx: DocContext, span: Span) -> Features:
    """Features of one ORG mention for the role model."""
    doc = ctx.doc
    f: Features = {}
    key = org_key(span.text)
    left = [w for w in (_word(t) for t in doc[max(0, span.start - _WINDOW): span.start]) if w]
    right = [w for w in (_word(t) for t in doc[span.end: span.end + _WINDOW]) if w]
    for w in left:
        f[f"L:{w}"] = 1.0
    for w in right:
        f[f"R:{w}"] = 1.0
    if left:
        f[f"p1:{left[-1]}"] = 1.0
    if len(left) > 1:
        f[f"p2:{left[-2]} {left[-1]}"] = 1.0
    if right:
        f[f"n1:{right[0]}"] = 1.0
    if len(right) > 1:
        f[f"n2:{right[0]} {right[1]}"] = 1.0
    words = key.split()
    if words:
        f[f"head:{words[-1]}"] = 1.0
        f[f"first:{words[0]}"] = 1.0
    if "nhs" in words:
        f["name_nhs"] = 1.0
    f[f"len:{min(len(words), 4)}"] = 1.0
    sid = ctx.sent_of[span.start]
    sent = ctx.sents[sid]
    for t in sent:
        w = _word(t)
        if w and not (span.start <= t.i < span.end):
            f[f"s:{w}"] = 0.5
    f[f"sid:{min(sid, 6)}"] = 1.0
    if sid in ctx.actor_sents:
        f["actor_in_sent"] = 1.0
    if sid in ctx.service_sents:
        f["service_in_sent"] = 1.0
    if span.label_ in (ATTACK_GROUP, MALWARE):
        f["known" if ctx.link_of(span) is not None else "unknown"] = 1.0
    f[f"count:{min(ctx.org_counts[key], 5)}"] = 1.0
    rank = ctx.org_rank.get(key, 99)
    f[f"rank:{min(rank, 3)}"] = 1.0
    if ctx.first_org_sent.get(key) == 0:
        f["named_in_title"] = 1.0
    return f


# The incident model's word features count less than its entity and position features: with
# the words at 0.3, 5-fold cross-validation on train+dev articles (gold entities, C 0.3) gave
# accuracy 0.978 against 0.937 at 1.0 and 0.870 at 0.1 (session 3, see models/README.md).
DOC_WORD_WEIGHT = 0.3


def doc_features(doc: Doc, sent_of: Optional[Sequence[int]] = None) -> Features:
    """Document words for the incident model (binary, lower case). ``sent_of``: the sentence
    number of every token when already known (``DocContext.sent_of``)."""
    f: Features = {}
    for t in doc:
        w = _word(t)
        if w and not t.is_stop:
            f[f"d:{w}"] = DOC_WORD_WEIGHT
    counts = Counter(e.label_ for e in doc.ents)
    for label in (ORG, ATTACK_GROUP, MALWARE, SERVICE, QUANTITY):
        f[f"ents:{label}:{min(counts[label], 5)}"] = 1.0
    # Where the names are: an article about an incident names the organisation hit in the
    # title and in sentences that say what happened to it.
    if len(doc):
        if sent_of is None:
            sent_of = sentence_ids(doc)
        labels_in: Dict[int, Set[str]] = defaultdict(set)
        for e in doc.ents:
            labels_in[sent_of[e.start]].add(e.label_)
        attack_sents = {sent_of[t.i] for t in doc if t.lower_ in INCIDENT_WORDS}
        for label in (ORG, ATTACK_GROUP):
            if label in labels_in.get(0, ()):
                f[f"title:{label}"] = 1.0
        if 0 in attack_sents:
            f["title:attack_word"] = 1.0
        org_attack = sum(1 for sid in attack_sents if ORG in labels_in.get(sid, ()))
        org_group = sum(1 for labels in labels_in.values() if ORG in labels and ATTACK_GROUP in labels)
        f[f"sents:org+attack:{min(org_attack, 3)}"] = 1.0
        f[f"sents:org+group:{min(org_group, 3)}"] = 1.0
    return f


# The attack-type model leans on the cue families; single words count less. Grouped 5-fold
# cross-validation on the train+dev gold records (277): accuracy 0.845 / macro F1 0.621 with
# these weights against 0.830 / 0.536 with sentence words at 1.0 and article words at 0.5.
SENTENCE_WORD_WEIGHT = 0.3
ARTICLE_WORD_WEIGHT = 0.05


# With a sentence encoder, the incident's sentences also count as one embedding (the mean of
# their sentence embeddings, ``emb:``) and so does the whole article (``emb_d:``), each weighted
# 5. Session 6, 5-fold cross-validation on the 276 train records grouped by incident (articles
# about one incident in one fold; grouping by article alone let the folds share incidents and
# overstated every variant by 5-12 points), float32 embeddings (throwaway script): accuracy
# 0.779-0.790 over C 0.3-10 against 0.710-0.728 for the words alone (macro F1 0.68-0.70
# against 0.56-0.58); the incident's sentences alone 0.732-0.739, the article alone
# 0.757-0.772, the article's first 3-20 sentences in its place 0.74-0.77; weights 4 and 7 gave
# 0.772-0.783. With the int8 encoder `nhs-nlp records train --sentence-encoder` reports
# 0.761-0.779 over C 0.03-10 against 0.685-0.728. Not used by the shipped models (models/README.md).
EMBEDDING_WEIGHT = 5.0


def incident_embedding(ctx: "DocContext", sent_ids: Iterable[int], encoder: Any) -> np.ndarray:
    """The unit-length mean embedding of sentences ``sent_ids`` (each sentence encoded once per document)."""
    from ..sentence_encoder import mean_direction

    ids = sorted(set(sent_ids))
    missing = [i for i in ids if i not in ctx.sent_vectors]
    if missing:
        for i, v in zip(missing, encoder.encode([ctx.sents[i].text for i in missing])):
            ctx.sent_vectors[i] = v
    return mean_direction(np.vstack([ctx.sent_vectors[i] for i in ids]))


def article_embedding(ctx: "DocContext", encoder: Any) -> np.ndarray:
    """The unit-length mean embedding of all the article's sentences. Encoding them all in one
    call, before any incident's, keeps the int8 batches the same in training and at run time."""
    return incident_embedding(ctx, range(len(ctx.sents)), encoder)


def record_text_features(doc: Doc, sent_ids: Iterable[int], sents: Sequence[Span],
                         embedding: Optional[np.ndarray] = None, article: Optional[np.ndarray] = None) -> Features:
    """Words of an incident's sentences (``s:``) and of the whole article (``d:``) for attack
    types, and when given the mean embeddings of the incident's sentences (``emb:``,
    ``incident_embedding``) and of the article's (``emb_d:``, ``article_embedding``)."""
    from ..sentence_encoder import embedding_features

    f: Features = {}
    if embedding is not None:
        f.update(embedding_features(embedding, EMBEDDING_WEIGHT))
    if article is not None:
        f.update(embedding_features(article, EMBEDDING_WEIGHT, prefix="emb_d"))
    for sid in sorted(set(sent_ids)):
        for t in sents[sid]:
            w = _word(t)
            if w and not t.is_stop:
                f[f"s:{w}"] = SENTENCE_WORD_WEIGHT
                family = ATTACK_CUES.get(w)
                if family:
                    f[f"cue_s:{family}"] = 1.0
    cues: Counter = Counter()
    for t in doc:
        w = _word(t)
        if w and not t.is_stop:
            f[f"d:{w}"] = ARTICLE_WORD_WEIGHT
            if w in ATTACK_CUES:
                cues[ATTACK_CUES[w]] += 1
    for family, n in cues.items():
        f[f"cue_d:{family}"] = 1.0
        f[f"cue_d:{family}:n"] = min(n, 10) / 10
    if cues:
        f[f"cue_top:{cues.most_common(1)[0][0]}"] = 1.0
    return f


def nearest_verb_role(ctx: DocContext, span: Span) -> str:
    """The baseline the role model must beat: the role of the nearest cue verb in the sentence.

    An attack verb makes the organisation a victim, a downstream verb affected, a
    reporting verb another party; no cue verb: another party.
    """
    sent = ctx.sents[ctx.sent_of[span.start]]
    best: Optional[Tuple[int, str]] = None
    for t in sent:
        if span.start <= t.i < span.end:
            continue
        w = t.lower_
        role = "victim" if w in ATTACK_VERBS else "affected" if w in DOWNSTREAM_VERBS else "other" if w in OTHER_VERBS else None
        if role is None:
            continue
        dist = span.start - t.i if t.i < span.start else t.i - span.end + 1
        if best is None or dist < best[0]:
            best = (dist, role)
    return best[1] if best else "other"


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------


class _Cluster:
    """All mentions of one name (organisation, actor, service) in a document."""

    def __init__(self, key: str, label: str) -> None:
        self.key = key
        self.label = label
        self.spans: List[Span] = []
        self.role: Optional[str] = None
        self.score: Optional[float] = None
        self.link: Optional[Dict[str, Any]] = None

    @property
    def name(self) -> str:
        return self.spans[0].text

    @property
    def mentions(self) -> List[Tuple[int, int]]:
        return [(s.start_char, s.end_char) for s in self.spans]


def _actor_key(link: Optional[Dict[str, Any]], span: Span) -> str:
    if link and link.get("canonical"):
        return "canon:" + str(link["canonical"]).lower()
    return org_key(span.text)


def actor_clusters(ctx: DocContext, spans: Iterable[Span]) -> Dict[str, _Cluster]:
    """Attack-group and malware mentions grouped by alias-table entry (else by name). The
    label stays the tagger's: the table's kinds come from its sources and are not reliable
    enough to overrule it (MISP lists some groups as malware families)."""
    clusters: Dict[str, _Cluster] = {}
    for span in spans:
        if span.label_ not in (ATTACK_GROUP, MALWARE):
            continue
        link = ctx.link_of(span)
        label = span.label_
        key = label + ":" + _actor_key(link, span)
        c = clusters.setdefault(key, _Cluster(key, label))
        c.spans.append(span)
        if c.link is None:
            c.link = link
    return clusters


# Words just before a name that introduce another name of the same actor ("also known as APT43",
# "which Microsoft tracks as Storm-1359", "dubbed ...").
_ALIAS_CUES = frozenset({"as", "aka", "a.k.a.", "dubbed", "called", "alias", "nicknamed", "named", "or"})


def actor_cluster_features(ctx: DocContext, cluster: _Cluster, clusters: Sequence[_Cluster]) -> Features:
    """Features of one attack group or malware (all its mentions) for "is it part of the incident?":
    the mean of its mention features, how often it is named next to the other actors of its label,
    its alias-table kind, alias cues, and whether it is named in the title or beside an organisation."""
    f: Features = {}
    n = len(cluster.spans)
    for span in cluster.spans:
        for name, value in mention_features(ctx, span).items():
            f[name] = f.get(name, 0.0) + value / n
    same = [c for c in clusters if c.label == cluster.label]
    top = max(len(c.spans) for c in same)
    f[f"c_n:{min(n, 5)}"] = 1.0
    f["c_top"] = float(n == top)
    f[f"c_share:{round(4 * n / top)}"] = 1.0
    f[f"c_rivals:{min(len(same) - 1, 4)}"] = 1.0
    f[f"c_kind:{(cluster.link or {}).get('kind') or 'unlinked'}"] = 1.0
    if org_key(cluster.name) in ctx.org_counts:
        f["c_also_org"] = 1.0
    for span in cluster.spans:
        left = [t.lower_ for t in ctx.doc[max(0, span.start - 3): span.start]]
        if any(w in _ALIAS_CUES for w in left) or (left and left[-1] == "("):
            f["c_alias_cue"] = 1.0
        sid = ctx.sent_of[span.start]
        if sid == 0:
            f["c_title"] = 1.0
        if sid in ctx.org_sents:
            f["c_org_in_sent"] = 1.0
    return f


def _resolve_label_conflicts(orgs: Dict[str, _Cluster], actors: Dict[str, _Cluster]) -> None:
    """One name tagged both as an organisation and as an attack group or malware in one article
    ("Yanluowang", "Transnet") is one thing: the actor when the alias table knows it, else
    whichever label most of its mentions have (the organisation on a tie)."""
    names: Dict[str, str] = {}
    for key, c in actors.items():
        for s in c.spans:
            names.setdefault(org_key(s.text), key)
        if c.link and c.link.get("canonical"):
            names.setdefault(org_key(str(c.link["canonical"])), key)
    for okey in list(orgs):
        akey = names.get(okey)
        if akey is None or akey not in actors:
            continue
        actor, org = actors[akey], orgs[okey]
        if actor.link is not None or len(actor.spans) > len(org.spans):
            actor.spans = sorted(actor.spans + org.spans, key=lambda s: s.start)
            del orgs[okey]
        else:
            org.spans = sorted(org.spans + actor.spans, key=lambda s: s.start)
            del actors[akey]
    _unlinked_group_names(orgs, actors)


def _org_variant(name: str, orgs: Dict[str, _Cluster]) -> Optional[str]:
    """The key of the organisation ``name`` names, if any: a variant (``same_organisation``) or the
    first words of its name ("Formosa" / "Formosa Petrochemical")."""
    words = org_key(name).split()
    if not words:
        return None
    for key, org in orgs.items():
        if key.split()[: len(words)] == words or same_organisation(org.name, name):
            return key
    return None


def _unlinked_group_names(orgs: Dict[str, _Cluster], actors: Dict[str, _Cluster]) -> None:
    """Attack-group names the alias table does not know need to look like one. In the gold spans of
    the train and dev splits (715 group names, 30 of them unknown to the table) no unknown group
    name is written in lower case, and none is a variant or the first words of an organisation
    named in the same article; tagger errors are ("patchwork", "category 1"; "Transnet" beside
    the organisation Transnet, "Formosa" beside "Formosa Petrochemical", "SIT" beside
    "Südwestfalen-IT"). Lower-case ones are dropped, organisation-like ones become organisations.

    The rest are kept only when the article treats them as an actor: a cue word ("gang", "group",
    "hackers", "ransomware", "claimed": the actor linker's ``CUE_WORDS``) near one of their mentions,
    or a tracker's designation with a digit in it ("Storm-1359", "DEV-0861", "Unit 74455"). Of the
    31 unknown gold group names (per article) in train and dev, 27 have one or the other. Of the
    record slots the shipped pipeline filled with unknown names on train and dev, 1 of the 12 right
    ones has neither ("Notchy") and 9 of the 16 wrong ones (products and companies such as "Jira",
    "Akamai", "RiskIQ"; malware such as "Snake"); records' attack-group F1 on dev 0.746 -> 0.781."""
    for key in list(actors):
        c = actors[key]
        if c.label != ATTACK_GROUP or c.link is not None:
            continue
        if not any(ch.isupper() for ch in c.name):
            del actors[key]
        elif (okey := _org_variant(c.name, orgs)) is not None:
            orgs[okey].spans = sorted(orgs[okey].spans + c.spans, key=lambda s: s.start)
            del actors[key]
        elif not any(ch.isdigit() for ch in c.name) and not any(cue_near(s.doc, s.start, s.end, _CUE_WORDS, inside=False) for s in c.spans):
            del actors[key]


class _Entity:
    """Organisation clusters that name one organisation ("HPE", "Hewlett Packard Enterprise")."""

    def __init__(self, clusters: List[_Cluster]) -> None:
        self.clusters = clusters
        self.label = clusters[0].label

    @property
    def spans(self) -> List[Span]:
        return [s for c in self.clusters for s in c.spans]


def connected(n: int, linked: Callable[[int, int], bool]) -> List[List[int]]:
    """Connected components of items 0..n-1 under ``linked`` (union-find), in order of first item."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if linked(i, j):
                parent[find(i)] = find(j)
    comps: Dict[int, List[int]] = defaultdict(list)
    for i in range(n):
        comps[find(i)].append(i)
    return list(comps.values())


def organisation_entities(clusters: Sequence[_Cluster], aliases: Iterable[Tuple[str, str]] = ()) -> List[_Entity]:
    """Group organisation clusters whose names are variants of each other (``same_organisation``)
    or that the text gives as one another's alias (``bracket_aliases``: pairs of cluster keys)."""
    pairs = {frozenset(p) for p in aliases}

    def linked(i: int, j: int) -> bool:
        return frozenset((clusters[i].key, clusters[j].key)) in pairs or same_organisation(clusters[i].name, clusters[j].name)

    return [_Entity([clusters[i] for i in idx]) for idx in connected(len(clusters), linked)]


def bracket_aliases(mentions: Sequence[Span]) -> List[Tuple[str, str]]:
    """Organisation names the text introduces as one another's alias: "Singapore Health Services
    (SingHealth)", "Südwestfalen-IT (SIT)" (``org_key`` pairs; ``mentions``: the organisation
    mentions in text order). In the train split's gold, the two organisations of such a pattern have the same role in 66 of 67 cases, 24 of them names that
    ``same_organisation`` does not pair ("Petroleos Mexicanos (Pemex)")."""
    out = []
    for a, b in zip(mentions, mentions[1:]):
        if b.start == a.end + 1 and b.end < len(a.doc) \
                and a.doc[a.end].text == "(" and a.doc[b.end].text == ")":
            out.append((org_key(a.text), org_key(b.text)))
    return out


VICTIM_OWN_SENTENCES = 2


def victims_together(a: Set[int], b: Set[int]) -> bool:
    """Whether two victims, named in sentences ``a`` and ``b``, are victims of one incident: they
    share a sentence, and one of them is named in fewer than ``VICTIM_OWN_SENTENCES`` sentences
    without the other. Two victims each with a story of their own ("HPE follows Microsoft in
    disclosing a breach") are two incidents even where a sentence names both. On the pairs of
    gold victims that share a sentence in the train split's records, this decides 105 of 122
    pairs as the records do (linking every such pair: 94); on the records of the train split it
    raised victims F1 from 0.820 to 0.838, on dev from 0.632 to 0.658.
    """
    if not a & b:
        return False
    return min(len(a - b), len(b - a)) < VICTIM_OWN_SENTENCES


def incident_seeds(victims: Sequence[_Entity], groups: Sequence[_Entity], sents: Callable[[_Entity], Set[int]]) -> Tuple[List[List[_Entity]], List[_Entity]]:
    """Incidents as lists of victims and attack groups, and the groups named with no victim.

    Victims form incidents (connected by ``victims_together``); each incident takes the groups
    named in most of its sentences (several on a tie; one group can attack several victims).
    Without victims, all groups make one incident.
    """
    if not victims:
        return ([list(groups)] if groups else []), []
    vs = [sents(v) for v in victims]
    incidents = [[victims[i] for i in idx] for idx in connected(len(victims), lambda i, j: victims_together(vs[i], vs[j]))]
    used: Set[int] = set()
    for inc in incidents:
        inc_sents = set().union(*(sents(x) for x in inc))
        shared = {k: len(inc_sents & sents(g)) for k, g in enumerate(groups)}
        top = max(shared.values(), default=0)
        for k, n in shared.items():
            if top > 0 and n == top:
                inc.append(groups[k])
                used.add(k)
    return incidents, [g for k, g in enumerate(groups) if k not in used]


class RecordBuilder:
    """Assemble incident records from entities (see the module docstring)."""

    def __init__(self, nlp: Language, name: str = "nhs_record_builder", *, incident_threshold: float = 0.5,
                 min_victim_mentions: int = 1) -> None:
        self.name = name
        self.incident_threshold = incident_threshold
        self.min_victim_mentions = min_victim_mentions
        self.role_model = LinearModel()
        self.incident_model = LinearModel()
        self.attack_type_model = LinearModel()
        # Per label: is a mention part of the incident ("in") or named in passing ("none")?
        self.item_models: Dict[str, LinearModel] = {}
        # Decision thresholds chosen on dev ("incident" and per item label); 0.5 by default.
        self.thresholds: Dict[str, float] = {}
        self.meta: Dict[str, Any] = {}
        # The sentence encoder the attack-type model was trained with (None: words only).
        self.sentence_encoder: Optional[str] = None
        self.sentence_encoder_int8 = True
        self._encoder: Any = None
        install_extensions()

    # -- models --------------------------------------------------------------

    @property
    def is_trained(self) -> bool:
        return self.role_model.is_trained and self.incident_model.is_trained and self.attack_type_model.is_trained

    def roles_for(self, ctx: DocContext, spans: Sequence[Span]) -> List[Dict[str, float]]:
        return [self.role_model.predict_proba(mention_features(ctx, s)) for s in spans]

    def entity_roles(self, ctx: DocContext, entities: Sequence[_Entity]) -> List[Tuple[str, float]]:
        """One role per organisation, with its probability: the mean over the mentions of all its names."""
        out = []
        for entity in entities:
            probs = self.roles_for(ctx, entity.spans)
            mean = {r: float(np.mean([p.get(r, 0.0) for p in probs])) for r in ROLE_CLASSES}
            role = max(mean, key=mean.get)  # type: ignore[arg-type]
            out.append((role, round(mean[role], 4)))
        return out

    def relevant(self, ctx: DocContext, spans: Sequence[Span]) -> Tuple[bool, float]:
        """Whether the mentions of one service or quantity belong to the incident (mean probability >= the threshold)."""
        model = self.item_models.get(spans[0].label_)
        if model is None or not model.is_trained:
            return True, 1.0
        p = float(np.mean([model.predict_proba(mention_features(ctx, s)).get("in", 0.0) for s in spans]))
        return p >= self.thresholds.get(spans[0].label_, 0.5), p

    def actor_relevant(self, ctx: DocContext, cluster: _Cluster, clusters: Sequence[_Cluster]) -> Tuple[bool, float]:
        """Whether an attack group or malware is part of the incident (rather than a predecessor,
        an affiliate or a tool named in passing): the item model over ``actor_cluster_features``."""
        model = self.item_models.get(cluster.label)
        if model is None or not model.is_trained:
            return True, 1.0
        p = model.predict_proba(actor_cluster_features(ctx, cluster, clusters)).get("in", 0.0)
        return p >= self.thresholds.get(cluster.label, 0.5), p

    # -- run -------------------------------------------------------------------

    def __call__(self, doc: Doc) -> Doc:
        if not self.is_trained:
            raise ValueError(
                f"[{self.name}] the record models are not trained. Train them with "
                "`nhs-nlp records train` (or use the shipped pipeline models/nhs-nlp-ner)."
            )
        doc._.incidents = [r.model_dump(mode="json") for r in self.build(doc)]
        return doc

    def pipe(self, docs: Iterable[Doc], batch_size: int = 128) -> Iterable[Doc]:
        for doc in docs:
            yield self(doc)

    def build(self, doc: Doc) -> List[IncidentRecord]:
        """The incident records of one document (empty when it reports none)."""
        if not len(doc) or not doc.ents:
            return []
        ctx = DocContext(doc, doc.ents)
        p_incident = self.incident_model.predict_proba(doc_features(doc, ctx.sent_of)).get("incident", 0.0)
        if p_incident < self.thresholds.get("incident", self.incident_threshold):
            return []
        orgs: Dict[str, _Cluster] = {}
        services: Dict[str, _Cluster] = {}
        quantities: List[Span] = []
        for ent in doc.ents:
            if ent.label_ == ORG and not is_proper_name(ent.text):
                continue  # "the city council": gold organisations are named (4 of 2,821 train ORG spans are not)
            if ent.label_ == ORG:
                orgs.setdefault(org_key(ent.text), _Cluster(org_key(ent.text), ORG)).spans.append(ent)
            elif ent.label_ == SERVICE:
                services.setdefault(org_key(ent.text), _Cluster(org_key(ent.text), SERVICE)).spans.append(ent)
            elif ent.label_ == QUANTITY:
                quantities.append(ent)
        actors = actor_clusters(ctx, doc.ents)
        _resolve_label_conflicts(orgs, actors)
        org_spans = sorted((s for c in orgs.values() for s in c.spans), key=lambda s: s.start)
        entities = organisation_entities(list(orgs.values()), bracket_aliases(org_spans))
        for entity, (role, score) in zip(entities, self.entity_roles(ctx, entities)):
            for c in entity.clusters:
                c.role, c.score = role, score
        sent_of = ctx.sent_of

        def sents(c: Union[_Cluster, _Entity]) -> Set[int]:
            return {sent_of[s.start] for s in c.spans}

        all_actors = list(actors.values())
        for key in list(actors):
            if not self.actor_relevant(ctx, actors[key], all_actors)[0]:
                del actors[key]
        for key in list(services):
            if not self.relevant(ctx, services[key].spans)[0]:
                del services[key]
        quantities = [q for q in quantities if self.relevant(ctx, [q])[0]]
        victims = [e for e in entities if e.clusters[0].role == "victim" and len(e.spans) >= self.min_victim_mentions]
        groups = [_Entity([c]) for c in actors.values() if c.label == ATTACK_GROUP]
        incidents, unplaced = incident_seeds(victims, groups, sents)
        if not incidents:
            return []

        # Salience: mentions, with the title counting double; the most salient first.
        def salience(inc: List[_Entity]) -> float:
            return sum(len(x.spans) + (1 if 0 in sents(x) else 0) for x in inc)

        incidents.sort(key=lambda inc: (-salience(inc), min(s.start for x in inc for s in x.spans)))
        inc_sents = [set().union(*(sents(x) for x in inc)) for inc in incidents]

        def nearest(sent_ids: Set[int]) -> int:
            best, best_d = 0, math.inf
            for k, ss in enumerate(inc_sents):
                d = min(abs(a - b) for a in sent_ids for b in ss)
                if d < best_d:
                    best, best_d = k, d
            return best

        members: List[List[_Cluster]] = [[c for x in inc for c in x.clusters] for inc in incidents]
        for group in unplaced:
            members[nearest(sents(group))].extend(group.clusters)
        for entity in entities:
            if entity.clusters[0].role in ("affected", "other"):
                members[nearest(sents(entity))].extend(entity.clusters)
        for c in actors.values():
            if c.label == MALWARE:
                members[nearest(sents(c))].append(c)
        for c in services.values():
            members[nearest(sents(c))].append(c)
        quantity_of: List[List[Span]] = [[] for _ in incidents]
        for q in quantities:
            quantity_of[nearest({sent_of[q.start]})].append(q)
        records = []
        for k, items in enumerate(members):
            records.append(self._record(doc, ctx, k + 1, items, quantity_of[k]))
        return records

    def _record(self, doc: Doc, ctx: DocContext, number: int, items: List[_Cluster], qspans: List[Span]) -> IncidentRecord:
        from ..records import Actor, Organisation, QuantityItem, Service, Stated

        rec = IncidentRecord(incident_id=str(number))
        for c in sorted(items, key=lambda x: x.spans[0].start):
            if c.label == ORG:
                org = Organisation(name=c.name, mentions=c.mentions, role=c.role, score=c.score)
                getattr(rec, ROLE_FIELDS[c.role]).append(org)  # type: ignore[index]
            elif c.label in (ATTACK_GROUP, MALWARE):
                link = c.link or {}
                actor = Actor(
                    name=c.name, mentions=c.mentions, canonical=link.get("canonical"), kind=link.get("kind"),
                    aliases=list(link.get("aliases") or []), attack_ids=list(link.get("attack_ids") or []),
                    misp_uuid=link.get("misp_uuid"),
                )
                (rec.attack_groups if c.label == ATTACK_GROUP else rec.malware).append(actor)
            elif c.label == SERVICE:
                rec.affected_services.append(Service(name=c.name, mentions=c.mentions))
        for q in qspans:
            parsed = q._.quantity if Span.has_extension("quantity") and q._.quantity else None
            if parsed is None:
                from .quantities import quantity_dict

                parsed = quantity_dict(q)
            data = dict(parsed or {"text": q.text})
            data["text"] = q.text
            data["mentions"] = [(q.start_char, q.end_char)]
            rec.quantities.append(QuantityItem(**{k: v for k, v in data.items() if k in QuantityItem.model_fields}))
        seed_sents = {ctx.sent_of[s.start] for c in items if c.label in (ORG, ATTACK_GROUP) and (c.label != ORG or c.role == "victim") for s in c.spans}
        if not seed_sents:
            seed_sents = {ctx.sent_of[s.start] for c in items for s in c.spans} or {0}
        rec.attack_type = self._attack_type(doc, ctx, seed_sents)
        rec.attribution = _attribution(ctx, seed_sents | {ctx.sent_of[s.start] for c in items if c.label == ATTACK_GROUP for s in c.spans})
        rec.dates = _dates(ctx, seed_sents)
        return rec.fill_evidence()

    def _attack_type(self, doc: Doc, ctx: DocContext, seed_sents: Set[int]):
        from ..records import Stated

        embedding = article = None
        if self._encoder is not None:
            article = article_embedding(ctx, self._encoder)
            embedding = incident_embedding(ctx, seed_sents, self._encoder)
        feats = record_text_features(doc, seed_sents, ctx.sents, embedding, article)
        probs = self.attack_type_model.predict_proba(feats)
        label = max(probs, key=probs.get)  # type: ignore[arg-type]
        # Evidence: the incident's own words that argue most for the type.
        mentions: List[Tuple[int, int]] = []
        for weight, name in self.attack_type_model.contributions(feats, label):
            if weight <= 0 or not name.startswith("s:"):
                continue
            word = name[2:]
            for sid in sorted(seed_sents):
                for t in ctx.sents[sid]:
                    if _word(t) == word:
                        mentions.append((t.idx, t.idx + len(t)))
                        break
                if mentions:
                    break
            if mentions:
                break
        return Stated(value=label, mentions=mentions)

    # -- scoring for spaCy's training/evaluate loop ---------------------------

    # -- serialisation ---------------------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        return {
            "role": self.role_model.to_dict(),
            "incident": self.incident_model.to_dict(),
            "attack_type": self.attack_type_model.to_dict(),
            "items": {label: m.to_dict() for label, m in sorted(self.item_models.items())},
            "thresholds": dict(sorted(self.thresholds.items())),
            "meta": self.meta,
            "sentence_encoder": self.sentence_encoder,
            "sentence_encoder_int8": self.sentence_encoder_int8,
        }

    def set_sentence_encoder(self, name: Optional[str], int8: bool = True) -> None:
        """Use the sentence encoder ``name`` (a package or folder) for attack types; None: words only.
        int8: with dynamic int8 Linear layers, as the attack-type model was trained (see
        ``nhs_nlp.sentence_encoder``). Raises a ValueError naming the package to install when it is missing."""
        from ..sentence_encoder import get_sentence_encoder

        self.sentence_encoder = name or None
        self.sentence_encoder_int8 = int8
        self._encoder = get_sentence_encoder(name, int8) if name else None

    def from_dict(self, data: Dict[str, Any]) -> "RecordBuilder":
        self.role_model = LinearModel.from_dict(data["role"])
        self.incident_model = LinearModel.from_dict(data["incident"])
        self.attack_type_model = LinearModel.from_dict(data["attack_type"])
        self.item_models = {label: LinearModel.from_dict(m) for label, m in data.get("items", {}).items()}
        self.thresholds = {k: float(v) for k, v in data.get("thresholds", {}).items()}
        self.meta = data.get("meta", {})
        try:
            self.set_sentence_encoder(data.get("sentence_encoder"), bool(data.get("sentence_encoder_int8", True)))
        except ValueError as err:
            raise ValueError(f"[{self.name}] the attack-type model was trained with sentence embeddings: {err}") from err
        return self

    def to_bytes(self, *, exclude: Sequence[str] = ()) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode("utf8")

    def from_bytes(self, data: bytes, *, exclude: Sequence[str] = ()) -> "RecordBuilder":
        return self.from_dict(json.loads(data.decode("utf8")))

    def to_disk(self, path: Union[str, Path], *, exclude: Sequence[str] = ()) -> None:
        path = ensure_path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "models.json").write_text(json.dumps(self.to_dict(), sort_keys=True, indent=0), encoding="utf8")

    def from_disk(self, path: Union[str, Path], *, exclude: Sequence[str] = ()) -> "RecordBuilder":
        file = ensure_path(path) / "models.json"
        if not file.exists():
            raise FileNotFoundError(f"[{self.name}] {file} is missing: the record models were not saved with this pipeline")
        return self.from_dict(json.loads(file.read_text(encoding="utf8")))


def _attribution(ctx: DocContext, sent_ids: Set[int]):
    """The country the incident's sentences attribute the attack to (a nationality or
    country next to an attribution cue such as "state-backed", "linked to", "Russian-speaking")."""
    from ..records import Stated

    names = sorted(_NATIONS, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b", re.I)
    for sid in sorted(sent_ids):
        sent = ctx.sents[sid]
        text = sent.text
        if not _ATTRIBUTION_CUES.search(text):
            continue
        for m in pattern.finditer(text):
            word = m.group(1)
            if word in ("US", "UK") or word.lower() not in ("us", "uk"):
                start = sent.start_char + m.start(1)
                return Stated(value=_NATIONS[word.lower()], mentions=[(start, start + len(word))])
    return None


def _dates(ctx: DocContext, sent_ids: Set[int]):
    """Dates stated in the incident's sentences, as ISO strings (year from the text when given)."""
    from ..records import Stated

    out: List[Stated] = []
    seen = set()
    for sid in sorted(sent_ids):
        sent = ctx.sents[sid]
        for m in _DATE_RE.finditer(sent.text):
            g = m.groupdict()
            month = _MONTHS[(g["m1"] or g["m2"] or g["m3"]).lower()]
            day = g["d1"] or g["d2"]
            year = g["y1"] or g["y2"]
            if year and day:
                value = f"{year}-{month:02d}-{int(day):02d}"
            elif year:
                value = f"{year}-{month:02d}"
            else:
                value = f"--{month:02d}-{int(day):02d}"  # ISO 8601 without a year
            if value in seen:
                continue
            seen.add(value)
            start = sent.start_char + m.start()
            out.append(Stated(value=value, mentions=[(start, start + len(m.group(0)))]))
    return out


@Language.factory(
    "nhs_record_builder",
    assigns=["doc._.incidents"],
    requires=["doc.ents"],
    default_config={"incident_threshold": 0.5, "min_victim_mentions": 1},
)
def make_record_builder(nlp: Language, name: str, incident_threshold: float, min_victim_mentions: int) -> RecordBuilder:
    """Assemble IncidentRecords (doc._.incidents) from the entities; models trained by `nhs-nlp records train`."""
    return RecordBuilder(nlp, name, incident_threshold=incident_threshold, min_victim_mentions=min_victim_mentions)
