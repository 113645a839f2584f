"""Money as integer minor units of an ISO 4217 currency.

Never floats. Arithmetic is only defined within one currency; formatting and parsing use the
currency's exponent (IDR 2, JPY 0, KWD 3). An unknown currency is refused rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# ISO 4217 minor units (exponents) for active currency codes. Data, not logic: extend here.
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD "
    "CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ "
    "GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL "
    "MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR "
    "PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT "
    "TOP TRY TTD TWD TZS UAH USD UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 0 for code in _ZERO.split()},
    **{code: 2 for code in _TWO.split()},
    **{code: 3 for code in _THREE.split()},
    **{code: 4 for code in _FOUR.split()},
}
CURRENCY_CHOICES = sorted((code, code) for code in CURRENCY_EXPONENTS)

_AMOUNT = re.compile(r"^(?P<sign>-)?(?P<int>\d{1,18})(?:\.(?P<frac>\d+))?$")


class CurrencyError(ValueError):
    pass


def currency_exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise CurrencyError(f"unknown ISO 4217 currency {currency!r}") from None


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int:
            raise TypeError(f"amount_minor must be an int of minor units, got {type(self.amount_minor).__name__}")
        currency_exponent(self.currency)

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """Parse a major-unit decimal string ("1,234.50") exactly; refuse excess precision."""
        exponent = currency_exponent(currency)
        cleaned = text.strip().replace(",", "").replace(" ", "")
        match = _AMOUNT.match(cleaned)
        if not match:
            raise ValueError(f"{text!r} is not an amount (digits with an optional decimal point)")
        frac = match["frac"] or ""
        if len(frac.rstrip("0")) > exponent:
            raise ValueError(f"{currency} has {exponent} decimal places; {text!r} has more")
        frac = (frac + "0" * exponent)[:exponent]
        minor = int(match["int"]) * 10**exponent + (int(frac) if frac else 0)
        return cls(-minor if match["sign"] else minor, currency)

    @classmethod
    def from_decimal(cls, value: Decimal, currency: str) -> Money:
        exponent = currency_exponent(currency)
        try:
            scaled = value.scaleb(exponent)
        except InvalidOperation as exc:
            raise ValueError(f"{value!r} is not a finite amount") from exc
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{currency} has {exponent} decimal places; {value} has more")
        return cls(int(scaled), currency)

    # --- arithmetic (one currency only) -----------------------------------------------------
    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyError(f"cannot combine {self.currency} with {other.currency}")
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.amount_minor + self._same(other).amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.amount_minor - self._same(other).amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount_minor), self.currency)

    def __lt__(self, other: Money) -> bool:
        return self.amount_minor < self._same(other).amount_minor

    def __le__(self, other: Money) -> bool:
        return self.amount_minor <= self._same(other).amount_minor

    def __gt__(self, other: Money) -> bool:
        return self.amount_minor > self._same(other).amount_minor

    def __ge__(self, other: Money) -> bool:
        return self.amount_minor >= self._same(other).amount_minor

    def __bool__(self) -> bool:
        return self.amount_minor != 0

    # --- presentation -----------------------------------------------------------------------
    @property
    def exponent(self) -> int:
        return currency_exponent(self.currency)

    def to_decimal(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-self.exponent)

    def format_amount(self) -> str:
        """ "1,234.50" for USD, "1,235" for JPY: grouped, with exactly the currency's decimals."""
        exponent = self.exponent
        sign = "-" if self.amount_minor < 0 else ""
        whole, frac = divmod(abs(self.amount_minor), 10**exponent)
        text = f"{whole:,}"
        if exponent:
            text += "." + str(frac).rjust(exponent, "0")
        return sign + text

    def __str__(self) -> str:
        return f"{self.format_amount()} {self.currency}"
