"""Run the simulated payment provider in the foreground, for `make run` and manual testing."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from payments.providers.signing import webhook_secrets_for
from payments.providers.simulator import DEFAULT_WEBHOOK_SECRET, PROVIDER_CODE, SCENARIO_BY_SUFFIX, start_simulator


class Command(BaseCommand):
    help = (
        "Serve the simulated payment provider on loopback until interrupted; "
        "scenarios follow the last two digits of the amount in minor units."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8765, help="Port to listen on (default 8765).")
        parser.add_argument(
            "--webhook-url",
            default=getattr(settings, "PAYMENTS_SIMULATOR_WEBHOOK_URL", None),
            help="Where to POST signed webhook events (default: PAYMENTS_SIMULATOR_WEBHOOK_URL, else none).",
        )
        parser.add_argument(
            "--timeout-delay", type=float, default=15.0, help="Seconds the timeout scenario holds its answer."
        )
        parser.add_argument("--settle-delay", type=float, default=5.0, help="Seconds until pending objects settle.")
        parser.add_argument(
            "--auto-webhooks", choices=["late", "all", "off"], default="late", help="Which outcomes send a webhook."
        )

    def handle(self, *args, **options):
        # Sign with the secret the back-office verifies with, so webhooks arrive VALID in development.
        secrets = webhook_secrets_for(provider_code=PROVIDER_CODE)
        handle = start_simulator(
            host=options["host"],
            port=options["port"],
            webhook_url=options["webhook_url"] or None,
            webhook_secret=secrets[0] if secrets else DEFAULT_WEBHOOK_SECRET,
            api_key=getattr(settings, "PAYMENTS_SIMULATOR_API_KEY", None),
            timeout_delay=options["timeout_delay"],
            settle_delay=options["settle_delay"],
            auto_webhooks=options["auto_webhooks"],
        )
        self.stdout.write(f"provider simulator listening on {handle.base_url}")
        self.stdout.write(f"webhooks: {handle.config.webhook_url or 'off (no --webhook-url)'}")
        endings = ", ".join(f"{suffix}={scenario}" for suffix, scenario in sorted(SCENARIO_BY_SUFFIX.items()))
        self.stdout.write(f"amount endings: {endings}; anything else succeeds")
        self.stdout.flush()
        stop = threading.Event()
        # A process manager stops us with SIGTERM; Ctrl-C arrives as KeyboardInterrupt.
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        try:
            while not stop.wait(timeout=1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            handle.stop()
            self.stdout.write("provider simulator stopped")
