"""What every page's template may ask of the signed-in user."""

from __future__ import annotations

import functools

from django.utils.translation import gettext

from classifier import selectors


def photo_scope(request) -> dict:
    """`sees_all_photos`: whether the gallery shows everyone's photos or the user's own; and
    `gallery_name`, what the pages call it then ("All photos" or "My photos"). Asked only by the
    pages that say it, once a request."""
    sees_all = functools.cache(lambda: selectors.may_act_on_others_photos(request.user))
    return {"sees_all_photos": sees_all,
            "gallery_name": lambda: gettext("All photos") if sees_all() else gettext("My photos")}


def second_factor(request) -> dict:
    """`second_factor_pending`: whether the session is a staff account's still to give its second
    factor (its menus would lead only back to that step)."""
    from classifier.middleware import second_factor_pending

    return {"second_factor_pending": lambda: hasattr(request, "user") and second_factor_pending(request)}
