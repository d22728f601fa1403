"""Dates and times in Indonesian as in English ("7 Des 2026 03:30 WIB": Django translates the month),
for what Django formats by itself: the admin's lists and pages (the pages name their formats)."""

from cakesite.formats.en.formats import *  # noqa: F403
