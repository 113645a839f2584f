"""The operator screens at the two widths people use (1280px laptops, 1920px desks) and with the
keyboard alone: every screen renders, nothing pushes the page sideways (a wide table scrolls inside
its own frame), and g-hotkeys, `/`, the search box and Tab get a person where they are going."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from payments.models import PaymentIntent
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_login_and_audit import sign_in

# Payment operations may open every one of these screens: payments, merchants, attempts, payouts,
# restrictions and the provider's raw events (payments.view_providereventraw for the webhook queue).
OPERATOR = "payops"
SEARCH_TERM = "Demo Coffee"

FOCUSABLE = "a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select, textarea"


@pytest.fixture
def demo_data(transactional_db):
    call_command("demo_seed")


def operator_screens() -> list[tuple[str, str, str]]:
    """(name, path, main heading) for each operator screen, against the seeded demo data."""
    refunded = PaymentIntent.objects.filter(refunded_minor__gt=0).order_by("public_id").first()
    assert refunded is not None, "the demo seeds refunded payments"
    return [
        ("home", reverse("home"), "Operations dashboard"),
        ("search", f"{reverse('search')}?q={SEARCH_TERM.replace(' ', '+')}", "Search"),
        ("payment", reverse("payments:payment_detail", args=[refunded.public_id]), f"Payment {refunded.public_id}"),
        ("merchants", reverse("payments:merchant_list"), "Merchants"),
        ("merchant", reverse("payments:merchant_detail", args=["m_demo_coffee"]), "Demo Coffee Roasters"),
        ("webhooks", reverse("payments:webhook_queue"), "Quarantined webhooks"),
        ("unknown", reverse("payments:unknown_queue"), "Unknown outcomes"),
        ("payout-holds", reverse("payments:payout_hold_queue"), "Payout holds"),
        ("freezes", reverse("payments:freeze_queue"), "Merchant freezes"),
    ]


def overflow(page) -> dict:
    """How far the page is wider than the window, and the widest elements sticking out of it."""
    return page.evaluate(
        """() => {
            const limit = window.innerWidth;
            const culprits = [];
            for (const el of document.querySelectorAll("body *")) {
                const right = el.getBoundingClientRect().right;
                if (right > limit + 0.5) {
                    culprits.push(`${el.tagName.toLowerCase()}.${el.className} right=${Math.round(right)}`);
                }
            }
            return {scrollWidth: document.documentElement.scrollWidth, innerWidth: limit,
                    culprits: culprits.slice(0, 8)};
        }"""
    )


def focus_ring(page) -> dict:
    return page.evaluate(
        """() => {
            const el = document.activeElement, style = getComputedStyle(el);
            return {tag: el.tagName.toLowerCase(), id: el.id, text: (el.innerText || el.value || "").trim(),
                    inMain: !!el.closest("main"), outline: style.outlineStyle, outlineWidth: style.outlineWidth,
                    boxShadow: style.boxShadow};
        }"""
    )


@pytest.mark.parametrize("width", [1280, 1920])
def test_operator_screens_fit_the_window(browser, live_server, demo_data, width):
    # given payment operations signed in on a window of that width
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        sign_in(page, live_server, OPERATOR)
        ARTIFACTS.mkdir(exist_ok=True)

        # when each operator screen is opened
        for name, path, heading in operator_screens():
            response = page.goto(f"{live_server.url}{path}")

            # then it renders with its heading, and the page itself is no wider than the window
            assert response is not None and response.status == 200, (name, response and response.status)
            assert page.locator("main h1").first.inner_text().strip().startswith(heading), name
            page.screenshot(path=str(ARTIFACTS / f"screen-{name}-{width}.png"), full_page=True)
            measured = overflow(page)
            assert measured["scrollWidth"] <= measured["innerWidth"], (name, width, measured)
            if name == "payment":
                # the ten-column timeline shows every column (state changes, references, evidence) in view
                frame = page.locator(".table-wrap", has=page.locator("[data-testid=timeline]"))
                assert frame.evaluate("f => f.scrollWidth - f.clientWidth") <= 1, width
    finally:
        context.close()


def test_an_operator_works_the_screens_with_the_keyboard_alone(page, live_server, demo_data, screenshot):
    sign_in(page, live_server, OPERATOR)
    url = live_server.url

    def go(key: str, url_name: str) -> None:
        page.keyboard.press("g")
        page.keyboard.press(key)
        page.wait_for_url(f"{url}{reverse(url_name)}")

    # g then a screen's key opens that screen, from wherever one is
    for key, url_name in (
        ("w", "payments:webhook_queue"), ("u", "payments:unknown_queue"), ("o", "payments:payout_hold_queue"),
        ("z", "payments:freeze_queue"), ("h", "home"),
    ):  # fmt: skip
        go(key, url_name)
        assert page.evaluate("location.pathname + location.search") == reverse(url_name), key

    # the merchant list opens with the cursor in its filter; Shift+Tab leaves it (so the hotkeys work)
    # and / puts the cursor back in the first field of the filter bar
    go("m", "payments:merchant_list")
    filter_focused = "document.activeElement === document.querySelector('.filter-bar input')"
    assert page.evaluate(filter_focused) is True
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(filter_focused) is False
    assert page.evaluate("document.activeElement.tagName") == "A"
    page.keyboard.press("/")
    assert page.evaluate(filter_focused) is True
    page.keyboard.type("Demo")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}{reverse('payments:merchant_list')}?*q=Demo*")
    merchants = page.locator("[data-testid=merchant-table] tbody tr[data-merchant]")
    assert sorted(merchants.evaluate_all("rows => rows.map(r => r.dataset.merchant)")) == [
        "m_demo_books",
        "m_demo_coffee",
    ]

    # g p opens the payment lookup with the cursor in its box: an id and Enter open the payment
    page.keyboard.press("Shift+Tab")
    refunded = PaymentIntent.objects.filter(refunded_minor__gt=0).order_by("public_id").first()
    go("p", "payments:payment_lookup")
    assert page.evaluate("document.activeElement.id") == "payment-id"
    page.keyboard.type(refunded.public_id)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}{reverse('payments:payment_detail', args=[refunded.public_id])}")
    assert refunded.public_id in page.inner_text("main h1")

    # g s opens search with the cursor in its box: type a query, Enter, and the results are shown
    go("s", "search")
    assert page.evaluate("document.activeElement === document.querySelector('main input[name=q]')") is True
    page.keyboard.type(SEARCH_TERM)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}{reverse('search')}?q=Demo+Coffee*")
    assert "Demo Coffee" in page.inner_text("[data-testid=search-summary]")
    merchant_rows = page.locator("[data-testid=group] tr[data-kind=merchant]")
    assert merchant_rows.evaluate_all("rows => rows.map(r => r.dataset.id)") == ["m_demo_coffee"]
    screenshot("keyboard-search-results")

    # the results page keeps the cursor in the box; Escape leaves it and the hotkeys work again
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement === document.body") is True
    go("w", "payments:webhook_queue")

    # Tab from the top of a page: first the skip link, which takes the focus into the content, whose
    # first link or button then shows a focus ring
    page.keyboard.press("Tab")
    skip = focus_ring(page)
    assert (skip["tag"], skip["text"]) == ("a", "Skip to content"), skip
    assert skip["outline"] != "none" or skip["boxShadow"] != "none", skip
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    ring = focus_ring(page)
    first_in_main = page.evaluate(
        "sel => document.querySelector('main').querySelector(sel) === document.activeElement", FOCUSABLE
    )
    assert first_in_main is True, ring
    assert ring["inMain"] and ring["text"] == "Clear filters", ring
    assert (ring["outline"] != "none" and ring["outlineWidth"] != "0px") or ring["boxShadow"] != "none", ring
    screenshot("keyboard-focus-first-action")
