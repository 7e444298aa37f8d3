"""Crawl the site as every demo role, in Chromium, at desktop and phone size.

For anonymous visitors and each demo account (registry admin, clinic admin, clinician,
coordinator, researcher, and the demo patient who signs in at ``/p/signin/``) the crawl starts
from the page the sign-in lands on and from ``/``, follows same-origin links (GET only; sign-out
is a POST form and is never sent), and on every page it visits, at 1366×900 and 390×844, checks:

* no console error and no uncaught script error;
* no Content-Security-Policy violation (a ``securitypolicyviolation`` listener installed by an
  init script, so it runs before any page script);
* no link on the page answering 4xx/5xx (each same-origin link is requested with the role's
  cookies, redirects followed);
* no sideways scroll on any page of ours, staff pages included (``scrollWidth <= innerWidth``;
  Django's admin is its own and exempt);
* no raw code in the visible text (snake_case tokens such as ``steroid_injection`` or
  ``month_12``, and "clinic 1"), outside code blocks, URLs, e-mail addresses and file names;
* no date in a machine format (``2026-05-13``) in the visible text: people read one format
  ("13 May 2026", ``vertebra.core.labels.format_date``).

The crawl is bounded so CI runs it in a few minutes: pages of one *shape* (the same path with
other ids, the same query keys) are visited once and link-checked a few times; each role visits
at most :data:`MAX_PAGES` pages of its own area (public pages for anonymous visitors, ``/clinic/``
and the other staff pages for staff, ``/p/`` for the patient) plus ``/``; Django's admin is
visited at its index only. A screenshot of every visited page goes to
``test-artifacts/crawl/``, with ``report.json`` listing every finding.

At phone size, the controls people tap (section navigation, record actions, breadcrumbs,
buttons, paging, the first link of a stacked worklist row) must be at least 44 px tall.

The data are built by the test itself: the demo's own setup (a small synthetic cohort with the
three example stories, and the demo accounts), served by a live server, plus a day's work
waiting in the demo clinic (:func:`arrange_waiting_work`), so the worklists, the adjudication
form, the call list and the sterility form are crawled with rows in them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urldefrag, urlsplit

import pytest
from django.utils import timezone

from tests.registry.factories import make_episode, make_patient
from tests.signin import browser_sign_in
from vertebra.core.labels import vocabulary
from vertebra.followup.models import CallListEntry, FollowUpTimePoint
from vertebra.registry import services
from vertebra.registry.models import Clinic, Harvest, Membership, Processing, Role
from vertebra.registry.permissions import Actor
from vertebra.web.services.demo import DEMO_PASSWORD, ensure_demo_accounts, load_demo_cohort

pytestmark = pytest.mark.django_db(transaction=True)

#: Patients in the crawl's registry: enough for every page to have content (three clinics, the
#: three stories, every arm), small enough to load in seconds.
COHORT_SIZE = 40
#: Pages visited per role (besides "/"); each is visited at both sizes.
MAX_PAGES = 24
#: The anonymous visitor's area is the whole public site: every /learn/ article is a page.
MAX_PUBLIC_PAGES = 40
#: Pages of one shape visited, and links of one shape requested, per role.
VISITS_PER_SHAPE = 1
LINK_CHECKS_PER_SHAPE = 2

SIZES = {"desktop": (1366, 900), "phone": (390, 844)}

#: (role, username, sign-in page); None = anonymous.
ROLES: tuple[tuple[str, str | None, str | None], ...] = (
    ("anonymous", None, None),
    ("patient", "patient", "/p/signin/"),
    ("clinician", "clinician", "/accounts/login/"),
    ("coordinator", "coordinator", "/accounts/login/"),
    ("clinic-admin", "clinicadmin", "/accounts/login/"),
    ("registry-admin", "admin", "/accounts/login/"),
    ("researcher", "researcher", "/accounts/login/"),
)

#: Pages a role's navigation does not (yet) link to but which belong to its area: the Django
#: admin of the registry admin; the questionnaire the patient has just started.
EXTRA_SEEDS: dict[str, tuple[str, ...]] = {
    "registry-admin": ("/admin/", "/accounts/mfa/"),
    "researcher": ("/accounts/mfa/",),
    "patient": ("/p/q/",),
}

STAFF_PREFIXES = ("/clinic/", "/admin/", "/p/staff/")
PORTAL_PREFIX = "/p/"
#: Never requested: sign-out endpoints (they are POST forms anyway) and static files.
SKIP = re.compile(r"(logout|signout|/static/)")
#: Requested as links but never visited as pages: JSON and file answers.
NOT_A_PAGE = re.compile(r"^/api/|\.(csv|json|ndjson|pdf|zip|parquet)$")

#: A code in visible text: snake_case words (``steroid_injection``, ``month_12``,
#: ``view_patient``) and "clinic 1" instead of the clinic's name.
SNAKE_CASE = re.compile(r"(?<![\w./-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w/-])")
CLINIC_NUMBER = re.compile(r"\b[Cc]linic \d+\b")
#: A date as a machine writes it (ISO 8601 or a timestamp), where a person reads a date.
ISO_DATE = re.compile(r"(?<![\w-])(?:19|20)\d\d-[01]\d-[0-3]\d(?:[T ][0-2]\d:[0-5]\d\S*)?(?![\w-])")
#: Removed before looking for codes: URLs, e-mail addresses, file names, paths.
NOT_PROSE = re.compile(
    r"https?://\S+|\S+@\S+|\b[\w.-]+\.(?:csv|json|ndjson|parquet|pdf|html|txt|zip|yaml)\b"
    r"|(?<!\w)/[\w/.?=&%-]+"
)

#: Init script: remember every CSP violation of the page, before any page script runs.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(
    `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile || ''}:${e.lineNumber || ''}`
  );
});
"""

#: The controls a person taps, measured at phone size: (selector, what it is).
TAP_TARGETS = (
    ".clinic-nav a, .record-actions a, .record-actions-inline a, .breadcrumb a, .pagination a,"
    " main .button, main button:not(.link), table.stack td:first-child > a"
)
MIN_TAP_PX = 44
#: The visible controls of :data:`TAP_TARGETS` less than :data:`MIN_TAP_PX` tall.
SMALL_TARGETS = """
([selector, least]) => {
  const small = [];
  for (const el of document.querySelectorAll(selector)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || (el.checkVisibility && !el.checkVisibility())) continue;
    if (r.height < least - 0.5) small.push(`"${el.textContent.trim().slice(0, 30)}" ${Math.round(r.height)} px`);
  }
  return small;
}
"""

#: Visible text of the page, without code blocks and without hidden elements.
VISIBLE_TEXT = """
() => {
  const skip = new Set(['CODE', 'PRE', 'KBD', 'SAMP', 'SCRIPT', 'STYLE', 'TEXTAREA', 'NOSCRIPT', 'TEMPLATE']);
  const parts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    let el = node.parentElement, hidden = false;
    for (let a = el; a; a = a.parentElement) { if (skip.has(a.tagName)) { hidden = true; break; } }
    if (hidden || !el || (el.checkVisibility && !el.checkVisibility())) continue;
    const text = node.textContent.trim();
    if (text) parts.push(text);
  }
  return parts.join('\\n');
}
"""

#: Everything the crawl reads from a loaded page, in one round trip to the browser.
INSPECT = f"""
([selector, least]) => ({{
  violations: window.__cspViolations || [],
  width: document.documentElement.scrollWidth,
  window: window.innerWidth,
  height: document.documentElement.scrollHeight,
  text: ({VISIBLE_TEXT.strip()})(),
  small: least > 0 ? ({SMALL_TARGETS.strip()})([selector, least]) : [],
  anchors: Array.from(document.querySelectorAll('a[href]'), a => [a.href, a.hasAttribute('download')]),
}})
"""


@dataclass(frozen=True)
class Finding:
    """One problem on one page."""

    role: str
    size: str
    url: str
    what: str
    detail: str


def vocabulary_codes() -> dict[str, str]:
    """Every code of the label vocabularies that cannot pass for a word (has _ or a digit)."""
    codes: dict[str, str] = {}
    for kind in (
        "arm",
        "arm_group",
        "condition",
        "cell_source",
        "regulatory_status",
        "timepoint_status",
        "timepoint",
        "instrument",
    ):
        for code in vocabulary(kind):
            if "_" in code or any(ch.isdigit() for ch in code):
                codes.setdefault(code, kind)
    return codes


def raw_codes(text: str, codes: dict[str, str]) -> list[str]:
    """The codes that reach a reader in ``text`` (visible prose of one page)."""
    prose = NOT_PROSE.sub(" ", text)
    found = []
    for token in sorted(set(SNAKE_CASE.findall(prose))):
        kind = codes.get(token)
        found.append(f"{token} ({kind} code)" if kind else token)
    found.extend(sorted(set(CLINIC_NUMBER.findall(prose))))
    return found


def raw_dates(text: str) -> list[str]:
    """The dates in a machine format (``2026-05-13``) in ``text`` (visible prose of one page)."""
    return sorted(set(ISO_DATE.findall(NOT_PROSE.sub(" ", text))))


def shape(path_and_query: str) -> str:
    """Pages of one shape show the same template: ids replaced, query values dropped."""
    parts = urlsplit(path_and_query)
    path = re.sub(r"/[0-9a-f]{8}-[0-9a-f-]{27,}(?=/|$)", "/<uuid>", parts.path)
    path = re.sub(r"/\d+(?=/|$)", "/<n>", path)
    path = re.sub(r"/[A-Z]{2,}-\d+(?=/|$)", "/<ref>", path)
    keys = ",".join(sorted({k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}))
    return f"{path}?{keys}" if keys else path


def area(role: str, path: str) -> bool:
    """True when ``path`` belongs to the pages ``role`` crawls (each area is crawled once)."""
    if path == "/":
        return True
    if path.startswith("/admin/"):
        return role == "registry-admin" and path == "/admin/"
    staff = path.startswith(STAFF_PREFIXES)
    portal = path.startswith(PORTAL_PREFIX) and not path.startswith("/p/staff/")
    if role == "anonymous":
        return not staff
    if path.startswith("/accounts/mfa/"):
        return role not in ("anonymous", "patient")  # a staff member's own second factor
    if path.startswith("/accounts/"):
        return False  # the sign-in pages are the anonymous visitor's
    if role == "patient":
        return portal
    return staff


def phone_ready_required(path: str) -> bool:
    """Every page of ours must not scroll sideways at phone size: public, portal and staff
    pages alike (a coordinator calls patients from a phone). Django's admin is exempt."""
    return not path.startswith(("/admin/", "/api/"))


def phone_key(role: str, path: str) -> str:
    """Staff pages of one shape are shot at phone size once for all roles, except the pages
    that differ by role: each role's home, and the outcomes a researcher sees de-identified."""
    key, bare = shape(path), urlsplit(path).path
    if bare == "/clinic/home/":
        return f"{role}:{key}"
    if bare.startswith("/clinic/outcomes/") and role == "researcher":
        return f"{role}:{key}"
    return key


class Shared:
    """What the roles' crawls share: the staff page shapes already shot at phone size, and the
    status of file links (downloads, JSON, API): a PDF or a JSON report is built once per
    crawl, not once per role; who may fetch them is tested where they are made."""

    def __init__(self) -> None:
        self.phone_shapes: set[str] = set()
        self.downloads: dict[str, int] = {}


class RoleCrawl:
    """The crawl of one role: sign in, walk the links at desktop size, revisit at phone size."""

    def __init__(self, browser: Any, base: str, role: str, out: Path, shared: Shared) -> None:
        self.browser = browser
        self.base = base
        self.role = role
        self.out = out
        self.shared = shared
        self.codes = vocabulary_codes()
        self.findings: list[Finding] = []
        self.status: dict[str, int] = {}  # link → HTTP status (visited or requested)
        self.linked_from: dict[str, list[str]] = {}  # link → pages linking to it
        self.downloads: set[str] = set()
        self.visited: list[str] = []
        self.timings: list[tuple[str, str, float]] = []  # (size, path, seconds)
        self.storage: Any = None

    # --- browser plumbing ------------------------------------------------------------------

    def _context(self, size: str) -> Any:
        width, height = SIZES[size]
        phone = size == "phone"
        context = self.browser.new_context(
            viewport={"width": width, "height": height},
            is_mobile=phone,
            has_touch=phone,
            storage_state=self.storage,
        )
        context.add_init_script(CSP_LISTENER)
        return context

    def sign_in(self, username: str, signin_path: str) -> str:
        """Sign in through the real forms; return the path the sign-in lands on.

        Staff sign in at ``/accounts/login/`` with :func:`tests.signin.browser_sign_in`, which
        also passes the second factor (setting up an authenticator on the way for the roles
        that must have one: registry admins and researchers outside the demo).
        """
        context = self._context("desktop")
        page = context.new_page()
        if self.role == "patient":
            page.goto(self.base + signin_path)
            page.fill("#id_username", username)
            page.fill("#id_password", DEMO_PASSWORD)
            with page.expect_navigation():
                page.locator("form button[type=submit]").first.click()
        else:
            browser_sign_in(page, self.base, username, DEMO_PASSWORD, next_url=None)
        landing = urlsplit(page.url).path
        if landing == signin_path or landing.startswith("/accounts/"):
            self._note("desktop", signin_path, "sign-in failed", page.inner_text("main")[:200])
        if self.role == "patient":
            # Start the due questionnaire (a POST that only remembers the choice in the
            # session), so the questionnaire screens are reachable by links too.
            start = page.locator("form[action^='/p/choose/'] button")
            if start.count():
                with page.expect_navigation():
                    start.first.click()
        self.storage = context.storage_state()
        context.close()
        return landing

    def _note(self, size: str, url: str, what: str, detail: str) -> None:
        self.findings.append(Finding(self.role, size, url, what, detail))

    # --- the crawl -------------------------------------------------------------------------

    def crawl(self, seeds: Iterable[str]) -> None:
        """Walk breadth-first at desktop size, check the links, revisit at phone size."""
        limit = MAX_PUBLIC_PAGES if self.role == "anonymous" else MAX_PAGES
        context = self._context("desktop")
        page = context.new_page()
        queue: deque[str] = deque(seeds)
        queued: set[str] = set(queue)
        seen_shapes: set[str] = set()
        while queue and len(self.visited) < limit + 1:
            path = queue.popleft()
            if shape(path) in seen_shapes:
                continue
            seen_shapes.add(shape(path))
            for link in self._visit(page, path, "desktop"):
                link_path = urlsplit(link).path
                page_link = not NOT_A_PAGE.search(link_path) and link not in self.downloads
                if page_link and link not in queued and area(self.role, link_path):
                    queued.add(link)
                    queue.append(link)
        self._check_links(page)
        context.close()
        context = self._context("phone")
        page = context.new_page()
        for path in list(self.visited):
            staff_page = urlsplit(path).path.startswith(STAFF_PREFIXES)
            key = phone_key(self.role, path)
            if staff_page and key in self.shared.phone_shapes:
                continue  # a staff page already shot at phone size by another role
            self.shared.phone_shapes.add(key)
            self._visit(page, path, "phone")
        context.close()

    def _visit(self, page: Any, path: str, size: str) -> list[str]:
        """Open ``path``, check it, screenshot it; return its same-origin links."""
        console: list[str] = []
        failed: list[str] = []

        def on_console(message: Any) -> None:
            if message.type == "error" and "Content Security Policy" not in message.text:
                where = (message.location or {}).get("url", "")
                console.append(f"{message.text} [{where}]" if where else message.text)

        def on_response(response: Any) -> None:
            if response.status >= 400 and response.url != self.base + path:
                failed.append(f"{response.status} {response.url}")

        began = time.monotonic()
        page.on("console", on_console)
        page.on("pageerror", lambda error: console.append(f"script error: {error}"))
        page.on("response", on_response)
        try:
            response = page.goto(self.base + path, wait_until="load")
            page.wait_for_timeout(50)  # let late violation reports arrive
        except Exception as exc:  # a navigation that fails is a finding, not a crash
            self._note(size, path, "navigation failed", str(exc)[:300])
            return []
        finally:
            page.remove_listener("console", on_console)
            page.remove_listener("response", on_response)
        status = response.status if response is not None else 0
        self.status[path] = status
        if status >= 400:
            self._note(size, path, f"page answers {status}", page.title())
            return []
        if "html" not in (response.headers.get("content-type", "") if response else ""):
            return []
        if size == "desktop":
            self.visited.append(path)
        final = urlsplit(page.url)
        here = final.path + (f"?{final.query}" if final.query else "")
        if console:
            self._note(size, path, f"{len(console)} console errors", " | ".join(console[:5]))
        for line in failed:
            self._note(size, path, "resource failed", line)
        tap_px = MIN_TAP_PX if size == "phone" and not final.path.startswith("/admin/") else 0
        seen = page.evaluate(INSPECT, [TAP_TARGETS, tap_px])
        violations = seen["violations"]
        if violations:
            shown = " | ".join(sorted(set(violations))[:5])
            self._note(size, path, f"{len(violations)} CSP violations", shown)
        if phone_ready_required(final.path):
            width, window = seen["width"], seen["window"]
            if width > window:
                self._note(
                    size,
                    path,
                    "scrolls sideways",
                    f"page is {width} px wide in a {window} px window{self._widest(page)}",
                )
        text = seen["text"]
        codes = raw_codes(text, self.codes)
        if codes:
            self._note(size, path, "raw codes in visible text", ", ".join(codes[:12]))
        dates = raw_dates(text)
        if dates:
            self._note(size, path, "dates in a machine format", ", ".join(dates[:6]))
        small = seen["small"]
        if small:
            shown = ", ".join(sorted(set(small))[:6])
            self._note(size, path, f"{len(small)} tap targets under {MIN_TAP_PX} px", shown)
        self._screenshot(page, here, size, tall=seen["height"] > 5000)
        self.timings.append((size, path, round(time.monotonic() - began, 2)))
        return self._links(seen["anchors"], path) if size == "desktop" else []

    def _widest(self, page: Any) -> str:
        """Name the element that sticks out furthest, to make a sideways scroll easy to fix."""
        culprit = page.evaluate(
            """() => {
              let worst = null, right = window.innerWidth;
              for (const el of document.body.querySelectorAll('*')) {
                const r = el.getBoundingClientRect();
                if (r.right > right + 1 && r.width > 0) { right = r.right; worst = el; }
              }
              if (!worst) return '';
              const id = worst.id ? '#' + worst.id : '';
              const cls = worst.className && typeof worst.className === 'string'
                ? '.' + worst.className.trim().split(/\\s+/).join('.') : '';
              return `${worst.tagName.toLowerCase()}${id}${cls} (${Math.round(right)} px)`;
            }"""
        )
        return f"; widest: {culprit}" if culprit else ""

    def _links(self, anchors: list[list[Any]], path: str) -> list[str]:
        """Same-origin link targets of the page's ``anchors`` ([href, download]; path and query,
        no fragment), in page order; each remembers that ``path`` links to it."""
        links: list[str] = []
        for href, download in anchors:
            url, _ = urldefrag(href)
            if not url.startswith(self.base) or SKIP.search(url):
                continue
            parts = urlsplit(url)
            link = parts.path + (f"?{parts.query}" if parts.query else "")
            if download:
                self.downloads.add(link)
            if link not in links:
                links.append(link)
                self.linked_from.setdefault(link, []).append(path)
        return links

    def _check_links(self, page: Any) -> None:
        """Request every link not visited (a few per shape; a download once per crawl) with the
        role's cookies, redirects followed; one finding per link answering 4xx/5xx."""
        per_shape: dict[str, int] = {}
        for link, pages in self.linked_from.items():
            if link not in self.status:
                key = shape(link)
                if per_shape.get(key, 0) >= LINK_CHECKS_PER_SHAPE:
                    continue
                per_shape[key] = per_shape.get(key, 0) + 1
                file_like = link in self.downloads or bool(NOT_A_PAGE.search(urlsplit(link).path))
                if file_like and link in self.shared.downloads:
                    self.status[link] = self.shared.downloads[link]
                else:
                    self.status[link] = self._request(page, link)
                    if file_like:
                        self.shared.downloads[link] = self.status[link]
            status = self.status[link]
            if status >= 400:
                also = f" (and {len(pages) - 1} more pages)" if len(pages) > 1 else ""
                self._note("desktop", pages[0], f"link answers {status}", f"{link}{also}")

    def _request(self, page: Any, link: str) -> int:
        try:
            answer = page.request.get(self.base + link, timeout=60_000)
        except Exception:  # a link that cannot be fetched at all
            return 599
        status = int(answer.status)
        answer.dispose()
        return status

    def _screenshot(self, page: Any, path: str, size: str, *, tall: bool) -> None:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-") or "home"
        target = self.out / f"{self.role}-{size}-{slug[:80]}.jpg"
        # JPEG: half the time of a PNG per shot (the crawl takes ~400), still easy to read.
        page.screenshot(path=str(target), full_page=not tall, type="jpeg", quality=75)


def arrange_waiting_work(today: Any) -> None:
    """Something waiting for every staff role in the demo clinic (where the demo accounts
    work): a serious adverse event reported by the coordinator (through the service, so its
    reporter is on the audit trail), a processed product whose sterility result is pending,
    and two patients on the call list, one of them for a red flag."""
    clinic = Clinic.objects.order_by("id").first()
    assert clinic is not None
    coordinator = Membership.objects.get(user__username="coordinator", clinic=clinic).user
    actor = Actor.for_user(coordinator, Role.COORDINATOR)
    patient = make_patient(clinic, family_name="Waiting", given_name="Wendy", phone="+1 555 0100")
    services.record_adverse_event(
        actor=actor, patient_id=patient.pk, description="Fever and redness at the harvest site",
        category="infection", onset=today - dt.timedelta(days=1), serious=True,
    )  # fmt: skip
    episode = make_episode(patient, start_date=today - dt.timedelta(days=3))
    harvest = Harvest.objects.create(
        episode=episode, source="bone_marrow_iliac_crest", harvested_on=episode.start_date,
        operator=coordinator,
    )  # fmt: skip
    Processing.objects.create(
        harvest=harvest, method="bmac", lab="Crawl Lab", processed_on=episode.start_date,
        product_id="PROD-CRAWL-1", sterility="pending",
    )  # fmt: skip
    open_points = FollowUpTimePoint.objects.filter(
        patient__clinic=clinic, call_list_entry__isnull=True, completed_at__isnull=True
    ).order_by("target")[:2]
    reasons = (CallListEntry.Reason.URGENT_TICKLER, CallListEntry.Reason.NO_RESPONSE)
    for point, reason in zip(open_points, reasons, strict=False):
        CallListEntry.objects.create(time_point=point, reason=reason, created_at=timezone.now())


def test_every_page_of_every_role_at_desktop_and_phone_size(
    live_server: Any, browser: Any, artifacts_dir: Path
) -> None:
    started = time.monotonic()
    now = timezone.now()
    load_demo_cohort(patients=COHORT_SIZE, seed=2026, today=now.date(), now=now)
    logins = {login.username for login in ensure_demo_accounts()}
    assert {"admin", "clinicadmin", "clinician", "coordinator", "researcher", "patient"} <= logins
    arrange_waiting_work(now.date())
    prepared = time.monotonic() - started

    out = artifacts_dir / "crawl"
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*.png"), *out.glob("*.jpg")]:
        old.unlink()
    shared = Shared()
    findings: list[Finding] = []
    summary: dict[str, Any] = {"prepared_seconds": round(prepared, 1), "roles": {}}
    for role, username, signin_path in ROLES:
        role_started = time.monotonic()
        crawl = RoleCrawl(browser, live_server.url, role, out, shared)
        seeds = ["/"]
        if username is not None and signin_path is not None:
            seeds.insert(0, crawl.sign_in(username, signin_path))
        seeds.extend(EXTRA_SEEDS.get(role, ()))
        crawl.crawl(dict.fromkeys(seeds))
        findings.extend(crawl.findings)
        summary["roles"][role] = {
            "pages": crawl.visited,
            "links_checked": len(crawl.status),
            "slowest": sorted(crawl.timings, key=lambda t: -t[2])[:5],
            "seconds": round(time.monotonic() - role_started, 1),
        }
    summary["total_seconds"] = round(time.monotonic() - started, 1)
    summary["findings"] = [asdict(f) for f in findings]
    (out / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    lines = [f"{f.role:15} {f.size:7} {f.url}  {f.what}: {f.detail}" for f in findings]
    (out / "report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    pages = {role: len(data["pages"]) for role, data in summary["roles"].items()}
    assert pages["anonymous"] >= 20, pages  # home, every /learn/ article, /assess/, /decide/
    assert all(pages[role] >= 1 for role in pages), pages
    # The arranged work is reached from the homes: the adjudication form, the sterility form and
    # the follow-up page with its call list; registry admins and researchers got past the
    # second factor to their home.
    shapes = {role: {shape(p) for p in data["pages"]} for role, data in summary["roles"].items()}
    for must in ("/clinic/adverse-events/<n>/adjudicate/", "/clinic/episodes/<n>/sterility/"):
        assert must in shapes["clinician"], sorted(shapes["clinician"])
    assert "/p/staff/" in shapes["coordinator"], sorted(shapes["coordinator"])
    for role in ("registry-admin", "researcher"):
        assert summary["roles"][role]["pages"][0] == "/clinic/home/", summary["roles"][role]
    assert not findings, f"{len(findings)} findings (see {out}/report.txt):\n" + "\n".join(
        lines[:80]
    )


def test_the_raw_code_check_finds_codes_and_spares_prose() -> None:
    """The detector itself: codes are caught, URLs, file names, code-free prose are not."""
    codes = vocabulary_codes()
    assert codes["steroid_injection"] == "arm" and "month_12" in codes
    text = (
        "Arm: steroid_injection at month_12, seen at clinic 2.\n"
        "Source: https://example.org/some_path/page_one and research_export.csv, "
        "mail jane_doe@example.org, open /clinic/patients/?sort=last_name.\n"
        "Surgery-free at 12 months; well-known, non-response."
    )
    assert raw_codes(text, codes) == [
        "month_12 (timepoint code)",
        "steroid_injection (arm code)",
        "clinic 2",
    ]
    assert raw_codes("Surgery-free at 12 months (95% CI 3–9).", codes) == []
    assert raw_dates("Signed 2026-05-13, seen 2026-05-27 10:04 and 13 May 2026.") == [
        "2026-05-13",
        "2026-05-27 10:04",
    ]
    assert raw_dates("Lot SYN-LOT-2026-05-13-1, /clinic/?from=2026-05-13, 6 Dec 2026.") == []
    assert shape("/clinic/patients/12/") == shape("/clinic/patients/7/")
    assert shape("/clinic/outcomes/?arm=bmac") == shape("/clinic/outcomes/?arm=surgery")
    assert shape("/learn/causes/sciatica/") != shape("/learn/causes/herniated-disc/")
    assert area("anonymous", "/learn/") and not area("anonymous", "/clinic/")
    assert area("patient", "/p/progress/") and not area("patient", "/p/staff/")
    assert area("registry-admin", "/admin/") and not area("registry-admin", "/admin/auth/user/")
    assert area("clinician", "/clinic/") and not area("clinician", "/learn/")
    assert area("researcher", "/accounts/mfa/") and not area("researcher", "/accounts/login/")
    assert phone_ready_required("/clinic/patients/3/") and not phone_ready_required("/admin/")
    assert phone_key("coordinator", "/clinic/home/") != phone_key("clinician", "/clinic/home/")
    assert phone_key("researcher", "/clinic/outcomes/") != phone_key(
        "clinician", "/clinic/outcomes/"
    )
    assert phone_key("coordinator", "/clinic/patients/3/") == phone_key(
        "clinician", "/clinic/patients/7/"
    )
