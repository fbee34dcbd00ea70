"""Link ATTACK_GROUP and MALWARE spans to the alias table, and raise their recall.

Two pipes, placed after ``ner``:

- ``actor_ruler``: spaCy's built-in ``span_ruler`` with patterns from the alias
  table (``nhs_nlp.actor_patterns.v1``). It writes candidate spans to
  ``doc.spans["actor_candidates"]`` and leaves ``doc.ents`` alone.
- ``nhs_actor_linker``: promotes candidates that overlap no entity to ``doc.ents``
  (common-word names only with supporting context), then sets ``span._.link`` on
  every ATTACK_GROUP and MALWARE entity: the table entry as a JSON-safe dict, or
  None for names the table does not know. Spans are never dropped.

A common-word name ("Play", "Royal", "Hunters", "Agenda", "Medusa", "Akira": see
``nhs_nlp.aliases.is_common_word``) is linked, or added, only with supporting
context: a cue word ("ransomware", "gang", "hackers", "claimed", "leak", …) in its
sentence within ``window`` tokens, or the same entry linked elsewhere in the doc
by a name that needs no context.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import srsly
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import from_disk as util_from_disk
from spacy.util import registry
from spacy.util import to_disk as util_to_disk

from ..aliases import AliasTable, Match, fold_leet, is_common_word, normalise, word_frequency
from ..extensions import install_extensions
from ..labels import ATTACK_GROUP, MALWARE
from .repair import NOT_AFTER

CANDIDATES_KEY = "actor_candidates"
TABLE_FILE = "aliases.json"
#: Words that mark a nearby common-word name as an actor.
CUE_WORDS: Tuple[str, ...] = (
    "actor", "actors", "affiliate", "affiliates", "apt", "cartel", "claim", "claimed", "claiming", "claims",
    "crew", "cybercriminal", "cybercriminals", "criminals", "encryptor", "extortion", "extortionists",
    "gang", "gangs", "group", "groups", "hacker", "hackers", "hacking", "leak", "leaked", "malware",
    "operation", "operators", "raas", "ransom", "ransomware", "strain", "variant",
)
# Which kinds suit a span label, for names that several entries claim equally.
LABEL_KINDS: Dict[str, Tuple[str, ...]] = {ATTACK_GROUP: ("group", "ransomware"), MALWARE: ("malware", "ransomware")}
_SENT_END = {".", "!", "?"}
#: Last words of a table name that describe rather than name ("Ryuk ransomware").
_GENERIC_HEADS = frozenset({"ransomware", "malware"})
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
#: The built-in span_ruler's settings for the actor ruler (patterns: ``actor_patterns``).
RULER_CONFIG: Dict[str, Any] = {
    "spans_key": CANDIDATES_KEY,
    "annotate_ents": False,
    "phrase_matcher_attr": "ORTH",
    "validate": True,
    "overwrite": True,
}


def cue_near(doc: Doc, start: int, end: int, cue_words: Iterable[str], window: int = 8, inside: bool = True) -> bool:
    """Whether a cue word (lower case) is within ``window`` tokens of ``doc[start:end]`` in its
    sentence (the doc's sentences, else up to sentence punctuation or a blank line).
    inside (bool): the span's own words count too.
    """
    lo, hi = max(0, start - window), min(len(doc), end + window)
    if doc.has_annotation("SENT_START"):
        sent = doc[start].sent
        lo, hi = max(lo, sent.start), min(hi, sent.end)
    else:
        left = start
        while left > lo and doc[left - 1].text not in _SENT_END and "\n\n" not in doc[left - 1].text_with_ws:
            left -= 1
        right = end
        while right < hi and doc[right - 1].text not in _SENT_END and "\n\n" not in doc[right - 1].text_with_ws:
            right += 1
        lo, hi = left, right
    return any(doc[i].lower_ in cue_words for i in range(lo, hi) if inside or not start <= i < end)


@Language.factory(
    "nhs_actor_linker",
    default_config={
        "labels": [ATTACK_GROUP, MALWARE],
        "candidates_key": CANDIDATES_KEY,
        "window": 8,
        "cue_words": list(CUE_WORDS),
        "keep_candidates": False,
    },
    assigns=["doc.ents", "span._.link"],
    requires=["doc.ents"],
    default_score_weights={"actor_linked": 0.0},
)
def make_actor_linker(
    nlp: Language,
    name: str,
    labels: List[str],
    candidates_key: Optional[str],
    window: int,
    cue_words: List[str],
    keep_candidates: bool,
) -> "ActorLinker":
    """Create the actor linker (``nlp.add_pipe("nhs_actor_linker", after="ner")``).

    labels (List[str]): entity labels to link.
    candidates_key (Optional[str]): span group written by the actor ruler; its spans
        are promoted to entities when they overlap none. None: add nothing.
    window (int): tokens either side (within the sentence) searched for a cue word.
    cue_words (List[str]): lower-case words that support a common-word name.
    keep_candidates (bool): keep the candidate span group on the doc afterwards.
    """
    return ActorLinker(nlp, name, labels=labels, candidates_key=candidates_key, window=window, cue_words=cue_words, keep_candidates=keep_candidates)


class ActorLinker:
    """Sets ``span._.link`` on ATTACK_GROUP/MALWARE entities and adds ruler candidates.

    The alias table is loaded in ``initialize()`` (the packaged table by default)
    and saved with the pipeline (``aliases.json``).
    """

    def __init__(
        self,
        nlp: Language,
        name: str = "nhs_actor_linker",
        *,
        labels: Sequence[str] = (ATTACK_GROUP, MALWARE),
        candidates_key: Optional[str] = CANDIDATES_KEY,
        window: int = 8,
        cue_words: Iterable[str] = CUE_WORDS,
        keep_candidates: bool = False,
    ):
        install_extensions()
        labels = list(labels)
        if not labels:
            raise ValueError(f"[{name}] labels must name at least one entity label, e.g. labels = [\"{ATTACK_GROUP}\", \"{MALWARE}\"]")
        if window < 0:
            raise ValueError(f"[{name}] window must be 0 or more tokens, got {window}; e.g. window = 8")
        self.name = name
        self.vocab = nlp.vocab
        self.labels = labels
        self.candidates_key = candidates_key
        self.window = window
        self.cue_words = frozenset(w.lower() for w in cue_words)
        self.keep_candidates = keep_candidates
        self.table: Optional[AliasTable] = None

    # ------------------------------------------------------------------ set-up
    def initialize(
        self,
        get_examples: Optional[Callable[[], Iterable[Example]]] = None,
        *,
        nlp: Optional[Language] = None,
        table: Optional[str] = None,
    ) -> None:
        """Load the alias table.

        table (Optional[str]): a table file from ``nhs-nlp aliases build`` [default:
            the packaged ``nhs_nlp/data/aliases.json``].
        """
        self.table = AliasTable.from_file(table)

    def set_table(self, table: AliasTable) -> None:
        """Use an alias table already in memory."""
        self.table = table

    def _require_table(self) -> AliasTable:
        if self.table is None:
            raise ValueError(
                f"[{self.name}] has no alias table. Call nlp.initialize() on a new pipeline, or "
                f"nlp.get_pipe({self.name!r}).initialize() when adding it to a trained one."
            )
        return self.table

    # ------------------------------------------------------------------ context
    def has_cue(self, doc: Doc, start: int, end: int) -> bool:
        """Whether a cue word is near tokens ``start:end`` (same sentence, within the window)."""
        return cue_near(doc, start, end, self.cue_words, self.window)

    def _inside_longer_name(self, doc: Doc, start: int, end: int) -> bool:
        """A capitalised word right before or after ("the Royal Mail"): part of another name."""
        for i in (start - 1, end):
            if 0 <= i < len(doc):
                tok = doc[i]
                if tok.is_alpha and tok.text[:1].isupper() and tok.lower_ not in self.cue_words and not (i == start - 1 and tok.is_sent_start):
                    return True
        return False

    # ------------------------------------------------------------------ linking
    def _choose(self, match: Match, label: str, support: Set[int]) -> Optional[int]:
        if match.entry is not None:
            return match.entry
        if not match.candidates:
            return None
        known = [i for i in match.candidates if i in support]
        if len(known) == 1:
            return known[0]
        table = self._require_table()
        kinds = LABEL_KINDS.get(label, ())
        fitting = [i for i in match.candidates if table.entries[i]["kind"] in kinds]
        return fitting[0] if len(fitting) == 1 else None

    def resolve(self, doc: Doc, start: int, end: int, text: str, label: str, support: Set[int]) -> Optional[int]:
        """The table entry for a name at ``doc[start:end]``, or None.

        support (Set[int]): entries linked elsewhere in the doc without needing context.
        """
        table = self._require_table()
        match = table.lookup(text)
        entry = self._choose(match, label, support)
        if entry is None:
            return None
        if match.common and entry not in support and not self.has_cue(doc, start, end):
            return None
        return entry

    def _promote(self, doc: Doc) -> None:
        if self.candidates_key is None or self.candidates_key not in doc.spans:
            return
        table = self._require_table()
        self._extend(doc, table)
        taken = [False] * len(doc)
        for ent in doc.ents:
            for i in range(ent.start, ent.end):
                taken[i] = True
        support: Set[int] = set()
        for ent in doc.ents:
            if ent.label_ in self.labels:
                m = table.lookup(ent.text)
                if m.entry is not None and not m.common:
                    support.add(m.entry)
        added: List[Span] = []
        candidates = sorted(doc.spans[self.candidates_key], key=lambda s: (s.start, -(s.end - s.start)))
        found = [(cand, table.lookup(cand.text)) for cand in candidates if cand.label_ in self.labels]
        # Names that need no context first: they support common-word mentions of
        # the same entry later in the doc ("Hunters International … Hunters said").
        for common_pass in (False, True):
            for cand, m in found:
                if m.entry is None or m.common != common_pass or any(taken[cand.start : cand.end]):
                    continue
                if cand.start > 0 and doc[cand.start - 1].text in NOT_AFTER:
                    continue  # "Operation Medusa": an operation's name (see components.repair)
                if m.common and (self._inside_longer_name(doc, cand.start, cand.end) or not (m.entry in support or self.has_cue(doc, cand.start, cand.end))):
                    continue
                added.append(Span(doc, cand.start, cand.end, label=cand.label_))
                support.add(m.entry)
                for i in range(cand.start, cand.end):
                    taken[i] = True
        if added:
            doc.set_ents(added, default="unmodified")
        if not self.keep_candidates:
            del doc.spans[self.candidates_key]

    def _extend(self, doc: Doc, table: AliasTable) -> None:
        """A known name that wholly contains one tagged entity replaces it ("Winnti" ->
        "Winnti Group", "INC" -> "INC Ransom", "Daixin" -> "Daixin Team"): the longer name is the
        name. On the gold spans of the train and dev splits, a table name that needs no context
        matches a gold span exactly 1,177 times and contains a shorter gold span 3 times ("Ryuk
        ransomware", "ALPHV/BlackCat": names ending in "ransomware" or "malware", or containing two
        entities, are left alone). The tagger's label stays unless it was ORG."""
        ents = list(doc.ents)
        if not ents:
            return
        owner = [-1] * len(doc)
        for k, ent in enumerate(ents):
            for i in range(ent.start, ent.end):
                owner[i] = k
        replace: Dict[int, Span] = {}
        candidates = sorted(doc.spans[self.candidates_key], key=lambda s: (-(s.end - s.start), s.start))
        for cand in candidates:
            if cand.label_ not in self.labels or doc[cand.end - 1].lower_ in _GENERIC_HEADS:
                continue
            inside = {owner[i] for i in range(cand.start, cand.end)} - {-1}
            if len(inside) != 1:
                continue
            k = inside.pop()
            ent = ents[k]
            if k in replace or ent.start < cand.start or ent.end > cand.end or len(ent) == len(cand):
                continue
            m = table.lookup(cand.text)
            if m.entry is None or m.common:
                continue
            label = ent.label_ if ent.label_ in self.labels else cand.label_
            replace[k] = Span(doc, cand.start, cand.end, label=label)
        if replace:
            doc.ents = [replace.get(k, e) for k, e in enumerate(ents)]

    def __call__(self, doc: Doc) -> Doc:
        table = self._require_table()
        self._promote(doc)
        ents = [e for e in doc.ents if e.label_ in self.labels]
        matches = {e.start: table.lookup(e.text) for e in ents}
        support = {m.entry for m in matches.values() if m.entry is not None and not m.common}
        chosen: Dict[int, Optional[int]] = {}
        for e in ents:
            chosen[e.start] = self.resolve(doc, e.start, e.end, e.text, e.label_, set())
            if chosen[e.start] is not None:
                support.add(chosen[e.start])  # type: ignore[arg-type]
        for e in ents:
            if chosen[e.start] is None:
                chosen[e.start] = self.resolve(doc, e.start, e.end, e.text, e.label_, support)
        for e in ents:
            entry = chosen[e.start]
            e._.link = table.link(entry) if entry is not None else None
        return doc

    def pipe(self, stream: Iterable[Doc], batch_size: int = 128) -> Iterable[Doc]:
        for doc in stream:
            yield self(doc)

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, float]:
        """``actor_linked``: the share of predicted ATTACK_GROUP/MALWARE entities linked."""
        total = linked = 0
        for eg in examples:
            for ent in eg.predicted.ents:
                if ent.label_ in self.labels:
                    total += 1
                    linked += ent._.link is not None
        return {"actor_linked": linked / total if total else 0.0}

    # ------------------------------------------------------------------ serialisation
    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        return srsly.msgpack_dumps({"table": self.table.to_bytes() if self.table is not None else None})

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "ActorLinker":
        data = srsly.msgpack_loads(bytes_data)
        self.table = AliasTable.from_bytes(data["table"], f"[{self.name}] bytes") if data.get("table") is not None else None
        return self

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        serializers: Dict[str, Callable[[Path], Any]] = {}
        if self.table is not None:
            table = self.table
            serializers[TABLE_FILE] = lambda p: Path(p).write_bytes(table.to_bytes())
        util_to_disk(path, serializers, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "ActorLinker":
        def read(p: Path) -> None:
            if Path(p).exists():
                self.table = AliasTable.from_file(p)

        util_from_disk(path, {TABLE_FILE: read}, exclude)
        return self


# ---------------------------------------------------------------------- ruler patterns


def _variants(alias: str) -> List[str]:
    """Spellings the ruler also matches: "Black Basta" <-> "BlackBasta"."""
    out = [alias]
    words = alias.split()
    if len(words) > 1 and all(len(w) >= 3 and w.isalpha() for w in words):
        out.append("".join(words))
    if len(words) == 1 and _CAMEL.search(alias):
        parts = _CAMEL.split(alias)
        if all(len(p) >= 3 for p in parts):
            out.append(" ".join(parts))
    return out


def actor_patterns(table: AliasTable) -> List[Dict[str, Any]]:
    """``span_ruler`` phrase patterns (matched on ORTH) for the aliases of the table.

    An alias gets patterns when it resolves to its own entry and is longer than two
    characters. Spellings: as written, Title case and UPPER case, plus lower case
    for names with no English word in them (wordfreq), so "lockbit" matches but
    "play" and "encrypt" do not; short names (three characters) only as written
    and in UPPER case. A
    common-word name gets patterns only when it is the entry's own name, not one of
    its synonyms (MISP lists "Russian" among the synonyms of a ransomware family),
    and of a group, an operation or an ATT&CK entry: the many families known only
    from samples ("Core", "Frozen", "Chip") are left to the NER.
    Each pattern's id is the entry's canonical name. Exact-case phrase patterns keep
    the ruler as fast as a PhraseMatcher, whatever the number of aliases.
    RETURNS (List[Dict[str, Any]]): the patterns, sorted (a list, as span_ruler needs).
    """
    seen: Set[Tuple[str, str]] = set()
    patterns: List[Dict[str, Any]] = []
    for index, entry in enumerate(table.entries):
        label = table.label(index)
        own = {a.casefold() for a in entry.get("pinned", []) + entry.get("primary", [])}
        for alias in entry["aliases"]:
            key = normalise(alias)
            if len(key) <= 2 or table.lookup(alias).entry != index:
                continue
            common = fold_leet(key) in table.common
            if common and (alias.casefold() not in own or not (entry["kind"] != "malware" or entry["attack_ids"])):
                continue
            everyday = common or all(is_common_word(w) for w in alias.split())
            for spelling in _variants(alias):
                if len(key) <= 3:
                    forms = {spelling, spelling.upper()}
                elif everyday:
                    forms = {spelling, spelling.title(), spelling.upper()}
                else:
                    forms = {spelling, spelling.title(), spelling.upper(), spelling.lower()}
                if len(key) <= 3 or word_frequency(spelling) > 0:
                    forms = {f for f in forms if f != f.lower()}
                for form in forms:
                    if (label, form) not in seen:
                        seen.add((label, form))
                        patterns.append({"label": label, "pattern": form, "id": entry["canonical"]})
    patterns.sort(key=lambda p: (p["label"], p["pattern"], p["id"]))
    return patterns


@registry.misc("nhs_nlp.actor_patterns.v1")
def create_actor_patterns(table: Optional[str] = None) -> List[Dict[str, Any]]:
    """Patterns for ``[initialize.components.actor_ruler.patterns]``.

    table (Optional[str]): an alias table file [default: the packaged one].
    """
    return actor_patterns(AliasTable.from_file(table))


def add_actor_pipes(
    nlp: Language,
    *,
    table: Optional[Union[str, Path, AliasTable]] = None,
    ruler: bool = True,
    after: Optional[str] = "ner",
    linker_config: Optional[Dict[str, Any]] = None,
) -> Language:
    """Add the actor ruler and linker to a (trained) pipeline and load their data.

    Nothing else is initialised, so trained components keep their weights. A
    pipeline that already has an ``nhs_actor_linker`` keeps it (its table is
    replaced when ``table`` is given) and gets the ruler (placed first: see below).
    nlp (Language): the pipeline, changed in place.
    table (Optional[Union[str, Path, AliasTable]]): alias table [default: packaged].
    ruler (bool): add the recall ruler too.
    after (Optional[str]): the pipe to place new pipes after (None or absent: at the end).
    RETURNS (Language): ``nlp``.
    """
    existing = [name for name in nlp.pipe_names if nlp.get_pipe_meta(name).factory == "nhs_actor_linker"]
    loaded = table if isinstance(table, AliasTable) else None
    if existing:
        linker = nlp.get_pipe(existing[0])
        if loaded is not None or table is not None or linker.table is None:
            linker.set_table(loaded if loaded is not None else AliasTable.from_file(table))
        if ruler and "actor_ruler" not in nlp.pipe_names:
            if linker.candidates_key is None:
                raise ValueError(f"pipe {existing[0]!r} has candidates_key = null, so it would ignore the ruler; set it to {CANDIDATES_KEY!r}")
            span_ruler = nlp.add_pipe("span_ruler", name="actor_ruler", config=RULER_CONFIG | {"spans_key": linker.candidates_key}, first=True)
            span_ruler.add_patterns(actor_patterns(linker.table))
        return nlp
    if loaded is None:
        loaded = AliasTable.from_file(table)
    place = {"after": after} if after is not None and after in nlp.pipe_names else {}
    config = dict(linker_config or {})
    if ruler:
        key = config.get("candidates_key", CANDIDATES_KEY)
        # First in the pipeline: span_ruler.add_patterns (also when the pipeline is
        # loaded) runs every pipe before the ruler over each phrase pattern, which
        # behind the transformer means minutes; first, it is only the tokenizer. The
        # ruler only writes candidates; the linker after ner decides.
        span_ruler = nlp.add_pipe("span_ruler", name="actor_ruler", config=RULER_CONFIG | {"spans_key": key}, first=True)
        span_ruler.add_patterns(actor_patterns(loaded))
    else:
        config.setdefault("candidates_key", None)
    linker = nlp.add_pipe("nhs_actor_linker", name="actor_linker", config=config, **place)
    linker.set_table(loaded)
    return nlp
