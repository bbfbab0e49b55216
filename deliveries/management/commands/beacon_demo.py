"""Creates the admin login (printed) for the embedded default; idempotent."""
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin login and the demo data set (idempotent)."

    def handle(self, *args, **options):
        password_file = settings.BASE_DIR / "var" / "admin-password.txt"
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password)
        password = password_file.read_text().strip() if password_file.exists() else "(set at first run)"
        self.stdout.write(self.style.SUCCESS(f"Admin login: admin / {password}"))
