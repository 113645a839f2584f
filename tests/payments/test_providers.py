"""The provider side: the HTTP adapter against the simulated provider over loopback, and webhook signatures.

No database: these tests exercise the wire protocol, the error mapping and the simulator's
scenarios, which every payment, refund and payout service builds on.
"""

import datetime as dt
import json
import queue
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backoffice.ids import new_idempotency_key, new_public_id
from payments.providers import (
    SIGNATURE_HEADER,
    HttpProviderAdapter,
    ProviderObjectKind,
    ProviderPaymentRequest,
    ProviderPayoutRequest,
    ProviderProtocolError,
    ProviderRefundRequest,
    ProviderRequestRejected,
    ProviderStatus,
    ProviderTimeout,
    ProviderUnavailable,
    SignatureVerdict,
    provider_adapter_from_settings,
    sign,
    verify,
    webhook_secrets_for,
)
from payments.providers.simulator import start_simulator

UTC = dt.UTC
WEBHOOK_SECRET = b"whsec_test_providers"
READ_TIMEOUT = 0.2
# Longer than the read timeout so the timeout scenario really times out, short enough to keep tests fast.
TIMEOUT_DELAY = 0.5
SETTLE_DELAY = 0.1


@pytest.fixture(scope="module")
def simulator():
    handle = start_simulator(
        webhook_secret=WEBHOOK_SECRET,
        api_key="sk_test_providers",
        timeout_delay=TIMEOUT_DELAY,
        settle_delay=SETTLE_DELAY,
        webhook_timeout=1.0,
    )
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def _fresh_simulator(simulator):
    simulator.reset()
    simulator.configure(webhook_url=None, auto_webhooks="late")


@pytest.fixture(scope="module")
def adapter(simulator):
    return HttpProviderAdapter(
        base_url=simulator.base_url,
        provider_code="sim",
        api_key="sk_test_providers",
        connect_timeout=0.5,
        read_timeout=READ_TIMEOUT,
    )


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.deliveries: queue.Queue = queue.Queue()
        self.answer_status = 200
        self.release: threading.Event | None = None  # when set to an Event, answers wait for it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/webhooks/sim"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.deliveries.put({"path": self.path, "headers": dict(self.headers.items()), "body": body})
        if self.server.release is not None:
            self.server.release.wait(5)
        self.send_response(self.server.answer_status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def receiver():
    """A tiny webhook endpoint on loopback that records what it is sent."""
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhooks(simulator, receiver):
    while not receiver.deliveries.empty():
        receiver.deliveries.get_nowait()
    simulator.configure(webhook_url=receiver.url)
    return receiver


def payment_request(*, amount_minor: int, currency: str = "IDR", **overrides) -> ProviderPaymentRequest:
    fields = {
        "idempotency_key": new_idempotency_key(),
        "attempt_id": new_public_id("pa"),
        "merchant_id": new_public_id("m"),
        "amount_minor": amount_minor,
        "currency": currency,
        "method_type": "card",
        "card_token": "tok_sim_visa",
        "card_fingerprint": "fp_5f2c9a",
    }
    return ProviderPaymentRequest(**{**fields, **overrides})


def wait_for(predicate, *, within: float = 1.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {within} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestPayments:
    def test_success_returns_the_providers_reference_and_the_raw_answer(self, adapter, simulator):
        req = payment_request(amount_minor=250000)

        result = adapter.create_payment(req)

        assert result.status is ProviderStatus.SUCCEEDED
        assert result.provider_reference.startswith("sim_pay_")
        assert (result.merchant_reference, result.merchant_id) == (req.attempt_id, req.merchant_id)
        assert (result.amount_minor, result.currency) == (250000, "IDR")
        assert (result.decline_code, result.error_code) == ("", "")
        assert result.http_status == 200
        assert 0 <= result.elapsed_ms < 1000
        assert json.loads(result.raw_body)["id"] == result.provider_reference
        [received] = simulator.received()
        assert received.idempotency_key == req.idempotency_key
        assert "Authorization" not in received.headers
        assert json.loads(received.body)["card_token"] == "tok_sim_visa"

    def test_amount_ending_in_51_is_declined_for_insufficient_funds(self, adapter):
        result = adapter.create_payment(payment_request(amount_minor=10051))

        assert result.status is ProviderStatus.DECLINED
        assert result.decline_code == "insufficient_funds"
        assert result.provider_status == "declined"
        assert result.amount_minor == 10051

    def test_read_timeout_is_an_unknown_outcome_and_a_later_query_finds_the_success(self, adapter, simulator):
        req = payment_request(amount_minor=10091)
        started = time.monotonic()

        with pytest.raises(ProviderTimeout) as raised:
            adapter.create_payment(req)

        assert time.monotonic() - started < TIMEOUT_DELAY
        assert raised.value.code == "PROVIDER_TIMEOUT"
        assert raised.value.phase == "read"
        found = adapter.query_status(merchant_reference=req.attempt_id)
        assert found.status is ProviderStatus.SUCCEEDED
        assert (found.merchant_reference, found.amount_minor, found.currency) == (req.attempt_id, 10091, "IDR")
        assert found.kind is ProviderObjectKind.PAYMENT
        by_reference = adapter.query_status(provider_reference=found.provider_reference)
        assert by_reference.status is ProviderStatus.SUCCEEDED
        [held] = simulator.payments()
        assert held.status == "succeeded"

    def test_late_success_answers_pending_and_settles_later(self, adapter):
        created = adapter.create_payment(payment_request(amount_minor=10092))
        assert created.status is ProviderStatus.PENDING

        settled = wait_for(
            lambda: (
                (r := adapter.query_status(provider_reference=created.provider_reference)).status
                is ProviderStatus.SUCCEEDED
                and r
            )
        )

        assert settled.amount_minor == 10092

    def test_amount_mismatch_is_visible_in_query_status(self, adapter):
        req = payment_request(amount_minor=10094)

        created = adapter.create_payment(req)
        queried = adapter.query_status(provider_reference=created.provider_reference)

        assert (created.status, created.amount_minor) == (ProviderStatus.SUCCEEDED, 10094)
        assert (queried.status, queried.amount_minor) == (ProviderStatus.SUCCEEDED, 10093)

    def test_503_is_unavailable_and_nothing_was_recorded(self, adapter, simulator):
        req = payment_request(amount_minor=10095)

        with pytest.raises(ProviderUnavailable) as raised:
            adapter.create_payment(req)

        assert raised.value.code == "PROVIDER_UNAVAILABLE"
        assert raised.value.http_status == 503
        assert json.loads(raised.value.raw_body)["error"]["code"] == "service_unavailable"
        assert simulator.payments() == []
        assert adapter.query_status(merchant_reference=req.attempt_id).status is ProviderStatus.NOT_FOUND

    def test_refused_connection_is_unavailable(self):
        closed = HttpProviderAdapter(
            base_url=f"http://127.0.0.1:{free_port()}",
            provider_code="sim",
            api_key="sk_test_providers",
            connect_timeout=0.5,
            read_timeout=READ_TIMEOUT,
        )

        with pytest.raises(ProviderUnavailable) as raised:
            closed.create_payment(payment_request(amount_minor=10000))

        assert raised.value.http_status is None
        assert "cannot connect" in raised.value.message

    def test_same_idempotency_key_returns_the_first_payment_and_creates_no_second(self, adapter, simulator):
        req = payment_request(amount_minor=43000)

        first = adapter.create_payment(req)
        second = adapter.create_payment(req)

        assert second.provider_reference == first.provider_reference
        assert second.raw_body == first.raw_body
        assert [p.provider_reference for p in simulator.payments()] == [first.provider_reference]
        assert [r.idempotency_key for r in simulator.received()] == [req.idempotency_key] * 2

    def test_same_idempotency_key_with_another_payload_is_rejected(self, adapter, simulator):
        req = payment_request(amount_minor=43000)
        adapter.create_payment(req)
        changed = payment_request(amount_minor=43001, idempotency_key=req.idempotency_key, attempt_id=req.attempt_id)

        with pytest.raises(ProviderRequestRejected) as raised:
            adapter.create_payment(changed)

        assert raised.value.error_code == "idempotency_key_reused"
        assert raised.value.http_status == 409
        assert len(simulator.payments()) == 1

    def test_retry_after_unavailable_with_the_same_key_collects_once(self, adapter, simulator):
        req = payment_request(amount_minor=20000)
        simulator.fail_next(1)

        with pytest.raises(ProviderUnavailable):
            adapter.create_payment(req)
        retried = adapter.create_payment(req)

        assert retried.status is ProviderStatus.SUCCEEDED
        assert len(simulator.payments()) == 1

    def test_a_retry_after_a_timeout_returns_the_success_not_a_second_payment(self, adapter, simulator):
        req = payment_request(amount_minor=30091)
        with pytest.raises(ProviderTimeout):
            adapter.create_payment(req)

        again = adapter.create_payment(req)

        assert again.status is ProviderStatus.SUCCEEDED
        assert len(simulator.payments()) == 1

    def test_unknown_references_are_not_found_not_errors(self, adapter):
        by_theirs = adapter.query_status(provider_reference="sim_pay_unknown")
        by_ours = adapter.query_status(merchant_reference=new_public_id("pa"))

        assert by_theirs.status is ProviderStatus.NOT_FOUND
        assert by_theirs.http_status == 404
        assert by_ours.status is ProviderStatus.NOT_FOUND

    def test_wrong_api_key_is_a_rejected_request(self, simulator):
        wrong = HttpProviderAdapter(
            base_url=simulator.base_url,
            provider_code="sim",
            api_key="sk_wrong",
            connect_timeout=0.5,
            read_timeout=READ_TIMEOUT,
        )

        with pytest.raises(ProviderRequestRejected) as raised:
            wrong.create_payment(payment_request(amount_minor=10000))

        assert (raised.value.http_status, raised.value.error_code) == (401, "unauthorized")
        assert simulator.payments() == []


class TestRefundsAndPayouts:
    def test_refund_of_a_captured_payment(self, adapter):
        payment = adapter.create_payment(payment_request(amount_minor=50000))
        req = ProviderRefundRequest(
            idempotency_key=new_idempotency_key(),
            refund_id=new_public_id("rf"),
            payment_provider_reference=payment.provider_reference,
            merchant_id=payment.merchant_id,
            amount_minor=20000,
            currency="IDR",
        )

        refund = adapter.refund(req)
        queried = adapter.query_status(merchant_reference=req.refund_id, kind=ProviderObjectKind.REFUND)

        assert refund.status is ProviderStatus.SUCCEEDED
        assert refund.provider_reference.startswith("sim_re_")
        assert refund.payment_provider_reference == payment.provider_reference
        assert (queried.status, queried.amount_minor, queried.kind) == (
            ProviderStatus.SUCCEEDED,
            20000,
            ProviderObjectKind.REFUND,
        )

    def test_refund_above_the_payment_is_rejected(self, adapter):
        payment = adapter.create_payment(payment_request(amount_minor=50000))

        with pytest.raises(ProviderRequestRejected) as raised:
            adapter.refund(
                ProviderRefundRequest(
                    idempotency_key=new_idempotency_key(),
                    refund_id=new_public_id("rf"),
                    payment_provider_reference=payment.provider_reference,
                    merchant_id=payment.merchant_id,
                    amount_minor=50001,
                    currency="IDR",
                )
            )

        assert raised.value.error_code == "amount_exceeds_payment"

    def test_payout_is_paid_and_can_be_queried(self, adapter):
        req = ProviderPayoutRequest(
            idempotency_key=new_idempotency_key(),
            payout_id=new_public_id("po"),
            merchant_id=new_public_id("m"),
            amount_minor=1_000_000,
            currency="PHP",
            beneficiary_token="ben_tok_01",
        )

        payout = adapter.payout(req)
        queried = adapter.query_status(provider_reference=payout.provider_reference, kind=ProviderObjectKind.PAYOUT)

        assert (payout.status, payout.provider_status) == (ProviderStatus.SUCCEEDED, "paid")
        assert (queried.merchant_reference, queried.amount_minor, queried.currency) == (req.payout_id, 1_000_000, "PHP")


class TestRequestsRefuseBadValues:
    def test_a_card_number_never_reaches_the_wire(self):
        with pytest.raises(ValueError, match="looks like a card number"):
            payment_request(amount_minor=10000, card_token="4111 1111 1111 1111")

    @pytest.mark.parametrize("amount", [100.0, 0, -5, True, "100"])
    def test_amounts_are_positive_integer_minor_units(self, amount):
        with pytest.raises(ValueError, match="minor units"):
            payment_request(amount_minor=amount)

    def test_unknown_currency_and_wrong_id_prefixes_are_refused(self):
        with pytest.raises(ValueError, match="currency"):
            payment_request(amount_minor=100, currency="XXY")
        with pytest.raises(ValueError, match="pa_"):
            payment_request(amount_minor=100, attempt_id="rf_01JD")


class _CannedHandler(BaseHTTPRequestHandler):
    answer: tuple[int, bytes] = (200, b"")

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def canned_provider():
    """A provider that answers every call with whatever the test sets in `server.answer`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CannedHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    adapter = HttpProviderAdapter(
        base_url=f"http://127.0.0.1:{server.server_address[1]}",
        provider_code="canned",
        api_key="k",
        connect_timeout=0.5,
        read_timeout=READ_TIMEOUT,
    )
    yield server, adapter
    server.shutdown()
    server.server_close()


class TestProtocolErrors:
    @pytest.mark.parametrize(
        "body",
        [
            b"<html>gateway</html>",
            b"[]",
            b'{"id": "x"}',
            b'{"id": "x", "status": "approved_maybe", "amount_minor": 100}',
            b'{"id": "x", "status": "succeeded", "amount_minor": 100.0}',
        ],
    )
    def test_an_answer_we_cannot_understand_is_a_protocol_error_with_the_body_kept(self, canned_provider, body):
        server, adapter = canned_provider
        server.answer = (200, body)

        with pytest.raises(ProviderProtocolError) as raised:
            adapter.create_payment(payment_request(amount_minor=10000))

        assert raised.value.code == "PROVIDER_PROTOCOL_ERROR"
        assert raised.value.raw_body == body

    def test_a_decline_carried_by_a_402_is_a_result(self, canned_provider):
        server, adapter = canned_provider
        server.answer = (402, b'{"id": "p_1", "status": "declined", "decline_code": "stolen_card", "amount_minor": 5}')

        result = adapter.create_payment(payment_request(amount_minor=10000))

        assert (result.status, result.decline_code, result.http_status) == (ProviderStatus.DECLINED, "stolen_card", 402)


class TestSignatures:
    NOW = dt.datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    BODY = b'{"id":"sev_1","type":"payment.succeeded","amount_minor":250000,"currency":"IDR"}'

    def header(self, *, secret=WEBHOOK_SECRET, at=None, body=None):
        stamp = int((at or self.NOW).timestamp())
        return sign(secret=secret, timestamp=stamp, body=self.BODY if body is None else body)

    def verdict(self, header, *, secret=WEBHOOK_SECRET, body=None, now=None):
        return verify(secret=secret, header=header, body=self.BODY if body is None else body, now=now or self.NOW)

    def test_header_shape(self):
        header = self.header()
        stamp, signature = header.split(",")
        assert stamp == f"t={int(self.NOW.timestamp())}"
        assert signature.startswith("v1=") and len(signature) == 3 + 64

    def test_valid(self):
        assert self.verdict(self.header()) is SignatureVerdict.VALID

    def test_tampered_body(self):
        tampered = self.BODY.replace(b"250000", b"950000")
        assert self.verdict(self.header(), body=tampered) is SignatureVerdict.BAD_SIGNATURE

    def test_wrong_secret(self):
        assert self.verdict(self.header(secret=b"whsec_other")) is SignatureVerdict.BAD_SIGNATURE

    def test_a_moved_timestamp_breaks_the_signature(self):
        header = self.header()
        signature = header.split(",", 1)[1]
        moved = f"t={int(self.NOW.timestamp()) + 60},{signature}"
        assert self.verdict(moved) is SignatureVerdict.BAD_SIGNATURE

    def test_expired_outside_the_replay_window(self):
        old = self.header(at=self.NOW - dt.timedelta(seconds=301))
        assert self.verdict(old) is SignatureVerdict.EXPIRED
        assert self.verdict(self.header(at=self.NOW - dt.timedelta(seconds=300))) is SignatureVerdict.VALID

    def test_a_future_timestamp_is_outside_the_window_too(self):
        future = self.header(at=self.NOW + dt.timedelta(seconds=301))
        assert self.verdict(future) is SignatureVerdict.EXPIRED

    def test_a_forgery_is_bad_even_when_also_stale(self):
        stale_forgery = self.header(secret=b"whsec_other", at=self.NOW - dt.timedelta(days=1))
        assert self.verdict(stale_forgery) is SignatureVerdict.BAD_SIGNATURE

    @pytest.mark.parametrize("header", [None, "", "   ", b""])
    def test_missing(self, header):
        assert self.verdict(header) is SignatureVerdict.MISSING

    @pytest.mark.parametrize(
        "header",
        [
            "garbage",
            "t=1763712000",
            "v1=" + "a" * 64,
            "t=abc,v1=" + "a" * 64,
            "t=1763712000,v1=not-hex",
            "t=1763712000,v1=" + "a" * 63,
            "t=1763712000,t=1763712001,v1=" + "a" * 64,
            "t=1763712000,v1=" + "a" * 64 + ",junk",
            "t=" + "9" * 5000 + ",v1=" + "a" * 64,
            b"t=1763712000,v1=\xff",
            12345,
        ],
    )
    def test_malformed_never_raises(self, header):
        assert self.verdict(header) is SignatureVerdict.MALFORMED

    def test_rotation_sender_signs_with_old_and_new(self):
        both = self.header(secret=[b"whsec_new", b"whsec_old"])

        assert both.count("v1=") == 2
        assert self.verdict(both, secret=b"whsec_old") is SignatureVerdict.VALID
        assert self.verdict(both, secret=b"whsec_new") is SignatureVerdict.VALID
        assert self.verdict(both, secret=b"whsec_retired") is SignatureVerdict.BAD_SIGNATURE

    def test_rotation_receiver_accepts_any_current_secret(self):
        from_old = self.header(secret=b"whsec_old")

        assert self.verdict(from_old, secret=[b"whsec_new", b"whsec_old"]) is SignatureVerdict.VALID
        assert self.verdict(from_old, secret=[b"whsec_new"]) is SignatureVerdict.BAD_SIGNATURE

    def test_no_usable_secret_fails_closed(self):
        assert self.verdict(self.header(), secret=[]) is SignatureVerdict.BAD_SIGNATURE
        assert self.verdict(self.header(), secret=b"") is SignatureVerdict.BAD_SIGNATURE
        with pytest.raises(ValueError):
            sign(secret=b"", timestamp=1, body=b"{}")

    def test_secrets_come_from_settings(self, settings):
        settings.PAYMENTS_WEBHOOK_SECRETS = {"sim": "whsec_new, whsec_old"}

        assert webhook_secrets_for(provider_code="sim") == (b"whsec_new", b"whsec_old")
        assert webhook_secrets_for(provider_code="other") == ()


class TestWebhooks:
    def test_send_webhook_delivers_a_verifiable_event(self, adapter, simulator, webhooks):
        req = payment_request(amount_minor=250000)
        payment = adapter.create_payment(req)

        delivery = simulator.send_webhook("payment.succeeded", payment.provider_reference)

        assert delivery.http_status == 200 and delivery.delivered
        received = webhooks.deliveries.get(timeout=1)
        assert received["path"] == "/webhooks/sim"
        assert received["body"] == delivery.body
        header = received["headers"][SIGNATURE_HEADER]
        now = dt.datetime.now(UTC)
        assert verify(secret=WEBHOOK_SECRET, header=header, body=received["body"], now=now) is SignatureVerdict.VALID
        assert verify(secret=b"whsec_other", header=header, body=received["body"], now=now) is (
            SignatureVerdict.BAD_SIGNATURE
        )
        event = json.loads(received["body"])
        assert event["id"].startswith("sev_")
        assert event["type"] == "payment.succeeded"
        assert (event["provider_reference"], event["merchant_reference"]) == (
            payment.provider_reference,
            req.attempt_id,
        )
        assert (event["amount_minor"], event["currency"], event["merchant_id"]) == (250000, "IDR", req.merchant_id)
        assert dt.datetime.fromisoformat(event["occurred_at"]).tzinfo is not None

    def test_a_duplicate_delivery_reuses_the_event_id(self, adapter, simulator, webhooks):
        payment = adapter.create_payment(payment_request(amount_minor=1000))

        first = simulator.send_webhook("payment.succeeded", payment.provider_reference)
        again = simulator.send_webhook("payment.succeeded", payment.provider_reference, event_id=first.event_id)

        assert first.event_id == again.event_id
        assert [json.loads(webhooks.deliveries.get(timeout=1)["body"])["id"] for _ in range(2)] == [first.event_id] * 2

    def test_a_payment_that_settles_later_sends_its_webhook(self, adapter, webhooks):
        req = payment_request(amount_minor=70092)

        created = adapter.create_payment(req)
        received = webhooks.deliveries.get(timeout=1)

        assert created.status is ProviderStatus.PENDING
        event = json.loads(received["body"])
        assert (event["type"], event["merchant_reference"], event["status"]) == (
            "payment.succeeded",
            req.attempt_id,
            "succeeded",
        )
        verdict = verify(
            secret=WEBHOOK_SECRET,
            header=received["headers"][SIGNATURE_HEADER],
            body=received["body"],
            now=dt.datetime.now(UTC),
        )
        assert verdict is SignatureVerdict.VALID

    def test_a_returned_payout_sends_payout_returned(self, adapter, webhooks):
        req = ProviderPayoutRequest(
            idempotency_key=new_idempotency_key(),
            payout_id=new_public_id("po"),
            merchant_id=new_public_id("m"),
            amount_minor=500096,
            currency="IDR",
            beneficiary_token="ben_tok_02",
        )

        paid = adapter.payout(req)
        event = json.loads(webhooks.deliveries.get(timeout=1)["body"])
        queried = adapter.query_status(provider_reference=paid.provider_reference, kind=ProviderObjectKind.PAYOUT)

        assert paid.provider_status == "paid"
        assert (event["type"], event["merchant_reference"]) == ("payout.returned", req.payout_id)
        assert (queried.status, queried.provider_status) == (ProviderStatus.FAILED, "returned")

    def test_a_delivery_in_flight_across_a_reset_is_not_recorded_in_the_fresh_history(
        self, adapter, simulator, webhooks
    ):
        payment = adapter.create_payment(payment_request(amount_minor=1000))
        webhooks.release = threading.Event()
        try:
            sending = threading.Thread(
                target=simulator.send_webhook, args=("payment.succeeded", payment.provider_reference)
            )
            sending.start()
            webhooks.deliveries.get(timeout=2)  # received; the simulator still waits for the answer
            simulator.reset()
            webhooks.release.set()
            sending.join(timeout=5)
        finally:
            webhooks.release = None
        assert not sending.is_alive()
        assert simulator.webhooks_sent() == []

    def test_a_signed_event_can_be_built_without_sending(self, adapter, simulator):
        payment = adapter.create_payment(payment_request(amount_minor=1000))
        stale = int(time.time()) - 3600

        event, body, headers = simulator.build_webhook(
            "payment.succeeded", payment.provider_reference, overrides={"amount_minor": 999}, timestamp=stale
        )

        assert json.loads(body) == event and event["amount_minor"] == 999
        verdict = verify(secret=WEBHOOK_SECRET, header=headers[SIGNATURE_HEADER], body=body, now=dt.datetime.now(UTC))
        assert verdict is SignatureVerdict.EXPIRED
        assert simulator.webhooks_sent() == []


def test_adapter_from_settings(settings):
    settings.PAYMENTS_PROVIDER_BASE_URL = "http://127.0.0.1:9999/psp"
    settings.PAYMENTS_PROVIDER_READ_TIMEOUT = 7

    adapter = provider_adapter_from_settings()

    assert (adapter.provider_code, adapter.base_url, adapter.read_timeout) == ("sim", "http://127.0.0.1:9999/psp", 7.0)
    assert "api_key" not in repr(adapter)
