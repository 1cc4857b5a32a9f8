"""Value formats the emulators check; they live in :mod:`reverse_etl.formats`, shared with the writers."""

from __future__ import annotations

from reverse_etl.formats import (
    COUNTRY_CODES,
    CURRENCY_CODES,
    is_country,
    is_currency,
    is_date,
    is_e164,
    is_email,
    is_timezone,
    parse_datetime,
)

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
]
