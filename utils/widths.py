"""Widths and depths of the elastic BERT: parsing, snapping to whole heads
(DynaBERT) and the encoder layers a depth keeps.  Pure Python, no paddle.

Widths are snapped to whole heads (DynaBERT): heads = round(w * H) >= 1, the
snapped ratio is heads / H, FFN neurons = floor(heads * I / H).
"""
import logging
import math
import re
from dataclasses import dataclass
from fractions import Fraction

from .errors import UserError

logger = logging.getLogger("bert_suite")

@dataclass(frozen=True)
class Width:
    requested: float   # as the user wrote it
    ratio: float       # snapped: heads / num_heads
    heads: int
    ffn: int           # FFN neurons kept

    def tag(self) -> str:
        """Directory-name tag: ``width_{tag}``."""
        return f"{self.ratio:.4f}"


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_width(text) -> float:
    """``"0.5"``, ``"1/2"``, ``"5/6"``, ``"0.8333333333333334"`` -> float.
    ValueError on anything else (names, empty, nan/inf, division by zero)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"width {text!r} is not a finite number")
        return value
    if not isinstance(text, str):
        raise ValueError(f"width {text!r} is not a number")
    s = text.strip()
    if "/" in s:
        num, _, den = s.partition("/")
        num, den = num.strip(), den.strip()
        if not (_NUMBER.match(num) and _NUMBER.match(den)):
            raise ValueError(f"width {text!r} is not a number or a fraction like 5/6")
        if float(den) == 0:
            raise ValueError(f"width {text!r} divides by zero")
        return float(Fraction(num) / Fraction(den))
    if not _NUMBER.match(s):
        raise ValueError(f"width {text!r} is not a number or a fraction like 5/6")
    return float(s)


def snap_widths(widths, num_heads, intermediate_size, flag="--width_mult_list"):
    """Snap width multipliers to whole heads (DynaBERT: heads = round(w * H)).

    Accepts floats or strings (parsed with :func:`parse_width`).  Raises
    :class:`UserError` naming ``flag`` for an empty list, a width <= 0 or > 1,
    or a width that keeps no head.  Widths that snap to the same head count are
    kept once (first occurrence, order preserved) with a warning."""
    num_heads, intermediate_size = int(num_heads), int(intermediate_size)
    if widths is None or len(widths) == 0:
        raise UserError(f"{flag}: no width given (expected e.g. 1.0 0.75 0.5)")
    out, seen = [], {}
    for raw in widths:
        try:
            w = parse_width(raw)
        except ValueError as e:
            raise UserError(f"{flag}: {e}")
        if w <= 0:
            raise UserError(f"{flag}: width {raw} must be > 0")
        if w > 1:
            raise UserError(f"{flag}: width {raw} is larger than 1 (the full model); widths are in (0, 1]")
        heads = int(round(w * num_heads))
        if heads < 1:
            raise UserError(f"{flag}: width {raw} keeps {heads} of {num_heads} attention heads "
                            f"(round({w:g} * {num_heads}) = 0); the smallest usable width is {1 / num_heads:.4g}")
        ratio = heads / num_heads
        ffn = heads * intermediate_size // num_heads   # exact floor(ratio * I), no float error
        if heads in seen:
            logger.warning("%s: width %s snaps to %d/%d heads like width %s before it; using it once",
                           flag, raw, heads, num_heads, seen[heads])
            continue
        if abs(ratio - w) > 1e-6:
            logger.info("%s: width %s snapped to %d/%d heads = %.4f (FFN %d of %d)",
                        flag, raw, heads, num_heads, ratio, ffn, intermediate_size)
        seen[heads] = raw
        out.append(Width(requested=w, ratio=ratio, heads=heads, ffn=ffn))
    return out


def depth_layers(num_layers, depth_mult, flag="--depth_mult_list"):
    """Encoder layers kept at ``depth_mult`` (DynaBERT paper and code): the
    depth is snapped to whole layers, n = round(d * L) >= 1, and layer
    floor(i / d') is kept for i in 0..n-1 with d' = n / L.  d = 0.5 of 12
    layers keeps 0, 2, 4, 6, 8, 10 (PaddleNLP keeps 1, 3, 5, ...)."""
    try:
        d = parse_width(depth_mult) if isinstance(depth_mult, str) else float(depth_mult)
    except ValueError as e:
        raise UserError(f"{flag}: {e}")
    if not 0 < d <= 1:
        raise UserError(f"{flag}: depth {depth_mult} must be in (0, 1]")
    n = int(round(d * num_layers))
    if n < 1:
        raise UserError(f"{flag}: depth {depth_mult} keeps no layer of {num_layers}")
    return [(i * num_layers) // n for i in range(n)]


def check_layers(layers, n):
    """``layers`` as a list of ints, checked: at least one, each in 0..n-1, no duplicate
    (ValueError otherwise)."""
    idx = [int(i) for i in layers]
    if not idx:
        raise ValueError("layers: at least one encoder layer must run")
    if any(i < 0 or i >= n for i in idx):
        raise ValueError(f"layers {idx}: indices must be in 0..{n - 1}")
    if len(set(idx)) != len(idx):
        raise ValueError(f"layers {idx}: duplicate index")
    return idx

