"""Who may call what: staff status plus the model permission the website checks too."""

from django.utils.functional import lazy
from django.utils.translation import gettext
from rest_framework.permissions import BasePermission, DjangoModelPermissions


def staff_with(permission: str) -> type[BasePermission]:
    """A DRF permission: staff users that hold `permission` (e.g. "classifier.change_modelversion")."""

    class StaffWith(BasePermission):
        # (in the language of the request it refuses)
        message = lazy(lambda: gettext("This needs a staff account with the %(permission)s permission.") % {
            "permission": permission.split(".")[-1]}, str)()

        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_staff and user.has_perm(permission))

    return StaffWith


class StaffModelPermissions(DjangoModelPermissions):
    """Django's model permissions for staff users, reading included (view_<model>)."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": ["%(app_label)s.view_%(model_name)s"],
                 "HEAD": ["%(app_label)s.view_%(model_name)s"]}

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_staff and super().has_permission(request, view))
