"""One way to declare, check and copy a part's parameters.

After scikit-learn: a part's constructor arguments are its parameters; the class declares
what each may hold in `_parameter_constraints`, a mapping name -> list of accepted forms,
and `Part` derives `get_params`, `set_params`, `clone` and the check from that one
declaration. A form is a constraint below, a type, a tuple of literal choices, or None.

    class PCAReducer(Part):
        name = "pca"
        _parameter_constraints = {
            "n_components": [Interval(float, 0, 1, closed="neither"), Interval(int, 1)],
            "whiten": [bool],
        }

Every refusal is a ConfigError `<where>.<param>: expected <what>, got <value>`, where
`where` is the config key of the part (e.g. `attribution.methods.x.clusterer`) or, outside
a config, the part's name.
"""

import copy
import difflib
import inspect
import numbers
import re

import numpy as np

from gantrace.errors import ConfigError


def suggest(word, choices):
    """` (did you mean 'x'?)` for the closest of `choices`, else ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


class Constraint:
    """Accepts or refuses one value; `describe` says what it accepts."""

    def accepts(self, value):
        raise NotImplementedError

    def describe(self):
        raise NotImplementedError


class Interval(Constraint):
    """A number of `kind` (int or float; bool is never a number) within [low, high].

    `closed` is "both", "left", "right" or "neither"; None bounds are open. An int is
    accepted where a float is asked for. `unit` says what the number measures (e.g.
    "grey levels" for a noise level on the 0-255 scale of the images, whatever the
    features' scale): messages and the method docs print it, and the part converts.
    """

    def __init__(self, kind, low=None, high=None, closed="both", unit=None):
        if kind not in (int, float):
            raise TypeError(f"Interval: kind must be int or float, got {kind!r}")
        self.kind, self.low, self.high, self.closed = kind, low, high, closed
        self.unit = unit

    def accepts(self, value):
        if _is_bool(value):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if not isinstance(value, numbers.Real) or not np.isfinite(value):
            return False
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (not left and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (not right and value == self.high)):
            return False
        return True

    def describe(self):
        what = "an integer" if self.kind is int else "a number"
        unit = f" ({self.unit})" if self.unit else ""
        lo = {True: ">=", False: ">"}[self.closed in ("both", "left")]
        hi = {True: "<=", False: "<"}[self.closed in ("both", "right")]
        if self.low is not None and self.high is not None:
            lb = "[" if lo == ">=" else "("
            rb = "]" if hi == "<=" else ")"
            return f"{what} in {lb}{self.low}, {self.high}{rb}{unit}"
        if self.low is not None:
            return f"{what} {lo} {self.low}{unit}"
        if self.high is not None:
            return f"{what} {hi} {self.high}{unit}"
        return what + unit


class Options(Constraint):
    """One of a fixed set of values (strings, usually)."""

    def __init__(self, *values):
        self.values = tuple(values)

    def accepts(self, value):
        return not isinstance(value, (list, dict)) and value in self.values

    def describe(self):
        return "one of " + ", ".join(map(str, self.values))


class InstanceOf(Constraint):
    def __init__(self, *types, what=None):
        self.types, self.what = types, what

    def accepts(self, value):
        if bool not in self.types and _is_bool(value):
            return False
        return isinstance(value, self.types)

    def describe(self):
        if self.what:
            return self.what
        names = {bool: "true or false", str: "a string", dict: "a mapping", list: "a list"}
        return " or ".join(names.get(t, t.__name__) for t in self.types)


class ListOf(Constraint):
    """A non-empty list whose items each meet `item` (one constraint form)."""

    def __init__(self, item, min_len=1):
        self.item, self.min_len = as_constraint(item), min_len

    def accepts(self, value):
        return (
            isinstance(value, (list, tuple))
            and len(value) >= self.min_len
            and all(self.item.accepts(v) for v in value)
        )

    def describe(self):
        return f"a list of {self.item.describe()}"


class Pattern(Constraint):
    """A string matching a regular expression in full; `what` says it in words."""

    def __init__(self, regex, what):
        self.regex, self.what = re.compile(regex), what

    def accepts(self, value):
        return isinstance(value, str) and self.regex.fullmatch(value) is not None

    def describe(self):
        return self.what


class _NoneOk(Constraint):
    def accepts(self, value):
        return value is None

    def describe(self):
        return "null"


class _Anything(Constraint):
    def accepts(self, value):
        return True

    def describe(self):
        return "anything"


ANY = _Anything()

# Forms many parts share.
COUNT = Interval(int, 1)  # n_clusters, n_init, epochs, block_size, ...
POSITIVE = Interval(float, 0, closed="neither")  # a learning rate, a tolerance, ...
SEED = Interval(int, 0)  # numpy, torch and scikit-learn all take a non-negative integer
DEVICE = Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu or cuda[:N]")


def as_constraint(form):
    """Turn a declared form into a Constraint: None, a type, a tuple of choices, or one."""
    if isinstance(form, Constraint):
        return form
    if form is None:
        return _NoneOk()
    if form is int:
        return Interval(int)
    if form is float:
        return Interval(float)
    if isinstance(form, tuple):
        return Options(*form)
    if isinstance(form, type):
        return InstanceOf(form)
    raise TypeError(f"unknown parameter constraint {form!r}")


def check_value(where, value, forms):
    """Raise ConfigError naming `where` unless `value` meets one of `forms`; return it."""
    constraints = [as_constraint(f) for f in forms]
    if any(c.accepts(value) for c in constraints):
        return value
    what = " or ".join(c.describe() for c in constraints)
    hint = ""
    options = [v for c in constraints if isinstance(c, Options) for v in c.values]
    if options and isinstance(value, str):
        hint = suggest(value, options)
    raise ConfigError(f"{where}: expected {what}, got {value!r}{hint}")


def validate(where, params, constraints):
    """Check every declared parameter of `params` (a mapping) against `constraints`."""
    for key, forms in constraints.items():
        if key in params:
            check_value(f"{where}.{key}", params[key], forms)


class Part:
    """Base of every configurable part (extractor, preprocessor, reducer, clusterer,
    scorer, criterion, generator): its `__init__` keywords are its parameters.

    A part that trains a network sets `trains = True`; the method holding it saves it.
    A part whose result depends on its seed (`random_state`: a random initialisation, a
    stochastic embedding, a trained network) is `stochastic` (`is_stochastic`); a config's
    `evaluation.repeats` reruns the methods holding one over several seeds.
    """

    name = "part"
    trains = False
    stochastic = False
    _parameter_constraints: dict = {}
    # __init__ keywords that say where the part is configured (for messages), not what it does
    _not_params = ("config_key",)

    @classmethod
    def param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name
            for p in sig.parameters.values()
            if p.name != "self"
            and p.name not in cls._not_params
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )

    @classmethod
    def constraints(cls):
        """The declared constraints of this class and its bases (subclasses win)."""
        merged = {}
        for klass in reversed(cls.__mro__):
            merged.update(getattr(klass, "_parameter_constraints", {}) or {})
        return merged

    @classmethod
    def units(cls):
        """{parameter: unit} of the parameters whose constraint states one (`Interval.unit`)."""
        return {
            key: form.unit
            for key, forms in cls.constraints().items()
            for form in forms
            if getattr(form, "unit", None)
        }

    def _validate_params(self, where=None):
        validate(where or self.name, self.get_params(), self.constraints())

    def get_params(self):
        return {k: getattr(self, k) for k in self.param_names()}

    def set_params(self, **params):
        valid = self.param_names()
        for key, value in params.items():
            if key not in valid:
                raise ConfigError(
                    f"{self.name}.{key}: unknown parameter{suggest(key, valid)}; "
                    f"valid: {', '.join(valid) or 'none'}"
                )
            setattr(self, key, value)
        return self

    def clone(self):
        """An unfitted copy with the same parameters (scikit-learn's `clone`)."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def trained_parts(parts):
    """{role: part} of the parts that trained a network (class attribute `trains`)."""
    return {role: p for role, p in parts.items() if getattr(p, "trains", False)}


def is_stochastic(part):
    """Whether a part (class or instance) gives other results under another seed: it says
    so (`stochastic`) or trains a network."""
    return bool(getattr(part, "stochastic", False) or getattr(part, "trains", False))
