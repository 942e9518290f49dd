"""Products as data (config/surveys/products.yaml): which survey a product gets, the variables its
questions are chosen and worded by, and the end of its cooling-off period (犹豫期).

The file maps product codes to their entries, plus a `default:` entry that stands in for an
unknown product and whose survey, payment, type and cooling-off days the others inherit:

    default: {survey: new_contract, payment: single, type: traditional}
    ENDOW_PAR10: {name: 鑫享年年两全保险（分红型）, payment: regular, payment_years: 10,
                  payment_frequency: 年交, type: participating, cooling_off_days: 20}

Cooling-off days: the product's own `cooling_off_days` win; without them the caller's default
(the setting `survey_cooling_off_days`, 15) applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, Collection, Mapping
from zoneinfo import ZoneInfo

import yaml

from surveys.errors import SurveyError

# Every variable a survey's visibleIf and {placeholders} may use besides its questions: the
# product context below. Definitions are checked against this list at load.
CONTEXT_VARIABLES = (
    "payment",  # regular | single
    "product_type",  # see PRODUCT_TYPES
    "product_code",
    "product_name",
    "payment_years",  # int (None for single premium)
    "payment_frequency",  # 年交, 月交, ... (趸交 for single premium)
    "cooling_off_days",  # int
    "holder_name_masked",  # 张*
    "deadline",  # 2026年12月17日, when the caller knows it
)
PAYMENTS = ("regular", "single")
PRODUCT_TYPES = ("traditional", "participating", "universal", "unit_linked", "health", "accident")
FREQUENCIES = ("趸交", "年交", "半年交", "季交", "月交")
_KEYS = ("survey", "name", "payment", "payment_years", "payment_frequency", "type", "cooling_off_days")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SURVEY = re.compile(r"^[a-z][a-z0-9_]*$")


def _whole(value: Any) -> int | None:
    """A policy's payment years as a positive whole number, else None (the product's then)."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= 100 else None


def mask_name(name: str) -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧***: the first character only."""
    name = (name or "").strip()
    return name[:1] + "*" * (len(name) - 1) if len(name) > 1 else ("*" if name else "")


def deadline(receipt_date: date, days: int, zone: tzinfo | str) -> datetime:
    """The end of a cooling-off period of `days` days, aware, in `zone`.

    Rule: the period starts the day after the policyholder receives (signs for) the policy (the
    day of receipt does not count, as for periods in the Civil Code), so receipt on 1 March with
    15 days runs 2-16 March and ends 16 March 23:59:59.999 local time. Calendar days: month ends
    and leap years fall out of date arithmetic; holidays do not extend the period.
    """
    if days < 1:
        raise ValueError(f"cooling-off days must be at least 1, not {days}")
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    last = receipt_date + timedelta(days=days)
    return datetime.combine(last, time(23, 59, 59, 999000), zone)


def inside(deadline_at: datetime, now: datetime) -> bool:
    """Whether `now` is still inside the period ending at `deadline_at` (both aware)."""
    return now <= deadline_at


@dataclass(frozen=True)
class Product:
    code: str  # "default" for the default entry
    name: str  # 产品名; empty: the policy's product as written
    survey: str  # the survey's name, e.g. new_contract
    payment: str  # regular | single
    payment_years: int | None
    payment_frequency: str  # 年交, ..., 趸交
    type: str  # PRODUCT_TYPES
    cooling_off_days: int  # the product's own, else the caller's default

    def context(self, policy: Mapping[str, Any] | None = None, *, deadline_at: datetime | None = None,
                zone: tzinfo | str | None = None) -> dict[str, Any]:
        """The variables of CONTEXT_VARIABLES for one policy.

        A policy's own `payment`, `payment_years` and `payment_frequency` (a product sold with
        several payment periods) win over the product's; its `product` names the product when
        the catalog has no name (an unknown product). `deadline` is formatted 2026年12月17日.
        """
        policy = policy or {}
        payment = policy.get("payment") if policy.get("payment") in PAYMENTS else self.payment
        years = _whole(policy.get("payment_years")) or self.payment_years
        frequency = policy.get("payment_frequency") if policy.get("payment_frequency") in FREQUENCIES[1:] \
            else self.payment_frequency
        if payment == "single":
            years, frequency = None, "趸交"
        when = ""
        if deadline_at is not None:
            local = deadline_at.astimezone(ZoneInfo(zone) if isinstance(zone, str) else zone) if zone else deadline_at
            when = f"{local.year}年{local.month}月{local.day}日"
        return {
            "payment": payment,
            "product_type": self.type,
            "product_code": self.code if self.code != "default" else str(policy.get("product_code") or ""),
            "product_name": self.name or str(policy.get("product_name") or policy.get("product") or "") or "本产品",
            "payment_years": years,
            "payment_frequency": frequency,
            "cooling_off_days": self.cooling_off_days,
            "holder_name_masked": mask_name(str(policy.get("holder_name") or "")),
            "deadline": when,
        }

    def deadline(self, receipt_date: date, zone: tzinfo | str) -> datetime:
        return deadline(receipt_date, self.cooling_off_days, zone)


@dataclass(frozen=True)
class Catalog:
    products: Mapping[str, Product]  # by code
    default: Product
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path, *, default_cooling_off_days: int = 15) -> "Catalog":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SurveyError(str(path), "$", f"cannot be read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise SurveyError(str(path), "$", f"not valid YAML ({exc})") from exc
        return cls.parse(raw, str(path), default_cooling_off_days=default_cooling_off_days, path=path)

    @classmethod
    def parse(cls, raw: Any, source: str = "<products>", *, default_cooling_off_days: int = 15,
              path: Path | None = None) -> "Catalog":
        if not isinstance(raw, Mapping):
            raise SurveyError(source, "$", "expected a mapping of product codes (and default:)")
        if "default" not in raw:
            raise SurveyError(source, "default", "missing (the entry unknown products get)")
        base = {"survey": "new_contract", "name": "", "payment": "single", "payment_years": None,
                "payment_frequency": "", "type": "traditional", "cooling_off_days": None}
        default_raw = _entry(raw["default"], source, "default")
        merged_default = {**base, **default_raw}
        default = _product("default", merged_default, source, "default", default_cooling_off_days)
        products: dict[str, Product] = {}
        for code, entry in raw.items():
            if code == "default":
                continue
            where = str(code)
            if not isinstance(code, str) or not _CODE.match(code):
                raise SurveyError(source, where, f"{code!r} is not a product code (letters, digits, _ . -)")
            # inherited from default: survey, payment, type, cooling_off_days (not name or period)
            inherited = {**merged_default, "name": "", "payment_years": None, "payment_frequency": ""}
            products[code] = _product(code, {**inherited, **_entry(entry, source, where)},
                                      source, where, default_cooling_off_days)
        return cls(products=products, default=default, path=path)

    def product(self, code: str | None) -> Product:
        """The product by code, else by name (policies may carry either), else the default."""
        if code:
            found = self.products.get(code)
            if found:
                return found
            for product in self.products.values():
                if product.name == code:
                    return product
        return self.default

    def for_policy(self, policy: Mapping[str, Any]) -> Product:
        """A policy's product: by its `product_code`, else its `product` (code or name)."""
        for key in ("product_code", "product"):
            found = self.product(str(policy.get(key) or ""))
            if found is not self.default:
                return found
        return self.default

    def check_surveys(self, names: Collection[str]) -> None:
        """Every product's survey is one of `names` (the surveys loaded), else SurveyError."""
        source = str(self.path) if self.path else "<products>"
        for product in (self.default, *self.products.values()):
            if product.survey not in names:
                raise SurveyError(source, f"{product.code}.survey", f"{product.survey!r} is not a survey "
                                                                    f"(there are {', '.join(sorted(names)) or 'none'})")


def _entry(value: Any, source: str, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SurveyError(source, where, "expected a mapping")
    for key in value:
        if key not in _KEYS:
            raise SurveyError(source, f"{where}.{key}", f"unknown key (use {', '.join(_KEYS)})")
    return dict(value)


def _product(code: str, entry: Mapping[str, Any], source: str, where: str, default_days: int) -> Product:
    def fail(key: str, problem: str) -> SurveyError:
        return SurveyError(source, f"{where}.{key}", problem)

    survey = entry["survey"]
    if not isinstance(survey, str) or not _SURVEY.match(survey):
        raise fail("survey", f"{survey!r} is not a survey name ([a-z][a-z0-9_]*)")
    name = entry["name"]
    if not isinstance(name, str):
        raise fail("name", "expected text")
    payment = entry["payment"]
    if payment not in PAYMENTS:
        raise fail("payment", f"{payment!r} is not one of {', '.join(PAYMENTS)}")
    kind = entry["type"]
    if kind not in PRODUCT_TYPES:
        raise fail("type", f"{kind!r} is not one of {', '.join(PRODUCT_TYPES)}")
    years = entry["payment_years"]
    frequency = entry["payment_frequency"] or ("趸交" if payment == "single" else "年交")
    if frequency not in FREQUENCIES:
        raise fail("payment_frequency", f"{frequency!r} is not one of {', '.join(FREQUENCIES)}")
    if payment == "regular":
        if not isinstance(years, int) or isinstance(years, bool) or not 1 <= years <= 100:
            raise fail("payment_years", f"{years!r}: a regular premium needs its payment years (1-100)")
        if frequency == "趸交":
            raise fail("payment_frequency", "趸交 is a single premium (payment: single)")
    else:
        if years not in (None, 1):
            raise fail("payment_years", "a single premium has no payment years")
        years, frequency = None, "趸交"
    days = entry["cooling_off_days"]
    if days is None:
        days = default_days
    elif not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 366:
        raise fail("cooling_off_days", f"{days!r} is not a number of days (1-366)")
    return Product(code=code, name=name, survey=survey, payment=payment, payment_years=years,
                   payment_frequency=frequency, type=kind, cooling_off_days=days)
