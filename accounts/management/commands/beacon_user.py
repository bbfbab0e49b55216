"""`manage.py beacon_user <username> --role marketer|viewer|administrator [--password ...] [--staff]`"""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.roles import ROLES
from accounts.services import user_role_set


class Command(BaseCommand):
    help = "Creates a user or changes their role (administrators, and anyone given --staff, may use the admin)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument("--password", help="Sets the password (checked against the password rules).")
        parser.add_argument("--staff", action="store_true", help="Let a marketer or viewer into the Django admin too.")

    def handle(self, *args, username: str, role: str, password: str | None, staff: bool, **options) -> None:
        try:
            user = user_role_set(username=username, role=role, password=password, staff=staff)
        except ValidationError as error:
            raise CommandError(_as_text(error)) from None
        self.stdout.write(f"{user.get_username()}: {role}{' (staff)' if user.is_staff else ''}.")


def _as_text(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
    return " ".join(error.messages)
