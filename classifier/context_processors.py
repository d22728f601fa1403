"""What every page's template may ask of the signed-in user."""

from __future__ import annotations

from classifier import selectors


def photo_scope(request) -> dict:
    """`sees_all_photos`: whether the gallery shows everyone's photos ("All photos") or the user's own
    ("My photos"); asked only by the pages that say it."""
    return {"sees_all_photos": lambda: selectors.may_act_on_others_photos(request.user)}
