"""Makes a distribution and everything it requires importable from another venv, by symlink.

The wheel smoke test needs a fresh venv holding nothing but the wheel's declared dependency,
torch==<pin>. A second real install of torch is ~5 GB of disk (it filled CI's disk once), so
this links the project venv's installed copies instead: each required distribution's top-level
files and its `.dist-info`, so pip in the fresh venv sees the requirement satisfied and imports
resolve to the same files.

Usage: python link_dependencies.py TARGET_SITE_PACKAGES DIST [DIST ...]
(run with the interpreter whose site-packages holds the distributions).
"""

import importlib.metadata as metadata
import os
import re
import sys

# A requirement's name and the extras it asks for: `name[extra,...]`.
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
# The extra whose marker pulls in an optional requirement: `; extra == "x"`.
EXTRA = re.compile(r"\bextra\s*==\s*[\"']([^\"']+)[\"']")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> list[metadata.Distribution]:
    """The installed distributions in `roots` and their requirements, transitively.

    A requirement behind an extra is followed only when a parent asked for that extra; one that
    is not installed was excluded by its environment marker (e.g. a CUDA package on another
    platform), so it is skipped.
    """
    seen: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    todo = [(root, set()) for root in roots]
    while todo:
        name, extras = todo.pop()
        name = normalise(name)
        if name in seen and extras <= extras_seen[name]:
            continue
        try:
            dist = seen.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name in map(normalise, roots):
                raise SystemExit(f"link_dependencies: {name} is not installed in {sys.prefix}")
            continue
        seen[name] = dist
        extras_seen[name] = extras_seen.get(name, set()) | extras
        for requirement in dist.requires or []:
            extra = EXTRA.search(requirement)
            if extra and normalise(extra.group(1)) not in extras_seen[name]:
                continue
            match = REQUIREMENT.match(requirement)
            if match:
                wanted = {normalise(e) for e in (match.group(2) or "").split(",") if e.strip()}
                todo.append((match.group(1), wanted))
    return list(seen.values())


def top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The first path component of each file the distribution installed into site-packages."""
    entries = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first != ".." and first != "__pycache__":
            entries.add(first)
    return entries


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    target, roots = sys.argv[1], sys.argv[2:]
    os.makedirs(target, exist_ok=True)
    dists = closure(roots)
    for dist in dists:
        source_root = dist.locate_file("")
        for entry in sorted(top_level_entries(dist)):
            link = os.path.join(target, entry)
            # Namespace folders (e.g. nvidia/) are shared by several distributions: one link
            # serves them all.
            if not os.path.lexists(link):
                os.symlink(os.path.join(source_root, entry), link)
    print(f"link_dependencies: {len(dists)} distributions linked into {target}")


if __name__ == "__main__":
    main()
