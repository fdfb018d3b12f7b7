"""Helpers for tests that inspect what a traced or compiled function really does."""

import collections
import re

import jax


def _subjaxprs(params):
    for value in params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if hasattr(item, "jaxpr") and hasattr(item, "consts"):
                yield item.jaxpr
            elif hasattr(item, "eqns"):
                yield item


def primitive_eqns(jaxpr, name):
    """Every equation of primitive `name` in `jaxpr` and its nested jaxprs."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == name:
            found.append(eqn)
        for sub in _subjaxprs(eqn.params):
            found.extend(primitive_eqns(sub, name))
    return found


def primitive_counts(fn, *args):
    """Counter of primitive names in the jaxpr of `fn(*args)`, nested jaxprs included."""
    counts = collections.Counter()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            counts[eqn.primitive.name] += 1
            for sub in _subjaxprs(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return counts


def compiled_custom_calls(fn, *args):
    """Counter of custom-call targets in the optimised HLO XLA compiles for `fn(*args)`."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    return collections.Counter(re.findall(r'custom_call_target="([^"]+)"', text))
