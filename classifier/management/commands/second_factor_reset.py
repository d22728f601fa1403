"""`manage.py second_factor_reset USERNAME`: forget an account's authenticator app and backup codes
(a lost phone, and no other staff member to remove them in the admin). The next sign-in, after the
password, sets one up again."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from classifier import services


class Command(BaseCommand):
    help = ("Forget an account's authenticator app and backup codes, and its API tokens: its next "
            "sign-in sets two-factor sign-in up again.")

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No account is named {username!r}.")
        if services.second_factor_reset(user):
            self.stdout.write(f"{username}: authenticator and backup codes forgotten; the next sign-in sets "
                              "them up again.")
        else:
            self.stdout.write(f"{username} had no authenticator or backup codes.")
