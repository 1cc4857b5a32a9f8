"""Value formats the destination APIs check: ISO codes, ISO 8601 times, addresses.

Shared by the emulators (so each is strict in the same way) and by the client-side validation of
the writers (so a row the emulator would refuse is refused before it is sent). Every check is a cheap predicate
(precompiled regexes, frozensets), because emulators run them once per field of every object.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import date, datetime
from functools import cache

__all__ = [
    "COUNTRY_CODES",
    "CURRENCY_CODES",
    "is_country",
    "is_currency",
    "is_date",
    "is_e164",
    "is_email",
    "is_timezone",
    "parse_datetime",
    "timezones",
]

# ISO 3166-1 alpha-2: the 249 officially assigned codes (user-assigned ones such as XK are not).
COUNTRY_CODES: frozenset[str] = frozenset(
    ["AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW"]
)

# ISO 4217 codes in current use, including fund and precious-metal codes; XTS (testing) and
# XXX (no currency) are left out because no real purchase is made in them.
CURRENCY_CODES: frozenset[str] = frozenset(
    ["AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF", "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW", "ZWG", "ZWL"]
)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# ISO 8601 extended format with a time part: what APIs mean by "an ISO 8601 time". The basic
# format (20240101T000000) and date-only values are refused even though fromisoformat takes them.
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)
_FRACTION = re.compile(r"([.,])(\d+)")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_E164 = re.compile(r"\+[1-9]\d{1,14}")


def is_country(value: object) -> bool:
    """An ISO 3166-1 alpha-2 code, upper case."""
    return isinstance(value, str) and value in COUNTRY_CODES


def is_currency(value: object) -> bool:
    """An ISO 4217 currency code, upper case."""
    return isinstance(value, str) and value in CURRENCY_CODES


def is_date(value: object) -> bool:
    """A real calendar date written ``YYYY-MM-DD``."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def parse_datetime(value: object) -> datetime | None:
    """The moment an ISO 8601 date-time string names, or None if it is not one.

    Values without an offset come back naive; callers decide what zone they mean.
    """
    if not isinstance(value, str) or not _DATETIME.fullmatch(value):
        return None
    text = value.upper().replace(",", ".")
    # fromisoformat takes at most 6 fraction digits; APIs commonly send 9 (nanoseconds)
    text = _FRACTION.sub(lambda m: "." + m.group(2)[:6].ljust(3, "0"), text, count=1)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def is_email(value: object) -> bool:
    """Looks like ``local@domain.tld`` (a loose check, like most APIs make)."""
    return isinstance(value, str) and len(value) <= 254 and _EMAIL.fullmatch(value) is not None


def is_e164(value: object) -> bool:
    """A phone number in E.164 form: ``+`` then up to 15 digits."""
    return isinstance(value, str) and _E164.fullmatch(value) is not None


@cache
def _timezones() -> frozenset[str]:
    # reading the tz database takes tens of milliseconds, so only once and only when needed
    return frozenset(zoneinfo.available_timezones())


def timezones() -> frozenset[str]:
    """Every IANA time zone name this system's tz database knows."""
    return _timezones()


def is_timezone(value: object) -> bool:
    """An IANA time zone name known to this system's tz database (``America/New_York``)."""
    return isinstance(value, str) and value in _timezones()
