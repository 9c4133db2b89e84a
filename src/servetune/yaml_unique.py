"""YAML for specs and profiles: PyYAML's safe loader, except that a key given twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word (`replicas: 1` then `replicas: 5` gives 5), so a
file can say something other than what its reader sees. The error is a MarkedYAMLError whose problem mark
is the second key, so callers report its line like any other YAML error.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError


class UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: the base constructor reports it
                continue
            if seen:
                raise ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first given on line {first_line[key] + 1})", key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def safe_load_unique_keys(text: str) -> Any:
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader


def safe_load_all_unique_keys(text: str) -> list[Any]:
    """Every document of a multi-document file (a Kubernetes manifest), with the same rule."""
    return list(yaml.load_all(text, Loader=UniqueKeyLoader))
