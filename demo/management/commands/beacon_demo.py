"""Creates the admin login (printed) and the demo data set for the embedded default; idempotent.

Demo data: 50 profiles (a few text-only, one denylisted by a complaint and one quarantined by a hard
bounce, both through the quarantine rule, so that each has its reason and failure), a list, and a delivery
analyzed and sent through the real services. The demo send goes to Django's in-memory backend, so
the console is not flooded with 50 emails and nothing leaves the machine. The send is then backdated
by three days (a demo-data step), its recipients' activity over the following hours is made through
the tracking endpoints (`demo.activity`), and the reports are consolidated at once.
"""
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import get_connection
from django.core.management.base import BaseCommand
from django.test.utils import override_settings

from beacon.in_process_tasks import in_process_tasks_wait
from deliveries import services
from deliveries.models import Delivery, FailureReason
from demo.activity import demo_tracking_activity
from profiles import services as profile_services
from profiles.models import AddressFailureType, EmailFormat, List, Profile
from profiles.services.quarantine import AddressFailureReport, address_outcomes_record
from reporting.statistics import reports_refresh

LOCMEM_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEMO_LIST = "Demo newsletter"
DEMO_DELIVERY = "Demo: spring newsletter"
# How long ago the demo delivery was created and sent: its statistics over time span the days since.
DEMO_SENT_AGO = timedelta(days=3)
FIRST_NAMES = ["Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen", "Dijkstra"]
CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Oslo"]
DEMO_HTML = """<html><body>
<h1>Spring is here, {{ profile.first_name }}!</h1>
<p>Our <a href="https://shop.example.com/spring-sale">spring sale</a> starts today.</p>
<p><a href="https://shop.example.com/stores?city={{ profile.attributes.city }}" title="Stores near you">Find a store in {{ profile.attributes.city }}</a></p>
<p><a href="https://blog.example.com/whats-new"><img src="https://blog.example.com/banner.png" alt="What's new"></a></p>
<p>Questions? <a href="mailto:help@example.com">Write to us</a>.</p>
<p><a href="{{ mirror_url }}">View this email in your browser</a> · <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>"""
DEMO_TEXT = """Spring is here, {{ profile.first_name }}!

Our spring sale starts today: https://shop.example.com/spring-sale
Find a store: https://shop.example.com/stores?city={{ profile.attributes.city }}

Unsubscribe: {{ unsubscribe_url }}
"""


class Command(BaseCommand):
    help = "Create the admin login and the demo data set (idempotent)."

    def handle(self, *args, **options):
        admin = self._admin()
        self._demo_delivery(admin)

    def _admin(self):
        password_file = settings.BASE_DIR / "var" / "admin-password.txt"
        User = get_user_model()
        admin = User.objects.filter(username="admin").first()
        if admin is None:
            password = secrets.token_urlsafe(12)
            admin = User.objects.create_superuser("admin", "admin@localhost", password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password)
        password = password_file.read_text().strip() if password_file.exists() else "(set at first run)"
        self.stdout.write(self.style.SUCCESS(f"Admin login: admin / {password}"))
        return admin

    def _demo_profiles(self) -> list[Profile]:
        emails = []
        for number in range(50):
            first, last = FIRST_NAMES[number % 10], LAST_NAMES[(number // 10 + number) % 10]
            email = f"{first}.{last}.{number}@demo.example.com".lower()
            emails.append(email)
            if Profile.objects.filter(email=email).exists():
                continue
            profile_services.profile_create(
                email=email,
                first_name=first,
                last_name=last,
                attributes={"city": CITIES[number % len(CITIES)]},
                email_format=EmailFormat.TEXT if number % 12 == 5 else EmailFormat.HTML,
            )
        # Their event keys make a second run a replay, which the rule counts once.
        address_outcomes_record(failures=[
            AddressFailureReport(AddressFailureType.COMPLAINT, FailureReason.COMPLAINT, email=emails[7], event_key="demo:complaint"),
            AddressFailureReport(AddressFailureType.HARD, FailureReason.USER_UNKNOWN, email=emails[13], event_key="demo:hard-bounce"),
        ])
        return list(Profile.objects.filter(email__in=emails))

    def _demo_delivery(self, admin) -> None:
        if Delivery.objects.filter(label=DEMO_DELIVERY).exists():
            return
        demo_list = List.objects.filter(name=DEMO_LIST).first() or profile_services.list_create(
            name=DEMO_LIST, description="Demo audience"
        )
        profile_services.list_add_profiles(
            list_obj=demo_list, profile_ids=[profile.pk for profile in self._demo_profiles()]
        )
        delivery = services.delivery_create(
            actor=admin,
            lists=[demo_list],
            label=DEMO_DELIVERY,
            subject="Spring is here, {{ profile.first_name }}",
            from_email="news@demo.example.com",
            reply_to="help@demo.example.com",
            html=DEMO_HTML,
            text=DEMO_TEXT,
        )
        services.delivery_analyze(delivery_id=delivery.pk, actor=admin)
        with override_settings(EMAIL_BACKEND=LOCMEM_BACKEND):
            services.delivery_send(delivery_id=delivery.pk, actor=admin)
            # Without a broker the send runs in this process's background threads: let it finish while the
            # in-memory backend is in place. With a broker and no worker yet, finish the demo send here.
            in_process_tasks_wait()
            while services.delivery_send_batch(
                delivery_id=delivery.pk, task_id="beacon-demo", connection=get_connection(LOCMEM_BACKEND)
            ):
                pass
        services.delivery_backdate(delivery_id=delivery.pk, by=DEMO_SENT_AGO)
        demo_tracking_activity(delivery_id=delivery.pk)
        reports_refresh()
        delivery.refresh_from_db()
        self.stdout.write(
            f"Demo delivery '{delivery.label}': {delivery.status}, {delivery.success} sent, "
            f"{sum(delivery.excluded_by_cause.values())} excluded."
        )
