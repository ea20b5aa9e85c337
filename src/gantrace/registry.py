"""One way to build a part from config: a registry per kind of part and one `create`.

After timm's `create_model`: each kind of part (extractor, preprocessor, reducer,
clusterer, membership scorer, fusion rule, generator, ...) has one `Registry`; a class
joins it with `@REGISTRY.register`, and a config spec, a bare name or a mapping
`{name: <registered name>, <param>: <value>, ...}`, becomes an instance with

    part = REGISTRY.create(spec, where="attribution.methods.x.clusterer")

Unknown names and unknown parameters are ConfigErrors that name the config key, list the
valid choices and suggest the closest one. Parameters set by the enclosing method
(`injected`, e.g. n_clusters, random_state) are passed to parts that accept them and may
not be set in the spec.
"""

import inspect

from gantrace.errors import ConfigError
from gantrace.params import InstanceOf, suggest, validate

KEY = "name"  # the one key that names a part's type in every spec
SPEC = InstanceOf(str, dict, what=f"a registered name or a mapping with a '{KEY}' key")


def spec_name(spec):
    """The registered name a spec asks for (a bare name or the mapping's `name`), or None."""
    return spec if isinstance(spec, str) else (spec or {}).get(KEY)


def accepted_params(cls):
    """The keyword parameters `cls` takes: a Part's `param_names`, else its signature's."""
    keywords = {
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    if hasattr(cls, "param_names"):  # plus the keywords that only say where it is configured
        return set(cls.param_names()) | (set(getattr(cls, "_not_params", ())) & keywords)
    return keywords


class Registry:
    """Named classes of one kind of part.

    `parts` registers classes at once, and then names are listed in that order (error
    messages, iteration); otherwise they are listed sorted.
    """

    def __init__(self, kind, parts=()):
        self.kind = kind
        self._classes = {}
        self._listed = bool(parts)
        for cls in parts:
            self.register(cls)

    def register(self, cls=None, *, name=None):
        """Class decorator: add `cls` under `name` (default: its `name` attribute)."""

        def add(cls):
            key = name or cls.name
            if key in self._classes and self._classes[key] is not cls:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._classes[key] = cls
            return cls

        return add(cls) if cls is not None else add

    def __contains__(self, name):
        return name in self._classes

    def __getitem__(self, name):
        return self._classes[name]

    def __iter__(self):
        return iter(self.names())

    def __len__(self):
        return len(self._classes)

    def get(self, name, default=None):
        return self._classes.get(name, default)

    def names(self):
        return list(self._classes) if self._listed else sorted(self._classes)

    def items(self):
        return [(name, self._classes[name]) for name in self.names()]

    def resolve(self, spec, where=None):
        """(class, params) of a spec, refusing an unknown or missing name."""
        where = where or self.kind
        if isinstance(spec, str):
            spec = {KEY: spec}
        valid = ", ".join(self.names())
        if not isinstance(spec, dict) or KEY not in spec:
            raise ConfigError(
                f"{where}: expected a mapping with a '{KEY}' key naming the {self.kind} "
                f"(one of {valid}); got {spec!r}"
            )
        params = dict(spec)
        name = params.pop(KEY)
        if name not in self._classes:
            raise ConfigError(
                f"{where}: unknown {self.kind} {name!r}{suggest(name, self.names())}; "
                f"set {where}.{KEY} to one of {valid}"
            )
        return self._classes[name], params

    def check_params(self, cls, params, where, injected=()):
        """Refuse parameters `cls` does not take, and those the enclosing method sets."""
        accepted = accepted_params(cls)
        valid = sorted(accepted - set(injected))
        problems = []  # every bad key, one line each
        for key in params:
            if key in injected:
                problems.append(
                    f"{where}.{key}: set by the enclosing method; remove it from the "
                    f"{cls.name!r} spec"
                )
            elif key not in accepted:
                problems.append(
                    f"{where}.{key}: unknown parameter of {cls.name!r}{suggest(key, valid)}; "
                    f"valid: {', '.join(valid) or 'none'}"
                )
        if problems:
            raise ConfigError("\n".join(problems))
        return accepted

    def create(self, spec, where=None, **injected):
        """Build the part a spec names, with its parameters checked.

        Values are refused under `where` (the config key) when given, else under the
        part's name (`knn.metric`), as the part itself would.
        """
        cls, params = self.resolve(spec, where)
        accepted = self.check_params(cls, params, where or self.kind, injected)
        if hasattr(cls, "constraints"):  # a Part
            validate(where or cls.name, params, cls.constraints())
        params.update({k: v for k, v in injected.items() if k in accepted})
        return cls(**params)
