"""What the site says about each cake it knows: a line for people, and an example photo."""

from django.contrib.staticfiles import finders
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

DESCRIPTIONS = {
    "kue_dadar_gulung": _("Green pandan crêpes rolled around grated coconut cooked in palm sugar."),
    "kue_kastengel": _("Crisp, buttery cheese cookies baked in little bars under grated cheese."),
    "kue_klepon": _("Green glutinous-rice balls that burst with palm-sugar syrup, rolled in coconut."),
    "kue_lapis": _("Steamed rice-flour and coconut-milk cake in bright, peelable layers."),
    "kue_lumpur": _("Soft, custardy coconut-milk cake baked in a flower mould, often with a raisin."),
    "kue_putri_salju": _("“Snow princess” crescent cookies, buttery and thick with powdered "
                         "sugar."),
    "kue_risoles": _("Crêpe rolls with a savoury filling, breaded and fried until golden."),
    "kue_serabi": _("Rice-flour and coconut-milk pancakes from clay pans: thick and round, or thin and "
                    "folded."),
}


def catalogue(labels: list[dict]) -> list[dict]:
    """The model's classes with a description and an example photo where the site has them."""
    cakes = []
    for label in labels:
        image = f"img/cakes/{label['slug']}.jpg"
        cakes.append({**label, "description": DESCRIPTIONS.get(label["slug"], ""),
                      "image": image if finders.find(image) else ""})
    return cakes


def unknown(label: str, known, none: str) -> str:
    """What a request naming a cake the model does not know is told: the slugs it may use."""
    return gettext("Unknown cake “%(label)s”; choose one of %(known)s, or %(none)s.") % {
        "label": label, "known": ", ".join(sorted(known)), "none": none}
