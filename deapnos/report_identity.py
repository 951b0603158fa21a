"""What a winner is, in the report: each candidate's nearest known optimizer and simplified genome
(:mod:`deapnos.identify`), and how the report shows them."""
from __future__ import annotations


def annotate_identities(rows: list[dict], space=None) -> None:
    """Give each candidate row ``identity``: its nearest zoo optimizer ``{name, similarity, known}``
    and its ``simplified`` genome text (docs/search.md, "What a winner is").  A row whose genome
    cannot be read here (a plugin not loaded) gets none."""
    from .identify import identify
    from .space import GenomeParseError
    from .space.genome import Genome
    for row in rows:
        try:
            g = Genome.parse(row["genome"], space=space)
        except (GenomeParseError, KeyError, TypeError):
            continue
        row["identity"] = identify(g).to_dict()


def identity_suffix(row: dict) -> str:
    """`` = NAME (known)`` after a leaderboard label whose genome is a zoo optimizer ('' otherwise)."""
    near = (row.get("identity") or {}).get("nearest_known") or {}
    return f" = {near['name']} (known)" if near.get("known") else ""


def identity_lines(row: dict) -> list[str]:
    """The winner's nearest known optimizer and simplified genome, for its section."""
    ident = row.get("identity")
    if not ident:
        return []
    near = ident["nearest_known"]
    if near.get("known"):
        what = (f"- what it is: **{near['name']}**, a known optimizer (similarity {near['similarity']:.4f} up to "
                f"the learning rate), not a discovery")
    elif near.get("name"):
        what = f"- nearest known optimizer: `{near['name']}` (similarity {near['similarity']:.4f}; a match needs 0.99)"
    else:
        what = "- nearest known optimizer: none (no zoo optimizer moves the weights in the same direction)"
    return [what, f"- simplified (same behaviour up to scale): `{md_escape(ident['simplified'])}`"]


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")
