"""The dated GPU rental price table (``gpuplan/data/prices.toml``) and the ``--price`` argument."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from gpuplan.errors import InputError


@dataclass(frozen=True)
class Price:
    id: str
    gpu: str
    usd_per_gpu_hour: float
    date: str
    kind: str
    source: str
    low: float | None = None
    high: float | None = None


@cache
def load_prices() -> tuple[Price, ...]:
    """All entries of the packaged price table, validated."""
    text = resources.files("gpuplan").joinpath("data", "prices.toml").read_text(encoding="utf-8")
    out = []
    for raw in tomllib.loads(text).get("price", []):
        price = Price(id=raw["id"], gpu=raw["gpu"], usd_per_gpu_hour=float(raw["usd_per_gpu_hour"]),
                      date=str(raw["date"]), kind=raw["kind"], source=raw["source"],
                      low=raw.get("usd_per_gpu_hour_low"), high=raw.get("usd_per_gpu_hour_high"))
        if not price.usd_per_gpu_hour > 0 or not price.source.strip():
            raise ValueError(f"prices.toml: entry {price.id!r} needs a positive price and a source")
        out.append(price)
    return tuple(out)


MARKET_KINDS = ("on-demand", "market-range")


def market_priced_gpus() -> tuple[str, ...]:
    """The GPUs whose price-table entries include a market price (on-demand or a market range, not an estimate or
    a paper's assumed rental): the GPU types ``plan --serve`` compares when no ``--gpu`` is given."""
    return tuple(sorted({p.gpu for p in load_prices() if p.kind in MARKET_KINDS}))


MAX_USD_PER_GPU_HOUR = 1e6  # no GPU rents for more; the bound keeps every cost a finite number


def resolve_price(value: str | float | None, gpu_id: str | None) -> Price | None:
    """``--price``: a number (USD per GPU-hour), a table id, or ``table`` (the newest entry for ``gpu_id``)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is not None:
        if not 0 < number <= MAX_USD_PER_GPU_HOUR:  # also refuses nan and inf
            raise InputError("--price", value, f"must be a positive number of USD per GPU-hour, at most "
                             f"{MAX_USD_PER_GPU_HOUR:,.0f}")
        return Price(id="user", gpu=gpu_id or "", usd_per_gpu_hour=number, date="", kind="user",
                     source="--price given by the user")
    prices = load_prices()
    key = str(value).strip().lower()
    if key == "table":
        if gpu_id is None:
            raise InputError("--price", value, "needs --gpu to pick an entry of the price table")
        mine = [p for p in prices if p.gpu == gpu_id]
        if not mine:
            ids = ", ".join(f"{p.id} ({p.gpu})" for p in prices)
            raise InputError("--price", value, f"the price table has no entry for GPU {gpu_id!r}",
                             hint=f"give a number of USD per GPU-hour; entries: {ids}")
        return max(mine, key=lambda p: p.date)
    for p in prices:
        if p.id == key:
            return p
    raise InputError("--price", value, "is not a number, 'table' or a price-table id",
                     hint="entries: " + ", ".join(p.id for p in prices))


@dataclass(frozen=True)
class ServerPrice:
    """The purchase price of one server of ``gpu`` (its GPUs included), dated and sourced."""

    gpu: str
    usd_per_server: float
    date: str
    kind: str  # list-price | reported | estimate
    source: str

    @property
    def is_estimate(self) -> bool:
        return self.kind == "estimate"


@dataclass(frozen=True)
class PowerPrice:
    id: str
    usd_per_kwh: float
    date: str
    kind: str
    source: str


@dataclass(frozen=True)
class Depreciation:
    years: float
    source: str


@cache
def _price_file() -> dict:
    text = resources.files("gpuplan").joinpath("data", "prices.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@cache
def load_server_prices() -> dict[str, ServerPrice]:
    """``[[server]]`` entries of prices.toml by GPU id, validated (one per GPU)."""
    out: dict[str, ServerPrice] = {}
    for raw in _price_file().get("server", []):
        usd = (float(raw["usd_per_server"]) if "usd_per_server" in raw
               else float(raw["cny_per_server"]) / float(raw["cny_per_usd"]))
        entry = ServerPrice(gpu=raw["gpu"], usd_per_server=usd, date=str(raw["date"]), kind=raw["kind"],
                            source=raw["source"])
        if not entry.usd_per_server > 0 or not entry.source.strip() or entry.gpu in out:
            raise ValueError(f"prices.toml: server entry {entry.gpu!r} needs a positive price, a source and one "
                             "entry per GPU")
        if entry.kind not in ("list-price", "reported", "estimate"):
            raise ValueError(f"prices.toml: server entry {entry.gpu!r}: kind {entry.kind!r}")
        out[entry.gpu] = entry
    return out


@cache
def default_power_price() -> PowerPrice:
    """The first ``[[power]]`` entry: the default price of a kWh."""
    raw = _price_file()["power"][0]
    entry = PowerPrice(id=raw["id"], usd_per_kwh=float(raw["usd_per_kwh"]), date=str(raw["date"]), kind=raw["kind"],
                       source=raw["source"])
    if not entry.usd_per_kwh > 0 or not entry.source.strip():
        raise ValueError("prices.toml: the [[power]] entry needs a positive price and a source")
    return entry


@cache
def default_depreciation() -> Depreciation:
    """``[depreciation]``: the years over which a purchased server is written off."""
    raw = _price_file()["depreciation"]
    entry = Depreciation(years=float(raw["years"]), source=raw["source"])
    if not entry.years > 0 or not entry.source.strip():
        raise ValueError("prices.toml: [depreciation] needs positive years and a source")
    return entry
