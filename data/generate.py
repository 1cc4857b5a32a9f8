"""Generate the example project's data: data/users.csv, data/orders.csv, data/app_events.csv.

Regenerate (from the repository root; stdlib only, no network):

    python data/generate.py            # writes the three CSVs next to this file
    python data/generate.py --out DIR  # or into DIR
    git diff --exit-code data/         # the output is byte-identical run to run

Everything is drawn from one ``random.Random(42)`` and placed before one fixed reference date,
2026-11-01 00:00:00 UTC (``REFERENCE``), the same "as of" date the models use (see
models/user_activity.sql), so audience sizes never depend on when you run it. All timestamps
are naive UTC, written ``YYYY-MM-DD HH:MM:SS``.

The store is a small online electronics shop with a mobile app:
- users.csv       ~3,000 sign-ups over two years, growing over time; user ids follow signup order.
- orders.csv      ~12,000 orders from every channel (web and app); a few big spenders, ~6% refunded.
- app_events.csv  ~25,000 mobile-app events in sessions (session_start, view_item, add_to_cart, ...).
Some users never came back after signing up, some buy only on the web (no app events), and some
were active and then lapsed 45+ days before the reference date. The tuning targets, checked by
``summary()``: high value (completed spend > $1,000) ~5-10% of users, churn risk (no activity
for 45+ days) ~10-15%, new sign-ups in the last 30 days ~3-6%.
"""

from __future__ import annotations

import argparse
import csv
import random
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

SEED = 42
REFERENCE = datetime(2026, 11, 1)
HISTORY_DAYS = 730
N_USERS = 3000

HIGH_VALUE_THRESHOLD_CENTS = 100_000  # models/high_value_customers.sql: lifetime value > 1000
CHURN_AFTER_DAYS = 45  # models/churn_risk.sql
NEW_SIGNUP_DAYS = 30  # models/new_signups.sql

P_NEVER_ACTIVE = 0.08  # signed up, never opened the app, never ordered
P_WEB_ONLY = 0.20  # of the users who were active: orders only, no app events
P_APP_BUYER = 0.62  # of the app users: placed at least one order
P_LAPSED = 0.15  # of the active users who signed up long enough ago: went quiet 45+ days ago
P_REFUND = 0.06

# country, weight, name locale
COUNTRIES: Sequence[tuple[str, float, str]] = (
    ("US", 34, "en"),
    ("GB", 12, "en"),
    ("DE", 10, "de"),
    ("FR", 8, "fr"),
    ("CA", 7, "en"),
    ("AU", 6, "en"),
    ("NL", 5, "nl"),
    ("SE", 4, "nordic"),
    ("ES", 3, "es"),
    ("IT", 3, "it"),
    ("IE", 2, "en"),
    ("DK", 1.5, "nordic"),
    ("NO", 1.5, "nordic"),
    ("BR", 1.5, "pt"),
    ("JP", 1.5, "ja"),
)

# locale -> (first names, last names), whitespace-separated; "_" stands for a space inside a name.
NAMES: dict[str, tuple[str, str]] = {
    "en": (
        "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Susan Richard "
        "Jessica Joseph Sarah Thomas Karen Daniel Emily Matthew Olivia Noah Emma Liam Ava Ethan Sophie "
        "Oliver Grace Jack Chloe Harry Lucy Aiden Priya Wei Fatima Mohammed Aisha",
        "Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Anderson Thomas Moore Jackson "
        "Martin Lee Thompson White Harris Clark Lewis Walker Hall Young King Wright Scott Green Baker "
        "Evans Hughes Roberts O'Brien Murphy Kelly Patel Khan Chen Nguyen Singh Campbell",
    ),
    "de": (
        "Lukas Anna Leon Hannah Finn Lea Jonas Lena Paul Mia Felix Emma Maximilian Sophie Elias Laura "
        "Jürgen Sabine Stefan Katrin Tobias Julia Niklas Marie",
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Bauer Richter "
        "Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange",
    ),
    "fr": (
        "Louis Camille Gabriel Léa Hugo Chloé Arthur Manon Jules Inès Lucas Zoé Théo Louise Nathan "
        "Élodie Antoine Juliette Mathis Clémence",
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre "
        "Michel Garcia David Bertrand Roux Vincent Fournier",
    ),
    "nl": (
        "Daan Emma Sem Julia Lucas Tess Levi Sophie Finn Anna Milan Sara Bram Fleur Thijs Lotte Ruben "
        "Eva Jesse Noor",
        "de_Jong Jansen de_Vries van_den_Berg van_Dijk Bakker Janssen Visser Smit Meijer de_Boer Mulder "
        "de_Groot Bos Vos Peters Hendriks van_Leeuwen Dekker Brouwer",
    ),
    "nordic": (
        "Erik Astrid Lars Ingrid Nils Elsa Oskar Maja Anders Freja Johan Sofia Magnus Ida Mikkel Nora "
        "Henrik Sigrid Emil Linnea",
        "Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsen Hansen Jensen Nielsen Pedersen "
        "Lindqvist Berg Dahl Holm Lund Svensson Persson Strand Haugen",
    ),
    "es": (
        "Hugo Lucía Martín Sofía Pablo María Daniel Paula Alejandro Carmen Javier Elena Diego Marta",
        "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz",
    ),
    "it": (
        "Leonardo Sofia Francesco Giulia Alessandro Aurora Lorenzo Alice Matteo Ginevra Andrea Chiara",
        "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti",
    ),
    "pt": (
        "Miguel Alice Arthur Helena Gael Laura Heitor Valentina Davi Beatriz Bernardo Júlia",
        "Silva Santos Oliveira Souza Rodrigues Ferreira Alves Pereira Lima Gomes Costa Ribeiro",
    ),
    "ja": (
        "Haruto Yui Sota Hina Yuto Mei Riku Sakura Ren Aoi Kaito Yuna",
        "Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato Yoshida Yamada",
    ),
}

PLANS: Sequence[tuple[str, float, float]] = (  # plan, weight, spend multiplier
    ("free", 70, 1.0),
    ("pro", 24, 1.5),
    ("enterprise", 6, 2.6),
)

CATALOG: Sequence[tuple[str, int]] = sorted(
    (
        ("CBL-USBC-1M", 999),
        ("CBL-USBC-2M", 1499),
        ("CBL-LIGHTNING-1M", 1299),
        ("SCRN-GLASS-2PK", 1799),
        ("ADP-USBC-20W", 1999),
        ("CASE-PHONE-CLR", 2499),
        ("GIFT-25", 2500),
        ("MOUSE-WL-BASIC", 2999),
        ("WTCH-BAND-SPORT", 3900),
        ("ADP-USBC-65W", 3999),
        ("SPK-BT-MINI", 4900),
        ("WARR-2Y-STD", 4900),
        ("CASE-PHONE-LTHR", 4999),
        ("EAR-WL-BASIC", 5900),
        ("STND-LAPTOP-ALU", 5999),
        ("HUB-USBC-7IN1", 6999),
        ("CAM-WEB-1080", 7900),
        ("KBD-WL-COMPACT", 7999),
        ("MOUSE-WL-PRO", 8999),
        ("GIFT-100", 10000),
        ("SSD-EXT-1TB", 11900),
        ("WARR-3Y-PLUS", 12900),
        ("KBD-MECH-TKL", 14900),
        ("EAR-WL-ANC", 17900),
        ("CAM-WEB-4K", 18900),
        ("SPK-BT-XL", 19900),
        ("WTCH-FIT-2", 22900),
        ("TAB-10-64GB", 29900),
        ("HP-OVER-ANC", 32900),
        ("SSD-EXT-4TB", 32900),
        ("MON-27-QHD", 34900),
        ("RTR-WIFI6-MESH3", 39900),
        ("MON-32-4K", 64900),
        ("PHN-6-128GB", 69900),
        ("TAB-12-256GB", 79900),
        ("LPT-14-AIR", 109900),
        ("PHN-6PRO-256GB", 114900),
        ("LPT-16-PRO", 189900),
    ),
    key=lambda item: (item[1], item[0]),
)
_PRICES = [price for _, price in CATALOG]

# event name -> chance it happens (again) within a session; session_start always opens one.
SESSION_STEPS: Sequence[tuple[str, float]] = (
    ("view_item", 0.55),
    ("search", 0.25),
    ("add_to_cart", 0.22),
    ("begin_checkout", 0.5),
    ("share_item", 0.04),
)


@dataclass
class User:
    signup_at: datetime
    country: str
    locale: str
    plan: str
    spend_multiplier: float
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    dob: date | None = None
    marketing_opt_in: bool = False
    user_id: str = ""
    active_until: datetime | None = None  # None: never active after signing up
    uses_app: bool = False
    buys: bool = False
    orders: list[tuple[datetime, str, int, str]] = field(default_factory=list)
    events: list[tuple[datetime, str]] = field(default_factory=list)


def weighted(rng: random.Random, items: Sequence[tuple], weight_index: int = 1) -> tuple:
    return rng.choices(items, weights=[item[weight_index] for item in items])[0]


def random_time(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A second-resolution instant in [start, end)."""
    span = max(1, int((end - start).total_seconds()))
    return start + timedelta(seconds=rng.randrange(span))


def stochastic_round(rng: random.Random, x: float) -> int:
    whole = int(x)
    return whole + (1 if rng.random() < x - whole else 0)


def ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def signup_time(rng: random.Random) -> datetime:
    """Sign-ups grow over the two years: the rate rises linearly from 0.8x to 1.2x of the mean."""
    while True:
        x = rng.random()  # 0 = two years ago, 1 = the reference date
        if rng.random() * 1.2 < 0.8 + 0.4 * x:
            return REFERENCE - timedelta(seconds=max(1, int(HISTORY_DAYS * 86400 * (1 - x))))


def make_users(rng: random.Random) -> list[User]:
    users = []
    taken_emails: set[str] = set()
    for _ in range(N_USERS):
        country, _, locale = weighted(rng, COUNTRIES)
        plan, _, multiplier = weighted(rng, PLANS)
        user = User(signup_time(rng), country, locale, plan, multiplier)
        firsts, lasts = NAMES[locale]
        user.first_name = rng.choice(firsts.split())
        user.last_name = rng.choice(lasts.split()).replace("_", " ")
        user.email = unique_email(rng, user, taken_emails)
        if rng.random() < 0.88:  # the rest never told us
            age_days = int(rng.triangular(18, 75, 31) * 365.25)
            user.dob = (REFERENCE - timedelta(days=age_days + rng.randrange(365))).date()
        user.marketing_opt_in = rng.random() < 0.58
        users.append(user)
    users.sort(key=lambda u: u.signup_at)  # ids follow signup order, like an auto-increment key
    for number, user in enumerate(users, start=1):
        user.user_id = f"u_{number:06d}"
    return users


def unique_email(rng: random.Random, user: User, taken: set[str]) -> str:
    first, last = ascii_slug(user.first_name), ascii_slug(user.last_name)
    local = rng.choice(
        (
            f"{first}.{last}",
            f"{first}{last}",
            f"{first[0]}.{last}",
            f"{first}_{last}",
            f"{first}.{last}{rng.randrange(1, 99)}",
            f"{first}{rng.randrange(70, 100)}",
        )
    )
    candidate, n = local, 1
    while candidate in taken:
        n += 1
        candidate = f"{local}{n}"
    taken.add(candidate)
    email = f"{candidate}@example.com"
    if rng.random() < 0.03:  # typed with capitals; staging lower-cases
        email = email[:1].upper() + email[1:].replace("@example.com", "@Example.com")
    return email


def plan_lifecycles(rng: random.Random, users: Iterable[User]) -> None:
    """Decide who is active, until when, and through which channel."""
    earliest_lapse = REFERENCE - timedelta(days=CHURN_AFTER_DAYS + 1)
    for user in users:
        if rng.random() < P_NEVER_ACTIVE:
            continue
        can_lapse = user.signup_at + timedelta(days=7) < earliest_lapse
        if can_lapse and rng.random() < P_LAPSED:
            user.active_until = random_time(rng, user.signup_at + timedelta(days=7), earliest_lapse)
        else:
            user.active_until = REFERENCE
        user.uses_app = rng.random() >= P_WEB_ONLY
        user.buys = not user.uses_app or rng.random() < P_APP_BUYER


def recent_window_start(user: User) -> datetime:
    """Active users are seen at least once in the last 44 days (or since they signed up)."""
    return max(user.signup_at, REFERENCE - timedelta(days=CHURN_AFTER_DAYS - 1))


def make_sessions(rng: random.Random, user: User) -> None:
    assert user.active_until is not None
    span_days = max(1.0, (user.active_until - user.signup_at).total_seconds() / 86400)
    sessions_per_month = rng.lognormvariate(-1.7, 1.0)
    n_sessions = min(120, max(1, stochastic_round(rng, sessions_per_month * span_days / 30)))
    starts = [user.signup_at + timedelta(minutes=rng.randrange(1, 30))]  # first open right after signup
    starts += [random_time(rng, user.signup_at, user.active_until) for _ in range(n_sessions - 1)]
    if user.active_until == REFERENCE and max(starts) < recent_window_start(user):
        starts.append(random_time(rng, recent_window_start(user), REFERENCE))
    for start in starts:
        at = start
        user.events.append((at, "session_start"))
        in_cart = False
        for name, p in SESSION_STEPS:
            if name == "begin_checkout" and not in_cart:
                continue
            while rng.random() < p:
                at += timedelta(seconds=rng.randrange(5, 240))
                user.events.append((at, name))
                in_cart = in_cart or name == "add_to_cart"
                if name != "view_item":
                    break
    user.events = [(at, name) for at, name in user.events if at < REFERENCE]


def make_orders(rng: random.Random, user: User) -> None:
    assert user.active_until is not None
    spend_level = rng.lognormvariate(3.55, 0.75) * user.spend_multiplier  # typical basket in dollars
    span_days = max(1.0, (user.active_until - user.signup_at).total_seconds() / 86400)
    frequency = rng.lognormvariate(-0.88, 0.85)  # orders a month
    n_orders = min(80, max(1, stochastic_round(rng, frequency * span_days / 30)))
    times = [random_time(rng, user.signup_at, user.active_until) for _ in range(n_orders)]
    if user.active_until == REFERENCE and not user.uses_app and max(times) < recent_window_start(user):
        times[-1] = random_time(rng, recent_window_start(user), REFERENCE)
    for at in times:
        target_cents = spend_level * rng.lognormvariate(0, 0.6) * 100
        index = min(len(CATALOG) - 1, bisect_left(_PRICES, target_cents) + rng.randint(-2, 1))
        sku, price = CATALOG[max(0, index)]
        quantity = 1 if price > 10000 else rng.choices((1, 2, 3), weights=(85, 12, 3))[0]
        discount = rng.choices((0, 10, 15), weights=(80, 15, 5))[0]
        cents = price * quantity * (100 - discount) // 100
        status = "refunded" if rng.random() < P_REFUND else "completed"
        user.orders.append((at, sku, cents, status))


def dollars(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")  # "\n", not csv's "\r\n": clean git diffs
        writer.writerow(header)
        writer.writerows(rows)


def generate(out: Path) -> list[User]:
    rng = random.Random(SEED)
    users = make_users(rng)
    plan_lifecycles(rng, users)
    for user in users:
        if user.active_until is None:
            continue
        if user.uses_app:
            make_sessions(rng, user)
        if user.buys:
            make_orders(rng, user)

    out.mkdir(parents=True, exist_ok=True)
    write_csv(
        out / "users.csv",
        (
            "user_id",
            "email",
            "first_name",
            "last_name",
            "country",
            "plan",
            "dob",
            "signup_at",
            "marketing_opt_in",
        ),
        (
            (
                u.user_id,
                u.email,
                u.first_name,
                u.last_name,
                u.country,
                u.plan,
                u.dob.isoformat() if u.dob else "",
                stamp(u.signup_at),
                str(u.marketing_opt_in).lower(),
            )
            for u in users
        ),
    )
    orders = sorted((at, u.user_id, sku, cents, status) for u in users for at, sku, cents, status in u.orders)
    write_csv(
        out / "orders.csv",
        ("order_id", "user_id", "amount", "currency", "sku", "status", "created_at"),
        (
            (f"o_{n:06d}", user_id, dollars(cents), "USD", sku, status, stamp(at))
            for n, (at, user_id, sku, cents, status) in enumerate(orders, start=1)
        ),
    )
    events = sorted((at, u.user_id, name) for u in users for at, name in u.events)
    write_csv(
        out / "app_events.csv",
        ("event_id", "user_id", "event_name", "occurred_at"),
        ((f"e_{n:06d}", user_id, name, stamp(at)) for n, (at, user_id, name) in enumerate(events, start=1)),
    )
    return users


def summary(users: Sequence[User]) -> str:
    """Row counts and the audience sizes the models should reproduce."""
    n = len(users)
    lapse_cutoff = (REFERENCE - timedelta(days=CHURN_AFTER_DAYS)).date()
    high_value = churn = new = 0
    for u in users:
        completed = sum(cents for _, _, cents, status in u.orders if status == "completed")
        high_value += completed > HIGH_VALUE_THRESHOLD_CENTS
        seen = [at for at, *_ in u.orders] + [at for at, _ in u.events]
        churn += bool(seen) and max(seen).date() <= lapse_cutoff
        new += u.signup_at >= REFERENCE - timedelta(days=NEW_SIGNUP_DAYS)
    n_orders = sum(len(u.orders) for u in users)
    n_events = sum(len(u.events) for u in users)
    return (
        f"users={n} orders={n_orders} app_events={n_events}\n"
        f"high_value={high_value} ({high_value / n:.1%}) churn_risk={churn} ({churn / n:.1%}) "
        f"new_signups={new} ({new / n:.1%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="directory for the CSVs (default: this file's directory)",
    )
    args = parser.parse_args()
    users = generate(args.out)
    print(f"wrote {args.out}/{{users,orders,app_events}}.csv")
    print(summary(users))


if __name__ == "__main__":
    main()
