"""Dates and times as the site's pages write them ("7 Dec 2026 03:30 WIB"), for what Django formats
by itself: the admin's lists and pages (the pages name their formats)."""

DATETIME_FORMAT = "j M Y H:i T"
DATE_FORMAT = "j M Y"
TIME_FORMAT = "H:i T"
SHORT_DATETIME_FORMAT = "j M Y H:i"
SHORT_DATE_FORMAT = "j M Y"
