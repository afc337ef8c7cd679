"""The ``csc`` umbrella command: the original toolbox's verbs, dispatched to installed stages.

Each stage registers its verbs in the entry-point group ``csc.stages``
(``fetch-data``, ``train``, ``predict``, ``process``, ``pack-results``,
``evaluate``, ``visualize``, ...); ``csc VERB ARGS`` calls that stage's
``main(ARGS)``. Only installed stages are listed, so a slim image's ``csc``
offers exactly what the image can do.
"""

import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

GROUP = "csc.stages"


def stages() -> dict[str, EntryPoint]:
    """Installed verbs -> entry points."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _usage(found: dict[str, EntryPoint]) -> str:
    lines = ["usage: csc VERB [ARGS...]", "", "verbs (installed stages):"]
    for name, ep in sorted(found.items()):
        lines.append(f"  {name:<16} {ep.value.split(':')[0].split('.')[0]}")
    if not found:
        lines.append("  (none installed)")
    lines.append("")
    lines.append("Run 'csc VERB --help' for a verb's options.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    found = stages()
    if not args or args[0] in ("-h", "--help"):
        print(_usage(found))
        return 0
    verb, rest = args[0], args[1:]
    if verb not in found:
        print(f"csc: error: unknown verb {verb!r}; installed: {', '.join(sorted(found)) or 'none'}", file=sys.stderr)
        return 2
    return int(found[verb].load()(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
