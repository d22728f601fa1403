"""Pictures for the staff dashboard that change with the data (matplotlib, drawn on request)."""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import timedelta

from django.utils.dateformat import format as date_format
from django.utils.translation import gettext, ngettext


def feedback_accuracy_png(rows: list[dict]) -> bytes:
    """Accuracy by users' answers (confirmed / reviewed) per day, one line per model version, with
    its 95% confidence interval as a bar (a day of few answers says little); its words in the
    request's language."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    by_version = defaultdict(list)
    for row in rows:
        by_version[row["version"]].append(row)
    for version, points in by_version.items():
        accuracy = [p["accuracy"] for p in points]
        below = [a - p["accuracy_low"] for a, p in zip(accuracy, points)]
        above = [p["accuracy_high"] - a for a, p in zip(accuracy, points)]
        ax.errorbar([p["day"] for p in points], accuracy, yerr=[below, above], marker="o", capsize=3,
                    label=answers_label(version, sum(p["reviewed"] for p in points)))
    if not rows:
        ax.text(0.5, 0.5, gettext("No answers yet"), ha="center", va="center", transform=ax.transAxes)
    days = sorted({row["day"] for row in rows})
    if days:  # a few days either side, so one day of answers is not stretched over years
        ax.set_xlim(days[0] - timedelta(days=3), days[-1] + timedelta(days=3))
    # the month in the request's language ("7 Des"), not the C locale's ("07 Dec")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: date_format(dates.num2date(x), "j M")))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(gettext("confirmed / reviewed"))
    ax.set_title(gettext("Accuracy of each model version by users' answers, per day (UTC)") + "\n"
                 + gettext("bars: %(level)s%% confidence interval") % {"level": 95}, fontsize=10)
    ax.grid(alpha=0.3)
    if by_version:
        ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def answers_label(version: str, answers: int) -> str:
    return ngettext("%(version)s (%(n)s answer)", "%(version)s (%(n)s answers)", answers) % {
        "version": version, "n": answers}
