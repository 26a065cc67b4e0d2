"""Model families: one declaration per family (:mod:`imgcomp.families.spec`) that the engines
read instead of naming a model's layers.

A family is a folder here (``balle/``) whose ``__init__`` registers its spec; the built-in ones
are listed in :mod:`imgcomp.builtin`. This package imports no family module: the lookups below
are the registry's (:mod:`imgcomp.registry`), which loads the built-in families at first use.
"""

from imgcomp.registry import (
    family_of,
    find_family,
    get_family,
    list_families,
    register_family,
    unregister_family,
)

__all__ = [
    "family_of",
    "find_family",
    "get_family",
    "list_families",
    "register_family",
    "unregister_family",
]
