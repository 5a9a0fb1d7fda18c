"""Gradio rating UI of the human study: a tab for the main app (``build_rating_tab``) or a standalone app.

Layout and wiring only; every read and write goes through :class:`eval_human.store.StudyStore`. The signed-in rater
lives in a server-side ``gr.State``, so a browser (or API client) can never pick another rater's items: it can
only move within its own queue. Raters see the image, the report and their own answers — never the source, other
raters' answers or items outside their assignment. Keys 1–9 press the Likert buttons.

API endpoints (for ``gradio_client``): ``/sign_in(token)``, ``/rate(consistency, image_realism,
report_plausibility, comment, cannot_judge, shown, session_key)``, ``/previous(session_key)``, ``/next(session_key)``,
``/resume(session_key)``, ``/admin_progress(session_key)``, ``/admin_export(session_key)``.

Who is signed in is bound to a secret, not to the Gradio session id alone: every sign-in draws a fresh
``session_key`` (the last output of ``/sign_in``), kept server-side in the session state, and every later action
must send it back. A client that presents another rater's session id (it travels in URLs and logs) but not that
sign-in's key is refused and shown nothing. A key lives for ``SESSION_LIFETIME_S``; signing in again rotates it.

Every view carries ``shown``, an opaque one-time key of the item on screen (the last output of each view); a rating
must send back the key of the pair the rater saw. The server stores it on exactly that pair, or refuses it (and
shows the pair it now holds) when the key is not the one it last displayed to this session: a second press that
raced the first, or a score sent after "Next", can never land on a pair that was not on screen.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from eval_human.models import Q_COMMENT, Q_CONSISTENCY, Q_IMAGE_REALISM, Q_REPORT_PLAUSIBILITY, ROLE_ADMIN
from eval_human.store import MAX_COMMENT_CHARS, MAX_SECONDS_SPENT, RaterInfo, StudyError, StudyStore

MAX_LIKERT_BUTTONS = 9  # one digit key per button
SIGN_IN_FAILURES = 5  # failed token sign-ins a client address may make per window before it must wait
SIGN_IN_WINDOW_S = 60.0
SESSION_LIFETIME_S = 12 * 3600.0  # a sign-in's key expires after a working day; the rater signs in again
NOT_RATED = 0  # choice value of an optional Likert question left unanswered

# Installs one document-level key listener: digit N clicks the visible Likert button N, except while typing.
LIKERT_SHORTCUTS_JS = """
if (!window.__evalHumanLikertKeys) {
  window.__evalHumanLikertKeys = true;
  document.addEventListener('keydown', (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.tagName === 'INPUT' || target.tagName === 'TEXTAREA' || target.isContentEditable)) return;
    const button = document.getElementById('eh-likert-' + event.key);
    if (button && button.offsetParent !== null && !button.disabled) {
      event.preventDefault();
      button.click();
    }
  });
}
"""

CONSISTENCY_PROMPT = (
    "**How consistent is the report with the image?** 1 = contradicts the image, {max} = fully consistent. "
    "Press a button or a key 1–{max}; the next pair follows."
)


class SignInLimiter:
    """Failed sign-ins per client address in a sliding window: past ``max_failures`` the address is refused,
    even with a right token, until its oldest failure leaves the window (tokens cannot be guessed by trying)."""

    def __init__(self, max_failures: int = SIGN_IN_FAILURES, window_s: float = SIGN_IN_WINDOW_S, clock=None):
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock or time.monotonic
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> list[float]:
        recent = [t for t in self._failures.get(client, []) if now - t < self.window_s]
        self._failures[client] = recent
        return recent

    def check(self, client: str) -> None:
        """Raise gr.Error when ``client`` must wait before trying again."""
        with self._lock:
            now = self.clock()
            recent = self._recent(client, now)
            if len(recent) >= self.max_failures:
                wait = int(self.window_s - (now - recent[0])) + 1
                raise gr.Error(f"Too many failed sign-ins from this address: try again in {wait} s.")

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            self._recent(client, now).append(now)


@dataclass(frozen=True)
class RaterSession:
    """Server-side per-browser state: who is signed in, where they are, and when the current item appeared."""

    rater: RaterInfo
    secret: str = ""  # this sign-in's session key; every action must present it
    signed_in_at: float = 0.0
    position: int = 0
    shown_at: float = 0.0
    shown_key: str = ""  # the one-time key of the item last rendered (what is on screen)
    shown_item_id: int | None = None


@dataclass
class RatingTab:
    """Handles on the tab's components, for a host app that wants to wire more events (e.g. ``demo.load``)."""

    session: gr.State
    token: gr.Textbox
    status: gr.Markdown
    sign_in_from_login: Any
    sign_in_outputs: list


def _require(session: RaterSession | None, key: str | None, *, clock=time.monotonic) -> RaterSession:
    """The signed-in session, if ``key`` is this sign-in's secret and it has not expired; otherwise a refusal
    that reveals nothing about the session (not even whether one exists)."""
    if session is None or not session.secret:
        raise gr.Error("Sign in with your rater token first.")
    if not key or not secrets.compare_digest(str(key), session.secret):
        raise gr.Error("This browser's sign-in is not valid here: sign in with your rater token.")
    if clock() - session.signed_in_at > SESSION_LIFETIME_S:
        raise gr.Error("Your sign-in has expired: sign in with your rater token again.")
    return session


def _new_session(rater: RaterInfo, **fields) -> RaterSession:
    return RaterSession(
        rater=rater, secret=secrets.token_urlsafe(24), signed_in_at=time.monotonic(), **fields
    )


def _optional_score(value: Any) -> int | None:
    """A Likert answer as an int; a non-integer (3.5, "4.2", True) is refused, never rounded."""
    if value in (None, "", NOT_RATED, str(NOT_RATED)):
        return None
    if isinstance(value, bool):
        raise gr.Error(f"Score {value!r} is not a whole number.")
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise gr.Error(f"Score {value!r} is not a number.") from error
    if not number.is_integer():
        raise gr.Error(f"Score {value!r} is not a whole number: scores are 1, 2, 3, ...")
    return int(number)


def build_rating_tab(
    store: StudyStore, *, trust_login: bool = False, limiter: SignInLimiter | None = None
) -> RatingTab:
    """Render the rating UI into the current ``gr.Blocks``/``gr.Tab`` context.

    Args:
        store: the study store all handlers call.
        trust_login: offer "continue as <login>" for a login already verified by Gradio ``auth=`` or HF OAuth
            (the login must equal a rater's name).
        limiter: the failed-sign-in throttle (default: 5 failures per client address per minute).
    """
    session = gr.State(None)
    gr.HTML(
        "<small>Keyboard: keys 1–5 give the consistency score (not while typing in a text box).</small>",
        js_on_load=LIKERT_SHORTCUTS_JS,
    )
    with gr.Row():
        token = gr.Textbox(label="Rater token", type="password", scale=4, max_length=200)
        sign_in_button = gr.Button("Sign in", variant="primary", scale=1)
        login_button = gr.Button("Continue with my login", scale=1, visible=trust_login)
    status = gr.Markdown("Sign in with the token you received to start rating.")

    with gr.Column(visible=False) as rating_panel:
        progress = gr.Markdown()
        with gr.Row():
            # a file path: the normalised media file is served byte for byte (a PIL image would be re-encoded)
            image = gr.Image(label="Image", type="filepath", interactive=False, height=420)
            with gr.Column():
                report = gr.Textbox(label="Report", interactive=False, lines=12)
                current = gr.Markdown()
        prompt = gr.Markdown(CONSISTENCY_PROMPT.format(max=5))
        with gr.Row():
            likert_buttons = [
                gr.Button(str(value), elem_id=f"eh-likert-{value}", variant="primary", visible=value <= 5)
                for value in range(1, MAX_LIKERT_BUTTONS + 1)
            ]
            cannot_judge_button = gr.Button("Cannot judge", variant="secondary")
        with gr.Accordion(
            "Optional: realism, plausibility, comment (set these before the consistency score)"
        ):
            likert_choices = [("not rated", NOT_RATED)] + [(str(v), v) for v in range(1, 6)]
            realism = gr.Radio(likert_choices, value=NOT_RATED, label="Image realism")
            plausibility = gr.Radio(likert_choices, value=NOT_RATED, label="Report plausibility")
            comment = gr.Textbox(label="Comment", lines=2, max_length=MAX_COMMENT_CHARS)
        with gr.Row():
            previous_button = gr.Button("← Previous")
            resume_button = gr.Button("First unrated")
            next_button = gr.Button("Next →")
        # API-only inputs of /rate: the score and the flag as plain values.
        api_score = gr.Number(visible=False)  # no precision: 3.5 must arrive as 3.5 and be refused
        api_cannot_judge = gr.Checkbox(visible=False)
        api_rate_button = gr.Button(visible=False)
        shown = gr.Textbox(visible=False)  # the key of the pair on screen; ratings send it back
    session_key = gr.Textbox(visible=False)  # this sign-in's secret; every action sends it back

    with gr.Column(visible=False) as admin_panel:
        gr.Markdown("### Study administration")
        admin_table = gr.Dataframe(label="Progress per rater", interactive=False)
        with gr.Row():
            refresh_button = gr.Button("Refresh progress")
            export_button = gr.Button("Export ratings (CSV)")
        # the export travels only inside the admin session's reply: a gr.File would publish it at a file URL
        # that anyone holding the link could download without signing in
        export_note = gr.Markdown()
        export_text = gr.Code(label="Export (CSV, unblinded)", language=None, interactive=False)

    view_outputs = [
        session,
        status,
        rating_panel,
        progress,
        image,
        report,
        realism,
        plausibility,
        comment,
        current,
        shown,
    ]
    sign_in_outputs = [*view_outputs, admin_panel, admin_table, prompt, *likert_buttons, session_key]

    # ------------------------------------------------------------ rendering

    def render(state: RaterSession, message: str = "") -> list:
        """Values for ``view_outputs`` showing the item at ``state.position``."""
        try:
            item = store.rater_item(state.rater.id, state.position)
        except StudyError as error:
            raise gr.Error(str(error)) from error
        state = replace(
            state, shown_at=time.monotonic(), shown_key=secrets.token_urlsafe(12), shown_item_id=item.item_id
        )
        answers = item.answers
        if answers.get("cannot_judge"):
            current_text = "Your answer: **cannot judge**."
        elif answers.get(Q_CONSISTENCY) is not None:
            current_text = (
                f"Your consistency score: **{answers[Q_CONSISTENCY]}** (press another to change it)."
            )
        else:
            current_text = "Not rated yet."
        done = item.n_done == item.n_items
        progress_text = f"**Pair {item.position + 1} of {item.n_items}** · {item.n_done} rated" + (
            " · all pairs rated — thank you! You can still go back and change answers." if done else ""
        )
        return [
            state,
            message or f"Signed in as **{state.rater.name}**.",
            gr.Column(visible=True),
            progress_text,
            str(item.image_path),
            item.report,
            answers.get(Q_IMAGE_REALISM) or NOT_RATED,
            answers.get(Q_REPORT_PLAUSIBILITY) or NOT_RATED,
            answers.get(Q_COMMENT) or "",
            current_text,
            state.shown_key,
        ]

    def signed_in(rater: RaterInfo) -> list:
        if rater.role == ROLE_ADMIN:
            state = _new_session(rater)
            hidden = [
                state,
                f"Signed in as admin **{rater.name}**.",
                gr.Column(visible=False),
                *([gr.skip()] * 8),
            ]
            return [
                *hidden,
                gr.Column(visible=True),
                store.progress(rater.study_id),
                gr.skip(),
                *([gr.skip()] * MAX_LIKERT_BUTTONS),
                state.secret,
            ]
        likert_max = store.study_info(rater.study_id)["likert_max"]
        state = _new_session(rater, position=store.first_pending_position(rater.id))
        buttons = [gr.Button(visible=value <= likert_max) for value in range(1, MAX_LIKERT_BUTTONS + 1)]
        return [
            *render(state),
            gr.Column(visible=False),
            gr.skip(),
            CONSISTENCY_PROMPT.format(max=likert_max),
            *buttons,
            state.secret,
        ]

    # ------------------------------------------------------------ handlers

    limiter = limiter or SignInLimiter()

    def sign_in(token_value: str, request: gr.Request):
        client = getattr(getattr(request, "client", None), "host", None) or "unknown"
        limiter.check(client)
        try:
            rater = store.authenticate(token_value)
        except StudyError as error:
            limiter.failed(client)
            raise gr.Error(str(error)) from error
        return signed_in(rater)

    def sign_in_from_login(request: gr.Request, profile: gr.OAuthProfile | None = None):
        username = getattr(profile, "username", None) if profile is not None else None
        username = username or getattr(request, "username", None)
        if not trust_login or not username:
            raise gr.Error("No verified login: sign in with your rater token.")
        try:
            rater = store.rater_for_login(username)
        except StudyError as error:
            raise gr.Error(str(error)) from error
        return signed_in(rater)

    def rate(score, realism_value, plausibility_value, comment_value, cannot_judge, shown_key, key, state):
        state = _require(state, key)
        if state.rater.role == ROLE_ADMIN:
            raise gr.Error("Admins do not rate pairs.")
        if (
            not shown_key
            or not state.shown_key
            or not secrets.compare_digest(str(shown_key), state.shown_key)
        ):
            # the answer was given for a pair this session no longer shows: store nothing, show the pair it holds
            return render(
                state,
                "⚠️ That answer was for a pair that is no longer on screen, so it was **not saved**. "
                "Please rate the pair shown.",
            )
        try:
            item = store.rater_item(state.rater.id, state.position)
        except StudyError as error:
            raise gr.Error(str(error)) from error
        if item.item_id != state.shown_item_id:  # the queue cannot reorder, but never guess
            return render(state, "⚠️ The pair on screen changed; your answer was **not saved**.")
        seconds = (
            min(max(time.monotonic() - state.shown_at, 0.0), MAX_SECONDS_SPENT) if state.shown_at else None
        )
        try:
            store.submit_rating(
                state.rater.id,
                item.item_id,
                None if cannot_judge else _optional_score(score),
                image_realism=_optional_score(realism_value),
                report_plausibility=_optional_score(plausibility_value),
                comment=comment_value or None,
                cannot_judge=bool(cannot_judge),
                seconds_spent=seconds,
            )
        except StudyError as error:
            raise gr.Error(str(error)) from error
        last = item.n_items - 1
        return render(replace(state, position=min(state.position + 1, last)), "Saved.")

    def move(step: int, key, state):
        state = _require(state, key)
        if state.rater.role == ROLE_ADMIN:
            raise gr.Error("Admins have no pairs to rate.")
        n_items = store.queue_length(state.rater.id)
        return render(replace(state, position=min(max(state.position + step, 0), n_items - 1)))

    def resume(key, state):
        state = _require(state, key)
        if state.rater.role == ROLE_ADMIN:
            raise gr.Error("Admins have no pairs to rate.")
        return render(replace(state, position=store.first_pending_position(state.rater.id)))

    def require_admin(state, key) -> RaterSession:
        state = _require(state, key)
        if state.rater.role != ROLE_ADMIN:
            raise gr.Error("This view needs an admin token.")
        return state

    def admin_progress(key, state):
        return store.progress(require_admin(state, key).rater.study_id)

    def admin_export(key, state):
        """The unblinded ratings CSV for an admin session: its text in the reply, and an owner-only copy in the
        study's export folder on the server (never a temporary or web-served file)."""
        from eval_human.stats import export_ratings

        study_id = require_admin(state, key).rater.study_id
        folder = store.export_dir
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = export_ratings(store, study_id, folder / f"ratings_study{study_id}_{stamp}.csv")
        note = f"Saved on the server (owner-only) as `{path}`; the same CSV is below."
        return note, path.read_text(encoding="utf-8")

    # ------------------------------------------------------------ wiring

    # the store is thread-safe (SQLite serialises the short writes); "once": a second press of a button while its
    # first is pending is dropped in the browser (the key check above refuses what still gets through)
    common = {"concurrency_limit": None, "trigger_mode": "once"}
    gr.on(
        [sign_in_button.click, token.submit], sign_in, [token], sign_in_outputs, api_name="sign_in", **common
    )
    login_button.click(sign_in_from_login, None, sign_in_outputs, api_name="sign_in_from_login", **common)
    rate_inputs = [realism, plausibility, comment]
    for value, button in enumerate(likert_buttons, start=1):
        button.click(
            functools.partial(rate, value),
            [*rate_inputs, gr.State(False), shown, session_key, session],
            view_outputs,
            api_visibility="private",
            **common,
        )
    cannot_judge_button.click(
        functools.partial(rate, None),
        [*rate_inputs, gr.State(True), shown, session_key, session],
        view_outputs,
        api_visibility="private",
        **common,
    )
    api_rate_button.click(
        rate,
        [api_score, *rate_inputs, api_cannot_judge, shown, session_key, session],
        view_outputs,
        api_name="rate",
        **common,
    )
    keyed = [session_key, session]
    previous_button.click(functools.partial(move, -1), keyed, view_outputs, api_name="previous", **common)
    next_button.click(functools.partial(move, 1), keyed, view_outputs, api_name="next", **common)
    resume_button.click(resume, keyed, view_outputs, api_name="resume", **common)
    refresh_button.click(admin_progress, keyed, [admin_table], api_name="admin_progress", **common)
    export_button.click(admin_export, keyed, [export_note, export_text], api_name="admin_export", **common)
    return RatingTab(
        session=session,
        token=token,
        status=status,
        sign_in_from_login=sign_in_from_login,
        sign_in_outputs=sign_in_outputs,
    )


def build_rating_app(
    store: StudyStore,
    *,
    trust_login: bool = False,
    title: str = "MeDiM human study",
    limiter: SignInLimiter | None = None,
) -> gr.Blocks:
    """A standalone Blocks app holding only the rating tab (``python -m eval_human serve``)."""
    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"# {title}\nRate how well each report matches its image. Sources are hidden from raters."
        )
        build_rating_tab(store, trust_login=trust_login, limiter=limiter)
    return demo
