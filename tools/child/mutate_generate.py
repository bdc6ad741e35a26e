"""Mutant generation on prodloop's side: `python mutate_generate.py SPEC.json OUT.json`, in a scratch folder.

mutmut's own generator and operators make the mutants, so the service's interpreter needs
neither mutmut nor libcst. It runs in a subprocess of prodloop's interpreter because mutmut
reads its configuration from the working directory and may exit on its own. Unlike `mutmut
run`, decorated functions are mutated too: prodloop serves a mutant as a whole module through
an import hook, so the trampolines that made mutmut skip them are not involved.

Spec: {"targets": [{"path", "module", "source", "lines"}]}; out: {"mutants": [{"path", "module", "code", "line"}]}.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> int:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    import libcst as cst
    from libcst.metadata import MetadataWrapper
    from mutmut import configuration
    from mutmut.mutation import file_mutation as fm
    from mutmut.mutation.pragma_handling import get_ignored_lines

    configuration._guess_source_paths = lambda: ["."]
    configuration.reset_config()

    class Visitor(fm.MutationVisitor):
        def _skip_node_and_children(self, node: Any) -> bool:
            if isinstance(node, cst.FunctionDef) and node.decorators:
                return bool(super()._skip_node_and_children(node.with_changes(decorators=[])))
            return bool(super()._skip_node_and_children(node))

    mutants: list[dict[str, Any]] = []
    for target in spec["targets"]:
        source = target["source"]
        module = cst.parse_module(source)
        wrapper = MetadataWrapper(module)
        ignored = get_ignored_lines(target["path"], source, wrapper, None)
        visitor = Visitor(getattr(fm, "mutation_operators"), ignored, set(target["lines"]))  # noqa: B009 (not re-exported)
        mutated_module = wrapper.visit(visitor)
        seen = set()
        for m in visitor.mutations:
            replaced: Any = fm.deep_replace(mutated_module, m.original_node, m.mutated_node)
            code = replaced.code
            if code == source or code in seen:
                continue
            seen.add(code)
            line = next(
                (i + 1 for i, (a, b) in enumerate(zip(source.splitlines(), code.splitlines(), strict=False)) if a != b),
                None,
            )
            mutants.append({"path": target["path"], "module": target["module"], "code": code, "line": line})
    with open(sys.argv[2], "w") as fh:
        json.dump({"mutants": mutants}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
