"""Page-number pagination with a bounded, client-chosen page size."""

from rest_framework import pagination


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
