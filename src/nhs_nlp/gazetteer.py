"""Names of threat actors, ransomware operations and malware from the shared gazetteers.

Read from ``../shared/data/gazetteers`` (or $NHS_NLP_GAZETTEERS); never copied
into the repository.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .labels import ATTACK_GROUP, MALWARE

GAZETTEER_ENV = "NHS_NLP_GAZETTEERS"


def gazetteer_dir(path: Optional[Path] = None) -> Path:
    if path is not None:
        return Path(path)
    if os.environ.get(GAZETTEER_ENV):
        return Path(os.environ[GAZETTEER_ENV])
    return Path("../shared/data/gazetteers")


def gazetteer_files(path: Optional[Path] = None) -> Dict[str, Path]:
    """The three gazetteer files by source name; FileNotFoundError names a missing one."""
    folder = gazetteer_dir(path)
    files = {
        "misp-threat-actor": folder / "misp-galaxy" / "threat-actor.json",
        "misp-ransomware": folder / "misp-galaxy" / "ransomware.json",
        "mitre-attack": folder / "mitre-attack" / "enterprise-groups-and-malware.json",
    }
    for name, file in files.items():
        if not file.exists():
            raise FileNotFoundError(f"gazetteer file {file} not found; point --gazetteers or ${GAZETTEER_ENV} at the folder")
    return files


def iter_entries(path: Optional[Path] = None) -> Iterator[Tuple[str, str, List[str]]]:
    """Yield ``(source, kind, names)`` per gazetteer entry; kind is a label.

    Sources: MISP threat actors (ATTACK_GROUP), MISP ransomware (ATTACK_GROUP: mostly
    operations and their brands), MITRE ATT&CK intrusion sets (ATTACK_GROUP) and
    malware (MALWARE).
    """
    files = gazetteer_files(path)
    for source in ("misp-threat-actor", "misp-ransomware"):
        for v in json.loads(files[source].read_text(encoding="utf8"))["values"]:
            names = [v["value"]] + list((v.get("meta") or {}).get("synonyms") or [])
            yield source, ATTACK_GROUP, names
    for obj in json.loads(files["mitre-attack"].read_text(encoding="utf8"))["objects"]:
        kind = ATTACK_GROUP if obj.get("type") == "intrusion-set" else MALWARE
        names = [obj["name"]] + list(obj.get("aliases") or []) + list(obj.get("x_mitre_aliases") or [])
        yield "mitre-attack", kind, names


def name_labels(path: Optional[Path] = None) -> Dict[str, str]:
    """Every gazetteer name -> label (ATTACK_GROUP wins when a name is both)."""
    out: Dict[str, str] = {}
    for _, kind, names in iter_entries(path):
        for n in names:
            n = n.strip()
            if len(n) < 2:
                continue
            if out.get(n) != ATTACK_GROUP:
                out[n] = kind
    return out


_ATTACK_ID = re.compile(r"^[GS]\d{4}$")
_ATTACK_URL = re.compile(r"attack\.mitre\.org/(?:groups|software)/([GS]\d{4})\b")


@dataclass(frozen=True)
class Cluster:
    """One gazetteer entry with what the alias table needs from it.

    source (str): "misp-threat-actor", "misp-ransomware" or "mitre-attack".
    uid (str): the MISP cluster uuid, or the ATT&CK id (G…/S…) of a MITRE object.
    type (str): "threat-actor", "ransomware", "intrusion-set" or "malware".
    name (str): the entry's own name (MISP ``value``, MITRE ``name``).
    synonyms (Tuple[str, ...]): its other names, in source order, ids left out.
    attack_ids (Tuple[str, ...]): ATT&CK ids the entry is, or (for MISP) says it is
        the same as: an attack.mitre.org ref, a G/S id among its synonyms or
        name-attribution, or a ``similar`` relation to the MITRE object's uuid.
    leak_site (bool): a MISP ransomware cluster that lists leak-site links (an
        operation with a brand, rather than a family known from samples only).
    """

    source: str
    uid: str
    type: str
    name: str
    synonyms: Tuple[str, ...]
    attack_ids: Tuple[str, ...]
    leak_site: bool = False


def _attack_id(obj: Dict[str, Any]) -> Optional[str]:
    for ref in obj.get("external_references") or []:
        if ref.get("source_name") == "mitre-attack" and ref.get("external_id"):
            return str(ref["external_id"])
    return None


def iter_clusters(path: Optional[Path] = None) -> Iterator[Cluster]:
    """Yield every usable gazetteer entry as a ``Cluster`` (MITRE first, then MISP).

    Revoked and deprecated ATT&CK objects are skipped: ATT&CK keeps their names as
    aliases of the object that replaced them.
    """
    files = gazetteer_files(path)
    uuid_to_id: Dict[str, str] = {}
    revoked: Dict[str, Tuple[str, str]] = {}
    alias_owners: Dict[Tuple[str, str], List[str]] = {}
    for obj in json.loads(files["mitre-attack"].read_text(encoding="utf8"))["objects"]:
        attack_id = _attack_id(obj)
        if attack_id is None:
            continue
        uuid = str(obj["id"]).split("--", 1)[-1]
        if obj.get("revoked") or obj.get("x_mitre_deprecated"):
            if obj.get("revoked"):
                revoked[uuid] = (str(obj["type"]), str(obj["name"]).casefold())
            continue
        uuid_to_id[uuid] = attack_id
        names = list(obj.get("aliases") or []) + list(obj.get("x_mitre_aliases") or [])
        synonyms = tuple(dict.fromkeys(n for n in names if n != obj["name"]))
        for n in {obj["name"], *synonyms}:
            alias_owners.setdefault((str(obj["type"]), n.casefold()), []).append(attack_id)
        yield Cluster("mitre-attack", attack_id, str(obj["type"]), str(obj["name"]), synonyms, (attack_id,))
    # ATT&CK keeps a revoked object's name as an alias of the object that replaced
    # it; where exactly one current object has that alias, a MISP link to the
    # revoked object is a link to its replacement.
    for uuid, key in revoked.items():
        owners = alias_owners.get(key, [])
        if len(owners) == 1:
            uuid_to_id[uuid] = owners[0]
    for source, galaxy in (("misp-threat-actor", "threat-actor"), ("misp-ransomware", "ransomware")):
        for v in json.loads(files[source].read_text(encoding="utf8"))["values"]:
            meta = v.get("meta") or {}
            ids = set()
            for ref in meta.get("refs") or []:
                ids.update(_ATTACK_URL.findall(str(ref)))
            for attribution in meta.get("name-attribution") or []:
                head = str(attribution).split(":", 1)[0]
                if _ATTACK_ID.match(head):
                    ids.add(head)
            synonyms = []
            for syn in meta.get("synonyms") or []:
                syn = str(syn)
                if _ATTACK_ID.match(syn):
                    ids.add(syn)
                elif syn != v["value"]:
                    synonyms.append(syn)
            for rel in v.get("related") or []:
                if rel.get("type") == "similar" and rel.get("dest-uuid") in uuid_to_id:
                    ids.add(uuid_to_id[rel["dest-uuid"]])
            yield Cluster(
                source,
                str(v["uuid"]),
                galaxy,
                str(v["value"]),
                tuple(dict.fromkeys(synonyms)),
                tuple(sorted(ids)),
                leak_site=bool(meta.get("links")),
            )


def source_versions(path: Optional[Path] = None) -> Dict[str, str]:
    """The version of each gazetteer file, as its own header states it."""
    files = gazetteer_files(path)
    out: Dict[str, str] = {}
    for source in ("misp-threat-actor", "misp-ransomware"):
        data = json.loads(files[source].read_text(encoding="utf8"))
        out[source] = f"MISP galaxy {data.get('type', source)} cluster, version {data.get('version', '?')}"
    data = json.loads(files["mitre-attack"].read_text(encoding="utf8"))
    out["mitre-attack"] = str(data.get("source", "MITRE ATT&CK"))
    return out
