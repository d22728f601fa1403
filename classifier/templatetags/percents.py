"""`{{ probability|percent }}`: a probability (0 to 1) as the whole percentage the pages show."""

import math

from django import template

register = template.Library()


@register.filter
def percent(value) -> str:
    """Rounded half up, as the pages' scripts round (Math.round), not half to even as widthratio
    does; and never "100" short of 1, nor "0" above 0: "100% sure" would claim a certainty the model
    does not have, and a bar of "0%" a class it did not rule out."""
    if value in (None, ""):
        return ""
    value = float(value)
    shown = math.floor(value * 100 + 0.5)
    if value < 1:
        shown = min(shown, 99)
    if value > 0:
        shown = max(shown, 1)
    return str(shown)
