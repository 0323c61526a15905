"""Tactical dashboard: renders the Redis KPI snapshot, nothing else (run: `flashsale dashboard`).

Thin edge: every number, order, text and stale decision comes from dashboard/view_model.py; this file
only draws it. One Redis round trip per refresh (dashboard/source.py); the refresh is a
``st.fragment(run_every=settings.dashboard_refresh_seconds)``, never a loop. The last good snapshot
lives in ``st.session_state`` so a Redis outage or a stale snapshot greys it out instead of blanking it.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from dashboard import source
from dashboard.view_model import (
    ACTIONS,
    EMPTY_SHELF_COLUMNS,
    QUEUE_COLUMNS,
    DashboardView,
    Screen,
    resolve,
    ui_links,
)
from flashsale.redis_keys import keys_for
from flashsale.settings import load_settings
from flashsale.stores import redis_client

ALERTS_HEIGHT = 490  # px: with the tiles and header this fits 1440x900 without page scrolling
BANNER_HEIGHT = 70  # px the alerts table gives up while a banner shows (the page still fits one screen)
CSS = """
<style>
.block-container {padding-top: 2.2rem; padding-bottom: 0; max-width: 100%;}
[data-testid="stMetricValue"] {font-size: 1.7rem;}
.st-key-fsr_body_stale {opacity: 0.45; filter: grayscale(1);}
[data-testid="stTable"] td, [data-testid="stTable"] th {padding: 0.25rem 0.5rem; font-size: 0.85rem;}
h5 {padding: 0.2rem 0 0.1rem 0;}
</style>
"""


@st.cache_resource(show_spinner=False)
def _client(redis_url: str, _settings):
    # one pooled client per Redis URL for the whole server; short timeouts so a dead Redis costs ~1 s at most
    return redis_client(_settings, timeout=1.0)


def _settings():
    if "settings" not in st.session_state:
        st.session_state["settings"] = load_settings()
    return st.session_state["settings"]


def _header(settings) -> None:
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    left.markdown("##### Flash Sale Stockout Radar — tactical view")
    links = " · ".join(
        f'<a href="{html.escape(url)}" target="_blank">{label}</a>'
        if url
        else f"<span title='runs with the cluster profile'>{label} (cluster only)</span>"
        for label, url in ui_links(_ui_urls(settings))
    )
    right.markdown(f"<div style='text-align:right'>{links}</div>", unsafe_allow_html=True)


def _ui_urls(settings) -> dict[str, str]:
    try:
        return settings.ui_urls()
    except Exception:  # noqa: BLE001 - a missing hadoop-conf must not break the page
        return {}


def _tiles(view: DashboardView) -> None:
    for col, t in zip(st.columns(len(view.tiles)), view.tiles):
        with col:
            st.metric(
                t.label,
                t.value,
                t.delta,
                delta_color=t.delta_color,
                help=t.help,
                border=True,
                chart_data=list(t.chart) if t.chart else None,
                chart_type="area" if t.key == "orders" else "line",
                delta_arrow="auto" if t.arrow else "off",
                height="stretch",
            )


def _style_action(label: object) -> str:
    assert isinstance(label, str)  # Styler.map hands over each cell of the Action column: always a label
    for name, colour in ACTIONS.values():
        if label.startswith(name):
            return f"background-color: {colour}; font-weight: {600 if name.isupper() else 400}"
    return ""


def _alerts(view: DashboardView, height: int) -> None:
    st.markdown(
        f"##### Action queue — by expected loss ({len(view.queue)} to act on, of {view.alerts_total:,} open alerts)",
        help="Each row: one action for one product at one warehouse still in stock, ranked by the margin lost within "
        "the horizon if nobody acts (P(stockout) x units short x margin). Pairs already out of stock and everything "
        "else are counted below, not listed.",
    )
    if not view.queue and view.out_of_stock:
        st.warning(
            f"No stockout left to prevent within the horizon, but {view.out_of_stock:,} pairs are out of stock "
            "now: the costliest are named below."
        )
    elif not view.queue:
        st.success("Nothing to act on: no product needs a restock, reroute or ad pause within the horizon.")
    else:
        df = pd.DataFrame([a.cells() for a in view.queue], columns=list(QUEUE_COLUMNS))
        styled = (
            df.style.map(_style_action, subset=["Action"])
            .bar(subset=["P(stockout)"], vmin=0.0, vmax=1.0, color="#f4a3a3")
            .format({"P(stockout)": "{:.0%}"})
            .hide(axis="index")
        )
        # st.table: plain HTML (readable by screen readers and browser tests), scrolls inside its fixed height;
        # each summary line and the empty shelves' (folded) expander take ~40 px
        lines = len(view.summary) + (1 if view.empty_shelves else 0)
        st.table(styled, height=height - 40 * lines, hide_index=True)
    for line in view.summary:
        st.caption(line)
    if view.empty_shelves:
        _empty_shelves(view)


def _empty_shelves(view: DashboardView) -> None:
    # a stable label keeps the operator's open/closed choice across refreshes; open when nothing is queued
    with st.expander("Empty shelves: the costliest pairs out of stock now", expanded=not view.queue):
        df = pd.DataFrame([a.shelf_cells() for a in view.empty_shelves], columns=list(EMPTY_SHELF_COLUMNS))
        st.table(df.style.map(_style_action, subset=["Action"]).hide(axis="index"), hide_index=True)


def _where(view: DashboardView, compact: bool) -> None:
    st.markdown(f"##### Where — risk by {view.geo_level}")
    if view.geo:
        geo = pd.DataFrame(
            {
                "place": [g.place for g in view.geo],
                "high risk": [g.high for g in view.geo],
                "watch": [g.watch for g in view.geo],
            }
        )
        st.bar_chart(
            geo,
            x="place",
            y=["high risk", "watch"],
            color=["#d62728", "#ff9f1c"],
            horizontal=True,
            height=140 if compact else 155,
            x_label="",
            y_label="",
            sort=False,
        )
    else:
        st.caption(f"No {view.geo_level} has a product at risk.")
    st.markdown(f"##### Overloaded warehouses ({len(view.overloaded)} / {view.warehouses_total})")
    if view.overloaded:
        st.table(
            pd.DataFrame(
                [(w.warehouse, w.city, w.load, w.delay) for w in view.overloaded],
                columns=["Warehouse", "City", "Load", "Delay"],
            ),
            height=100 if compact else 150,
            hide_index=True,
        )
    else:
        st.caption("No warehouse is overloaded.")
    st.markdown("##### Risk trend", help=view.risk_trend_label)
    if len(view.risk_trend) >= 2:
        st.altair_chart(_sparkline(view.risk_trend), width="stretch")
    else:
        st.caption("The trend appears after two KPI runs.")


if TYPE_CHECKING:
    import altair as alt


def _sparkline(values) -> alt.Chart:
    import altair as alt

    df = pd.DataFrame({"run": range(len(values)), "expected stockouts": list(values)})
    return (
        alt.Chart(df, height=90)
        .mark_area(line={"color": "#d62728"}, color="#f7c6c6")
        .encode(
            x=alt.X("run:Q", axis=None),
            y=alt.Y("expected stockouts:Q", axis=alt.Axis(title=None, tickCount=3)),
            tooltip=["expected stockouts"],
        )
    )


def render(screen: Screen) -> None:
    if screen.banner is not None:
        getattr(st, screen.banner.level)(screen.banner.text)
    if screen.view is None:
        return
    with st.container(key="fsr_body_stale" if screen.greyed else "fsr_body_live"):
        _tiles(screen.view)
        main, side = st.columns([3, 1.15], gap="medium")
        with main:
            _alerts(screen.view, ALERTS_HEIGHT - (BANNER_HEIGHT if screen.banner else 0))
        with side:
            _where(screen.view, compact=screen.banner is not None)


def refresh() -> None:
    """One refresh: one Redis read, the pure state machine, then drawing. Never lets an exception out."""
    try:
        s = _settings()
        fetched = source.fetch(_client(s.redis_url, s), keys_for(s))
        screen = resolve(
            fetched,
            st.session_state.get("last_good"),
            datetime.now(UTC),
            s.dashboard_stale_seconds,
            s.dashboard_refresh_seconds,
        )
        st.session_state["last_good"] = screen.last_good
        render(screen)
    except Exception as exc:  # noqa: BLE001 - never a traceback on screen; the next refresh retries
        st.error(f"⚠ The dashboard could not refresh ({type(exc).__name__}); retrying.")


def main() -> None:
    st.set_page_config(page_title="Stockout Radar", page_icon="🛒", layout="wide")
    st.html(CSS)
    try:
        s = _settings()
        interval = s.dashboard_refresh_seconds
        _header(s)
    except Exception as exc:  # noqa: BLE001 - e.g. missing secrets: one line naming the fix
        st.error(f"⚠ Settings could not be loaded: {exc}")
        return
    st.fragment(run_every=interval)(refresh)()


main()
