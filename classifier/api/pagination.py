"""Page-number pagination with a bounded, client-chosen page size."""

from django.core.exceptions import FieldDoesNotExist
from django.db.models import F
from django.utils.translation import gettext
from rest_framework import filters, pagination
from rest_framework.exceptions import ValidationError

from classifier import selectors


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_paginated_response_schema(self, schema):
        """DRF's, in OpenAPI 3.1: `next` and `previous` are a URL or null (without DRF's example, a
        URL of an /accounts/ list the API does not have)."""
        answer = super().get_paginated_response_schema(schema)
        for link in ("next", "previous"):
            answer["properties"][link].pop("nullable")
            answer["properties"][link].pop("example", None)
            answer["properties"][link]["type"] = ["string", "null"]
        answer["required"] = ["count", "next", "previous", "results"]
        return answer

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
                most = self.max_page_size
                parameter["description"] = (f"Results per page: {self.page_size} unless given, at most "
                                            f"{most} (a larger number gives {most}).")
        return parameters

    def paginate_queryset(self, queryset, request, view=None):
        """The page's ids first, then their rows, read through the view's queryset before its filters
        (by primary key, in the page's order): a deep page's OFFSET skips index entries, not rows
        joined to their owner and answer, and the filters run once."""
        ids = super().paginate_queryset(queryset.values_list("pk", flat=True), request, view)
        if ids is None:  # not paginated
            return None
        return selectors.in_order(view.get_queryset() if view is not None else queryset, ids)


class StableOrderingFilter(filters.OrderingFilter):
    """DRF's ?ordering=, with the id last (in the direction of the last field): photos with the
    same confidence keep one order from page to page, so no page repeats or skips one. Rows without
    a value (a photo not classified yet has no confidence) come last either way, on every database
    (PostgreSQL puts them first in a descending order, SQLite first in an ascending one). A field it
    cannot order by is a 400 (DRF leaves it out silently), and the schema says which it can."""

    def filter_queryset(self, request, queryset, view):
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        return queryset.order_by(*(self.empty_last(queryset.model, field) for field in ordering))

    @classmethod
    def empty_last(cls, model, field: str):
        name = field.lstrip("-")
        if not cls.nullable(model, name):
            return field
        return F(name).desc(nulls_last=True) if field.startswith("-") else F(name).asc(nulls_last=True)

    @staticmethod
    def nullable(model, name: str) -> bool:
        try:
            return model._meta.get_field(name).null
        except FieldDoesNotExist:  # "pk"
            return False

    def remove_invalid_fields(self, queryset, fields, view, request):
        valid = super().remove_invalid_fields(queryset, fields, view, request)
        if len(valid) < len(fields):  # (an empty one too: "created,")
            raise ValidationError({self.ordering_param: [self.explained(view)]})
        return valid

    @classmethod
    def explained(cls, view) -> str:
        model = view.get_queryset().model
        empty = [name for name in view.ordering_fields if cls.nullable(model, name)]
        explained = gettext("Order by %(fields)s; a leading - reverses a field; several, comma-separated, "
                            "order by the first, then the next.") % {
            "fields": ", ".join(view.ordering_fields)}
        if empty:
            explained += " " + gettext("Those without a %(fields)s come last either way.") % {
                "fields": gettext(" or ").join(empty)}
        return explained

    def get_schema_operation_parameters(self, view):
        fields = "|".join(view.ordering_fields)
        return [{"name": self.ordering_param, "required": False, "in": "query",
                 "description": self.explained(view),
                 "schema": {"type": "string", "pattern": rf"^ *-?({fields}) *(, *-?({fields}) *)*$"}}]

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        if ordering and not any(field.lstrip("-") in ("id", "pk") for field in ordering):
            ordering = [*ordering, "-id" if ordering[-1].startswith("-") else "id"]
        return ordering
