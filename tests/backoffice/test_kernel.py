"""The shared kernel: money, business clock, public ids, masking, CSV safety."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backoffice import clock
from backoffice.csv_export import csv_lines, neutralise_cell
from backoffice.ids import new_idempotency_key, new_public_id, parse_public_id
from backoffice.masking import find_card_numbers, mask_card_numbers, mask_snapshot, mask_value
from backoffice.money import CurrencyError, Money

UTC = dt.UTC


class TestMoney:
    def test_formats_by_currency_exponent(self):
        assert str(Money(250000, "IDR")) == "2,500.00 IDR"
        assert str(Money(2500, "JPY")) == "2,500 JPY"
        assert str(Money(-1234567, "KWD")) == "-1,234.567 KWD"
        assert Money(5, "USD").format_amount() == "0.05"

    def test_parse_is_exact_and_refuses_excess_precision(self):
        assert Money.parse("1,234.5", "USD") == Money(123450, "USD")
        assert Money.parse("-0.01", "USD") == Money(-1, "USD")
        assert Money.parse("2500", "JPY") == Money(2500, "JPY")
        with pytest.raises(ValueError, match="JPY has 0 decimal places"):
            Money.parse("1.5", "JPY")
        with pytest.raises(ValueError, match="not an amount"):
            Money.parse("1e3", "USD")
        assert Money.from_decimal(Decimal("12.340"), "USD") == Money(1234, "USD")

    def test_arithmetic_only_within_one_currency(self):
        assert Money(100, "PHP") + Money(25, "PHP") == Money(125, "PHP")
        assert -Money(100, "PHP") == Money(-100, "PHP")
        with pytest.raises(CurrencyError):
            Money(100, "PHP") + Money(100, "USD")
        with pytest.raises(CurrencyError):
            _ = Money(100, "PHP") < Money(100, "USD")

    def test_refuses_floats_and_unknown_currencies(self):
        with pytest.raises(TypeError):
            Money(1.5, "USD")
        with pytest.raises(TypeError):
            Money(True, "USD")
        with pytest.raises(CurrencyError, match="unknown ISO 4217 currency 'XYZ'"):
            Money(1, "XYZ")

    @given(
        st.integers(min_value=-(10**15), max_value=10**15),
        st.sampled_from(["USD", "JPY", "KWD", "IDR", "CLF"]),
    )
    def test_format_then_parse_round_trips(self, amount, currency):
        money = Money(amount, currency)
        assert Money.parse(money.format_amount(), currency) == money


class TestBusinessClock:
    def test_manila_midnight_cutoff(self, settings):
        settings.BUSINESS_TIMEZONE = "Asia/Manila"
        settings.BUSINESS_DAY_CUTOFF = dt.time(0, 0)
        # 15:59:59 UTC on the 20th is 23:59:59 on the 20th in Manila (UTC+8).
        now = dt.datetime(2026, 11, 20, 15, 59, 59, tzinfo=UTC)
        assert clock.business_date(now) == dt.date(2026, 11, 20)
        assert clock.business_day_end(now) == dt.datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
        assert clock.business_day_start(now) == dt.datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
        # One second later a new business day has begun.
        later = now + dt.timedelta(seconds=1)
        assert clock.business_date(later) == dt.date(2026, 11, 21)
        assert clock.business_day_end(later) == dt.datetime(2026, 11, 21, 16, 0, tzinfo=UTC)

    def test_afternoon_cutoff(self, settings):
        settings.BUSINESS_TIMEZONE = "Asia/Manila"
        settings.BUSINESS_DAY_CUTOFF = dt.time(17, 0)
        before = dt.datetime(2026, 11, 20, 8, 59, tzinfo=UTC)  # 16:59 Manila
        after = dt.datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # 17:00 Manila
        assert clock.business_date(before) == dt.date(2026, 11, 20)
        assert clock.business_date(after) == dt.date(2026, 11, 21)

    def test_naive_time_refused(self):
        with pytest.raises(ValueError, match="aware"):
            clock.business_date(dt.datetime(2026, 1, 1))


class TestIds:
    def test_prefixed_sortable_ids(self):
        first, second = new_public_id("pi"), new_public_id("pi")
        assert first.startswith("pi_") and len(first) == 29
        assert parse_public_id(first) == ("pi", first[3:])
        assert first != second
        assert parse_public_id("xx_" + first[3:]) is None
        assert parse_public_id("pi_short") is None
        with pytest.raises(ValueError):
            new_public_id("nope")
        assert new_idempotency_key() != new_idempotency_key()


class TestMasking:
    VISA = "4111 1111 1111 1111"

    def test_card_numbers_found_only_when_luhn_valid(self):
        assert find_card_numbers(f"card {self.VISA} declined") == [self.VISA]
        assert find_card_numbers("order 4111111111111112 ref") == []  # fails Luhn
        assert find_card_numbers("ref 123456789012") == []  # too short
        assert mask_card_numbers(f"card {self.VISA}.") == "card ****1111."

    def test_standalone_skips_digits_inside_an_identifier(self):
        # A provider's hex reference holding a Luhn-valid run: masking it would corrupt the reference.
        pan = self.VISA.replace(" ", "")
        for identifier in (f"pay_ab{pan}c9", f"pay_{pan}f", f"ref-x{pan}"):
            assert find_card_numbers(identifier, standalone=True) == []
            assert mask_card_numbers(identifier, standalone=True) == identifier
            assert find_card_numbers(identifier) != []  # operator input is checked more widely
        document = f'{{"pan":"{pan}","ref":"pay_{pan}f","spaced":"{self.VISA}"}}'
        assert mask_card_numbers(document, standalone=True) == (
            '{"pan":"****1111","ref":"pay_' + pan + 'f","spaced":"****1111"}'
        )

    def test_snapshot_masks_secrets_personal_data_and_pans(self):
        snap = {"password": "hunter2", "email": "maria@example.com", "phone": "+639171234567",
                "note": f"paid with {self.VISA}", "nested": [{"cvc": "123", "amount_minor": 5}]}  # fmt: skip
        assert mask_snapshot(snap) == {
            "password": "[REDACTED]", "email": "m***@example.com", "phone": "*********4567",
            "note": "paid with ****1111", "nested": [{"cvc": "[REDACTED]", "amount_minor": 5}],
        }  # fmt: skip
        assert mask_value("maria@example.com", "email") == "m***@example.com"
        assert mask_value(self.VISA, "card") == "****1111"


class TestCsvSafety:
    @pytest.mark.parametrize("dangerous", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", '=HYPERLINK("x")'])
    def test_formula_cells_are_neutralised(self, dangerous):
        assert neutralise_cell(dangerous) == "'" + dangerous

    def test_numbers_stay_numbers(self):
        assert neutralise_cell(-1250) == -1250
        assert neutralise_cell(Decimal("-12.50")) == Decimal("-12.50")
        assert neutralise_cell("-1250") == "-1250"
        assert neutralise_cell("+12.5") == "+12.5"
        assert neutralise_cell("plain") == "plain"
        assert neutralise_cell(None) == ""

    def test_lines(self):
        assert list(csv_lines(["a", "b"], [[1, "=x"], [-2, "ok"]])) == ["a,b\r\n", "1,'=x\r\n", "-2,ok\r\n"]
