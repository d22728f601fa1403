"""Page-number pagination with a bounded, client-chosen page size."""

from rest_framework import filters, pagination


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_queryset(self, queryset, request, view=None):
        """The page's ids first, then their rows, read through the view's queryset before its filters
        (by primary key, in the page's order): a deep page's OFFSET skips index entries, not rows
        joined to their owner and answer, and the filters run once."""
        ids = super().paginate_queryset(queryset.values_list("pk", flat=True), request, view)
        if ids is None:  # not paginated
            return None
        rows = (view.get_queryset() if view is not None else queryset).in_bulk(ids)
        return [rows[pk] for pk in ids if pk in rows]  # (one deleted meanwhile is left out)


class StableOrderingFilter(filters.OrderingFilter):
    """DRF's ?ordering=, with the id last (in the direction of the last field): photos with the
    same confidence keep one order from page to page, so no page repeats or skips one."""

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        if ordering and not any(field.lstrip("-") in ("id", "pk") for field in ordering):
            ordering = [*ordering, "-id" if ordering[-1].startswith("-") else "id"]
        return ordering
