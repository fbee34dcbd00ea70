"""The alias table of attack groups, ransomware operations and malware.

``build_table()`` derives it from the shared gazetteers (MISP galaxy threat actors
and ransomware, MITRE ATT&CK groups and malware) plus a hand-kept overrides file;
``nhs-nlp aliases build`` writes it, and the result ships as
``nhs_nlp/data/aliases.json``. ``AliasTable`` looks names up through a
normalisation that folds case, spacing, digit-for-letter spellings and suffixes
("BlackBasta", "Black Basta ransomware", "LOCKBIT", "Cl0p").

Entries are merged only on solid evidence: the overrides file, a MISP cluster that
names an ATT&CK id (a ref, a synonym, a name attribution or a ``similar``
relation to the object), or the same own name. A name that only appears among
the synonyms of several entries is ambiguous: it resolves to none of them, and the
table lists it under ``ambiguous``.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from .gazetteer import Cluster, iter_clusters, source_versions
from .labels import ATTACK_GROUP, MALWARE

TABLE_FORMAT = "nhs_nlp.aliases/1"
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_TABLE = DATA_DIR / "aliases.json"
DEFAULT_OVERRIDES = DATA_DIR / "alias-overrides.yaml"

KINDS: Tuple[str, ...] = ("group", "ransomware", "malware")
#: The span label each kind of entry is tagged with by the recall ruler.
KIND_LABELS: Dict[str, str] = {"group": ATTACK_GROUP, "ransomware": ATTACK_GROUP, "malware": MALWARE}
#: Trailing words that do not change which actor a name means.
SUFFIXES = frozenset(
    {"ransomware", "group", "gang", "team", "crew", "apt", "hackers", "operators", "affiliate", "affiliates"}
)
#: A single-word name at least this frequent in English (wordfreq's Zipf scale: 3 is
#: once per million words) is a common word: linked only with supporting context.
COMMON_ZIPF = 3.0
LEET = str.maketrans({"0": "o", "1": "l", "i": "l", "3": "e", "4": "a", "5": "s", "$": "s"})
_WORD_SPLIT = re.compile(r"[\s\-_./·]+")
_POSSESSIVE = re.compile(r"(?:['’]s|s['’])$")
# A version is short ("3.0", "v2", " 4"); a long number is a designation ("Storm-1359", "TA505").
_VERSION = re.compile(r"(?:[\s_-]+v?\d{1,2}(?:\.\d+)*|[\s_-]*v\d{1,2}(?:\.\d+)*|\d{1,2}\.\d+(?:\.\d+)*)$", re.IGNORECASE)
_ATTACK_ID = re.compile(r"^[GS]\d{4}$")
# Strength of a name for its entry: set by an override, the entry's own name in a
# source, an ATT&CK alias (curated: one object per alias), or a MISP synonym. The
# strongest unique claim on a key wins.
PINNED, PRIMARY, ATTACK_ALIAS, SYNONYM = 4, 3, 2, 1


class AliasError(ValueError):
    """A malformed overrides file or alias table; the message names the file and the item."""


def _words(name: str) -> List[str]:
    s = unicodedata.normalize("NFKC", name).casefold().strip()
    s = _POSSESSIVE.sub("", s)
    words = [w for w in _WORD_SPLIT.split(s) if w]
    if words and words[0] == "the" and len(words) > 1:
        words = words[1:]
    return words


def _join(words: Iterable[str]) -> str:
    return "".join(ch for w in words for ch in w if ch.isalnum() or ch == "$")


def normalise(name: str, strip_suffixes: bool = True) -> str:
    """The lookup key of a name: case, spacing, hyphens, dots and a possessive folded away.

    name (str): a name as written ("Black Basta ransomware", "Qilin's").
    strip_suffixes (bool): also drop trailing words such as "ransomware", "group",
        "gang" (while a word is left).
    RETURNS (str): the key ("blackbasta", "qilin"); "" when nothing is left.
    """
    words = _words(name)
    if strip_suffixes:
        while len(words) > 1 and _join([words[-1]]) in SUFFIXES:
            words = words[:-1]
    return _join(words)


def fold_leet(key: str) -> str:
    """Fold digit-for-letter spellings of a key: 0→o, 1/i→l, 3→e, 4→a, 5/$→s."""
    return key.translate(LEET)


def strip_version(name: str) -> Optional[str]:
    """The name without a trailing version ("LockBit 3.0" → "LockBit"), or None if it has none."""
    stripped = _VERSION.sub("", name.strip()).strip()
    return stripped if stripped and stripped != name.strip() else None


def is_common_word(name: str, threshold: float = COMMON_ZIPF) -> bool:
    """Whether a name is one ordinary English word ("Play", "Royal", "Hunters", "Akira").

    The criterion is frequency, not a hand list: a single word (after suffixes are
    stripped) whose Zipf frequency in wordfreq's English lists is at least
    ``threshold``. Such names are linked and added only with supporting context.
    """
    from wordfreq import zipf_frequency

    words = _words(name)
    while len(words) > 1 and _join([words[-1]]) in SUFFIXES:
        words = words[:-1]
    if len(words) != 1:
        return False
    word = _join(words)
    return bool(word) and not word.isdigit() and zipf_frequency(word, "en") >= threshold


def word_frequency(name: str) -> float:
    """The highest Zipf frequency in English (wordfreq) of the words of a name, 0.0 for none."""
    from wordfreq import zipf_frequency

    words = [_join([w]) for w in _words(name)]
    return max((zipf_frequency(w, "en") for w in words if w and not w.isdigit()), default=0.0)


# --------------------------------------------------------------------------- overrides


@dataclass
class Overrides:
    """The hand decisions of an overrides file (see ``data/alias-overrides.yaml``)."""

    merge: List[Dict[str, Any]] = field(default_factory=list)
    split: List[Dict[str, Any]] = field(default_factory=list)
    aliases: List[Dict[str, Any]] = field(default_factory=list)
    common_add: List[str] = field(default_factory=list)
    common_remove: List[str] = field(default_factory=list)
    path: str = "<overrides>"


def _str_list(value: Any, where: str) -> List[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise AliasError(f"{where}: must be a list of non-empty strings, got {value!r}")
    return list(value)


def load_overrides(path: Optional[Union[str, Path]] = None) -> Overrides:
    """Read and check an overrides file.

    path (Optional[Union[str, Path]]): the YAML file [default: the packaged one].
    RETURNS (Overrides): its decisions. Raises AliasError naming the item at fault.
    """
    import yaml

    file = Path(path) if path is not None else DEFAULT_OVERRIDES
    if not file.is_file():
        raise AliasError(f"overrides file {file} does not exist")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf8")) or {}
    except yaml.YAMLError as err:
        raise AliasError(f"{file}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise AliasError(f"{file}: must be a mapping with merge/split/aliases/common keys")
    unknown = set(data) - {"merge", "split", "aliases", "common"}
    if unknown:
        raise AliasError(f"{file}: unknown section(s) {sorted(unknown)}; expected merge, split, aliases, common")
    out = Overrides(path=str(file))
    allowed = {"merge": {"members", "canonical", "kind", "reason"}, "split": {"members", "reason"}, "aliases": {"entry", "add", "remove", "reason"}}
    for section, keys in allowed.items():
        items = data.get(section) or []
        if not isinstance(items, list):
            raise AliasError(f"{file}: {section} must be a list")
        for i, item in enumerate(items, 1):
            where = f"{file}: {section} item {i}"
            if not isinstance(item, dict):
                raise AliasError(f"{where}: must be a mapping")
            extra = set(item) - keys
            if extra:
                raise AliasError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(keys)}")
            if not isinstance(item.get("reason"), str) or not item["reason"].strip():
                raise AliasError(f"{where}: needs a one-line reason")
            if section in ("merge", "split"):
                members = _str_list(item.get("members"), f"{where}: members")
                if len(members) < (1 if section == "merge" else 2):
                    raise AliasError(f"{where}: members needs at least {1 if section == 'merge' else 2} selector(s)")
                if section == "merge" and item.get("kind") is not None and item["kind"] not in KINDS:
                    raise AliasError(f"{where}: kind {item['kind']!r} is not one of {', '.join(KINDS)}")
                if section == "merge" and item.get("canonical") is not None and not str(item["canonical"]).strip():
                    raise AliasError(f"{where}: canonical must not be empty")
            else:
                if not isinstance(item.get("entry"), str):
                    raise AliasError(f"{where}: needs an entry selector")
                _str_list(item.get("add"), f"{where}: add")
                _str_list(item.get("remove"), f"{where}: remove")
            getattr(out, section).append(item)
    common = data.get("common") or {}
    if not isinstance(common, dict) or set(common) - {"add", "remove"}:
        raise AliasError(f"{file}: common must be a mapping with add and remove lists")
    out.common_add = _str_list(common.get("add"), f"{file}: common.add")
    out.common_remove = _str_list(common.get("remove"), f"{file}: common.remove")
    return out


# --------------------------------------------------------------------------- building


class _Components:
    """Union-find over clusters that refuses to join two ATT&CK objects of one type
    (ATT&CK itself keeps them apart) or a pair the overrides split."""

    def __init__(self, clusters: Sequence[Cluster], apart: Set[Tuple[int, int]]):
        self.parent = list(range(len(clusters)))
        self.members: Dict[int, Set[int]] = {i: {i} for i in range(len(clusters))}
        self.clusters = clusters
        self.apart = apart

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def conflict(self, a: int, b: int) -> Optional[str]:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        ma, mb = self.members[ra], self.members[rb]
        for x in ma:
            for y in mb:
                if (min(x, y), max(x, y)) in self.apart:
                    return "split by the overrides"
        types_a = {self.clusters[x].type for x in ma if self.clusters[x].source == "mitre-attack"}
        for y in mb:
            cy = self.clusters[y]
            if cy.source == "mitre-attack" and cy.type in types_a:
                return f"would join two ATT&CK {cy.type} objects"
        return None

    def union(self, a: int, b: int, force: bool = False) -> Optional[str]:
        reason = None if force else self.conflict(a, b)
        if reason:
            return reason
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            ra, rb = min(ra, rb), max(ra, rb)
            self.parent[rb] = ra
            self.members[ra] |= self.members.pop(rb)
        return None


def _selector_index(clusters: Sequence[Cluster]) -> Dict[str, List[int]]:
    index: Dict[str, List[int]] = defaultdict(list)
    for i, c in enumerate(clusters):
        if c.source == "mitre-attack":
            index[f"attack:{c.uid}"].append(i)
        else:
            index[f"misp:{c.uid}"].append(i)
            index[f"{c.source}:{c.name}"].append(i)
    return index


def _resolve(selector: str, index: Dict[str, List[int]], where: str) -> int:
    hits = index.get(selector, [])
    if len(hits) != 1:
        what = "matches no gazetteer entry" if not hits else f"matches {len(hits)} entries; use misp:<uuid>"
        raise AliasError(f"{where}: selector {selector!r} {what}")
    return hits[0]


_TYPE_ORDER = {"intrusion-set": 0, "malware": 1, "threat-actor": 2, "ransomware": 3}


def _display_name(c: Cluster) -> str:
    if c.type == "ransomware":
        words = c.name.split()
        if len(words) > 1 and words[-1].casefold() == "ransomware":
            return " ".join(words[:-1])
    return c.name


def _canonical(members: List[Cluster]) -> str:
    def rank(c: Cluster) -> Tuple[int, int, str]:
        name = _display_name(c)
        return (name == name.casefold(), _TYPE_ORDER[c.type], name)

    return _display_name(min(members, key=rank))


def _kind(members: List[Cluster]) -> str:
    if any(c.type == "ransomware" and c.leak_site for c in members):
        return "ransomware"
    if any(c.type in ("intrusion-set", "threat-actor") for c in members):
        return "group"
    return "malware"


def _usable(name: str) -> bool:
    key = normalise(name, strip_suffixes=False)
    return len(key) >= 2 and not key.isdigit() and not _ATTACK_ID.match(name.strip())


def build_table(
    gazetteers: Optional[Union[str, Path]] = None,
    overrides: Optional[Union[str, Path]] = None,
) -> Dict[str, Any]:
    """Derive the alias table from the gazetteers and the overrides file.

    gazetteers (Optional[Union[str, Path]]): the gazetteer folder [default:
        $NHS_NLP_GAZETTEERS or ../shared/data/gazetteers].
    overrides (Optional[Union[str, Path]]): the overrides YAML [default: packaged].
    RETURNS (Dict[str, Any]): the JSON-safe table: ``entries`` (sorted by canonical),
        ``ambiguous`` (key -> the canonicals that claim it equally), ``common``
        (keys of common-word names), ``sources`` and a ``report`` of merges refused.
    """
    ov = load_overrides(overrides)
    clusters = list(iter_clusters(Path(gazetteers) if gazetteers is not None else None))
    index = _selector_index(clusters)
    apart: Set[Tuple[int, int]] = set()
    for i, item in enumerate(ov.split, 1):
        ids = [_resolve(s, index, f"{ov.path}: split item {i}") for s in item["members"]]
        for a in ids:
            for b in ids:
                if a < b:
                    apart.add((a, b))
    comps = _Components(clusters, apart)
    forced: Dict[int, Dict[str, Any]] = {}
    for i, item in enumerate(ov.merge, 1):
        ids = [_resolve(s, index, f"{ov.path}: merge item {i}") for s in item["members"]]
        for other in ids[1:]:
            if (min(ids[0], other), max(ids[0], other)) in apart:
                raise AliasError(f"{ov.path}: merge item {i} joins members that a split item keeps apart")
            comps.union(ids[0], other, force=True)
        forced[ids[0]] = item
    refused: List[str] = []
    by_name: Dict[str, List[int]] = defaultdict(list)
    for i, c in enumerate(clusters):
        key = normalise(_display_name(c))
        if len(key) >= 2:
            by_name[key].append(i)
    for key, ids in sorted(by_name.items()):
        if len(ids) < 2:
            continue
        mitre_types: Dict[str, List[int]] = defaultdict(list)
        for i in ids:
            if clusters[i].source == "mitre-attack":
                mitre_types[clusters[i].type].append(i)
        clash = {i for group in mitre_types.values() if len(group) > 1 for i in group}
        if clash:
            refused.append(f"same name {key!r}: " + ", ".join(f"attack:{clusters[i].uid} {clusters[i].name}" for i in sorted(clash)) + " (several ATT&CK objects of one type; left to the overrides)")
        usable = [i for i in ids if i not in clash]
        for a, b in zip(usable, usable[1:]):
            why = comps.union(a, b)
            if why:
                refused.append(f"same name {key!r}: {clusters[a].source}:{clusters[a].name} ~ {clusters[b].source}:{clusters[b].name} ({why})")

    # Two entries that each list the other's own name among their synonyms are one
    # (MISP "Sodinokibi" a.k.a. REvil, ATT&CK "REvil" a.k.a. Sodinokibi).
    own: Dict[str, List[int]] = defaultdict(list)
    for i, c in enumerate(clusters):
        own[normalise(_display_name(c))].append(i)
    for i, c in enumerate(clusters):
        mine = normalise(_display_name(c))
        for syn in c.synonyms:
            for j in own.get(normalise(syn), []):
                if j > i and mine in {normalise(x) for x in clusters[j].synonyms}:
                    why = comps.union(i, j)
                    if why:
                        refused.append(f"mutual names: {c.source}:{c.name} ~ {clusters[j].source}:{clusters[j].name} ({why})")
    # A MISP cluster that names one ATT&CK object of a type is that object; one that
    # names several (a merged or disputed cluster) is evidence for none of them.
    by_id = {c.uid: i for i, c in enumerate(clusters) if c.source == "mitre-attack"}
    for i, c in enumerate(clusters):
        if c.source == "mitre-attack":
            continue
        per_type: Dict[str, List[int]] = defaultdict(list)
        for attack_id in c.attack_ids:
            if attack_id in by_id:
                per_type[clusters[by_id[attack_id]].type].append(by_id[attack_id])
        for mtype, targets in sorted(per_type.items()):
            if len(targets) > 1:
                if not any(comps.find(t) == comps.find(i) for t in targets):
                    refused.append(f"{c.source}:{c.name} names several ATT&CK {mtype} objects: " + ", ".join(clusters[t].uid for t in targets))
                continue
            why = comps.union(i, targets[0])
            if why:
                refused.append(f"{c.source}:{c.name} ~ attack:{clusters[targets[0]].uid} {clusters[targets[0]].name} ({why})")

    pins: Dict[int, Dict[str, Any]] = {}
    for i, item in enumerate(ov.aliases, 1):
        root = comps.find(_resolve(item["entry"], index, f"{ov.path}: aliases item {i}"))
        slot = pins.setdefault(root, {"add": [], "remove": set()})
        slot["add"].extend(item.get("add") or [])
        slot["remove"].update(a.casefold() for a in item.get("remove") or [])
    forced_by_root = {comps.find(i): item for i, item in forced.items()}

    entries: List[Dict[str, Any]] = []
    for root, member_ids in comps.members.items():
        members = sorted((clusters[i] for i in member_ids), key=lambda c: (_TYPE_ORDER[c.type], c.source, c.uid))
        item = forced_by_root.get(root, {})
        canonical = str(item.get("canonical") or _canonical(members)).strip()
        pin = pins.get(root, {"add": [], "remove": set()})
        strength: Dict[str, int] = {}
        spelled: Dict[str, str] = {}

        def claim(name: str, level: int) -> None:
            name = name.strip()
            fold = name.casefold()
            if not _usable(name) or fold in pin["remove"]:
                return
            if level > strength.get(fold, 0):
                strength[fold] = level
            if fold not in spelled or name == canonical:
                spelled[fold] = name

        claim(canonical, PINNED if item.get("canonical") else PRIMARY)
        for name in pin["add"]:
            claim(name, PINNED)
        for c in members:
            claim(c.name, PRIMARY)
            claim(_display_name(c), PRIMARY)
        for c in members:
            for s in c.synonyms:
                claim(s, ATTACK_ALIAS if c.source == "mitre-attack" else SYNONYM)
        aliases = sorted(spelled.values(), key=lambda s: (s.casefold(), s))
        attack_ids = sorted({c.uid for c in members if c.source == "mitre-attack"})
        misp = [c.uid for c in sorted(members, key=lambda c: (_display_name(c) != canonical, _TYPE_ORDER[c.type], c.uid)) if c.source != "mitre-attack"]
        entry: Dict[str, Any] = {
            "canonical": canonical,
            "kind": item.get("kind") or _kind(members),
            "aliases": aliases,
            "attack_ids": attack_ids,
            "misp_uuids": misp,
            "pinned": sorted((spelled[f] for f, lv in strength.items() if lv == PINNED), key=lambda s: (s.casefold(), s)),
            "primary": sorted((spelled[f] for f, lv in strength.items() if lv == PRIMARY), key=lambda s: (s.casefold(), s)),
            "attack_aliases": sorted((spelled[f] for f, lv in strength.items() if lv == ATTACK_ALIAS), key=lambda s: (s.casefold(), s)),
        }
        entries.append(entry)
    entries.sort(key=lambda e: (e["canonical"].casefold(), e["canonical"], e["attack_ids"], e["misp_uuids"]))

    table: Dict[str, Any] = {"format": TABLE_FORMAT, "entries": entries}
    lookup = AliasTable(table)
    common: Set[str] = set()
    removed = {normalise(n) for n in ov.common_remove}
    for e in entries:
        for a in e["aliases"]:
            key = normalise(a)
            if key not in removed and is_common_word(a):
                common.add(key)
    common |= {normalise(n) for n in ov.common_add if normalise(n)}
    table["common"] = sorted(common)
    table["ambiguous"] = lookup.ambiguous_keys()
    table["sources"] = source_versions(Path(gazetteers) if gazetteers is not None else None)
    table["report"] = {"refused_merges": sorted(set(refused))}
    return table


def table_bytes(table: Dict[str, Any]) -> bytes:
    """The table as deterministic UTF-8 JSON: one entry per line, keys sorted."""

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    lines = ["{", f'"format":{dump(table["format"])},', f'"sources":{dump(table.get("sources", {}))},', '"entries":[']
    entries = table["entries"]
    lines += [dump(e) + ("," if i < len(entries) - 1 else "") for i, e in enumerate(entries)]
    lines.append("],")
    lines.append(f'"common":{dump(table.get("common", []))},')
    ambiguous = table.get("ambiguous", {})
    lines.append('"ambiguous":{')
    keys = sorted(ambiguous)
    lines += [f"{dump(k)}:{dump(ambiguous[k])}" + ("," if i < len(keys) - 1 else "") for i, k in enumerate(keys)]
    lines.append("},")
    lines.append(f'"report":{dump(table.get("report", {}))}')
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf8")


def write_table(table: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Write the table (``table_bytes``) to ``path``. RETURNS (Path): the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(table_bytes(table))
    return out


# --------------------------------------------------------------------------- lookup


@dataclass(frozen=True)
class Match:
    """The result of looking a name up.

    entry (Optional[int]): index of the entry it resolves to; None when unknown or ambiguous.
    candidates (Tuple[int, ...]): entries that claim the name equally (ambiguous), or
        the one entry.
    key (str): the normalised key that matched ("" when nothing matched).
    common (bool): the name is a common English word.
    """

    entry: Optional[int]
    candidates: Tuple[int, ...] = ()
    key: str = ""
    common: bool = False


class AliasTable:
    """Lookup over a table from ``build_table`` (or the shipped ``aliases.json``).

    Keys are tried from strictest to loosest: the whole name folded; then without
    suffixes ("Black Basta ransomware"); then both with digit-for-letter spellings
    folded ("Cl0p"); then without a trailing version ("LockBit 3.0"). The first
    level that knows the key decides.
    """

    def __init__(self, table: Dict[str, Any]):
        if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT or not isinstance(table.get("entries"), list):
            raise AliasError(f"not an nhs_nlp alias table (expected format {TABLE_FORMAT!r} with entries)")
        self.data = table
        self.entries: List[Dict[str, Any]] = table["entries"]
        self.common: Set[str] = {fold_leet(k) for k in table.get("common", [])}
        self._levels: List[Dict[str, Dict[int, int]]] = [defaultdict(dict) for _ in range(4)]
        for i, e in enumerate(self.entries):
            pinned = {a.casefold() for a in e.get("pinned", [])}
            primary = {a.casefold() for a in e.get("primary", [])}
            attack = {a.casefold() for a in e.get("attack_aliases", [])}
            for alias in e["aliases"]:
                fold = alias.casefold()
                level = PINNED if fold in pinned else PRIMARY if fold in primary else ATTACK_ALIAS if fold in attack else SYNONYM
                full, bare = normalise(alias, strip_suffixes=False), normalise(alias)
                for index, key, rank in (
                    (0, full, 2 * level + 1),
                    (1, bare, 2 * level + (full == bare)),
                    (2, fold_leet(full), 2 * level + 1),
                    (3, fold_leet(bare), 2 * level + (full == bare)),
                ):
                    if key and rank > self._levels[index][key].get(i, 0):
                        self._levels[index][key][i] = rank

    @classmethod
    def from_file(cls, path: Optional[Union[str, Path]] = None) -> "AliasTable":
        """Read a table file [default: the packaged ``data/aliases.json``]."""
        file = Path(path) if path is not None else DEFAULT_TABLE
        if not file.is_file():
            raise AliasError(f"alias table {file} does not exist; build one with `nhs-nlp aliases build -o {file}`")
        return cls.from_bytes(file.read_bytes(), str(file))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> "AliasTable":
        try:
            table = json.loads(data.decode("utf8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AliasError(f"{name}: not a JSON alias table: {err}") from err
        try:
            return cls(table)
        except AliasError as err:
            raise AliasError(f"{name}: {err}") from err

    def to_bytes(self) -> bytes:
        return table_bytes(self.data)

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def _best(claims: Dict[int, int]) -> Tuple[int, ...]:
        top = max(claims.values())
        return tuple(sorted(i for i, r in claims.items() if r == top))

    def _match_key(self, name: str) -> Match:
        full, bare = normalise(name, strip_suffixes=False), normalise(name)
        common = fold_leet(bare) in self.common
        for index, key in enumerate((full, bare, fold_leet(full), fold_leet(bare))):
            claims = self._levels[index].get(key) if key else None
            if claims:
                best = self._best(claims)
                return Match(best[0] if len(best) == 1 else None, best, key, common)
        return Match(None, (), "", common)

    def lookup(self, name: str) -> Match:
        """Look a name up. RETURNS (Match): the entry, or candidates when ambiguous."""
        if not isinstance(name, str):
            raise TypeError(f"lookup() takes a str, got {type(name).__name__}")
        found = self._match_key(name)
        if not found.candidates:
            base = strip_version(name)
            if base:
                return self._match_key(base)
        return found

    def link(self, index: int) -> Dict[str, Any]:
        """The JSON-safe link of an entry: canonical, kind, aliases, attack_ids, misp_uuid."""
        e = self.entries[index]
        return {
            "canonical": e["canonical"],
            "kind": e["kind"],
            "aliases": list(e["aliases"]),
            "attack_ids": list(e["attack_ids"]),
            "misp_uuid": e["misp_uuids"][0] if e["misp_uuids"] else None,
        }

    def ambiguous_keys(self) -> Dict[str, List[str]]:
        """Keys (suffix-stripped, no leet folding) that several entries claim equally."""
        out: Dict[str, List[str]] = {}
        for key, claims in self._levels[1].items():
            best = self._best(claims)
            if len(best) > 1:
                out[key] = sorted({self.entries[i]["canonical"] for i in best}, key=lambda s: (s.casefold(), s))
        return dict(sorted(out.items()))

    def label(self, index: int) -> str:
        """The span label an entry's names get (ATTACK_GROUP or MALWARE)."""
        return KIND_LABELS[self.entries[index]["kind"]]
