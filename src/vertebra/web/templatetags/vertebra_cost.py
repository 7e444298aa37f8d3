"""``{% load vertebra_cost %}{% cost_ranges %}``: typical cost and coverage of each treatment.

One inclusion tag, so that /learn/cost/ and the decision aid show the same section from the
versioned data file (``data/learn/cost.yaml`` via :mod:`vertebra.core.costinfo`) without their
views having to pass it in.
"""

from __future__ import annotations

from typing import Any

from django import template

from vertebra.core.costinfo import cost_info

register = template.Library()


@register.inclusion_tag("vertebra/learn/_cost_ranges.html")
def cost_ranges(heading_level: int = 2, link: bool = False) -> dict[str, Any]:
    """The cost section: ``heading_level`` of its heading (2 or 3); ``link`` adds a link to
    the full page (/learn/cost/) for pages that show it as a summary."""
    info = cost_info()
    cited = {s.id: s for t in info.treatments for s in t.sources}
    return {
        "info": info,
        "sources": list(cited.values()),
        "h": 3 if heading_level == 3 else 2,
        "link": link,
    }
