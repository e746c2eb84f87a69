"""Button clicks: the quick-path confirmation, the approval message, the failure message.

Who clicked is always `body["user"]["id"]`; a button's value only says which request or draft.
Every click is acknowledged at once, empty; what it does runs after, as a lazy function (in the
follow-up worker when there is one, see bot.slack.followups).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.flow import NeedsBreakGlassReason, PostFailed
from bot.slack.errors import from_home
from bot.slack.followups import acknowledge, after_ack, in_place, later
from bot.slack.ids import Action, Callback
from bot.slack.messages import outcome_line, text_message
from bot.slack.publisher import api_error
from bot.slack.reply import delete_source, ephemeral, replace_source
from bot.slack.services import Services
from bot.slack.views import ViewMeta, form_state, reason_view

log = logging.getLogger("bot.slack.actions")

# views.update refusals that only mean the preview is out of date: a newer version of the form
# is already shown (hash_conflict), or the person closed or submitted it (not_found).
STALE_VIEW = frozenset({"hash_conflict", "not_found"})


def _clicked(body: dict[str, Any]) -> tuple[str, str]:
    """(user id, the clicked button's value)."""
    action = (body.get("actions") or [{}])[0]
    return str(body["user"]["id"]), str(action.get("value") or "")


def register_approval_buttons(app: AsyncApp, services: Services) -> None:
    """Approve, Reject and Cancel on the approval message (registered before the other
    listeners: Bolt tries listeners in order, and this is the click someone waits on)."""
    flow = services.flow

    @after_ack(app.action(Action.APPROVE))
    async def on_approve(body: dict[str, Any], client: AsyncWebClient) -> None:
        user, request_id = _clicked(body)
        try:
            await flow.approve(request_id, user)
        except NeedsBreakGlassReason as need:
            await client.views_open(
                trigger_id=body["trigger_id"],
                view=reason_view(
                    need.request,
                    callback=Callback.BREAK_GLASS,
                    title="Break glass",
                    submit="Approve",
                    intro=(
                        ":rotating_light: You are approving *your own* request. As a break-glass "
                        "user you may, with a reason; it is announced in the channel."
                    ),
                    required=True,
                ),
            )

    @after_ack(app.action(Action.REJECT))
    async def on_reject(body: dict[str, Any], client: AsyncWebClient) -> None:
        user, request_id = _clicked(body)
        request = await flow.check_reject(request_id, user)
        required = services.settings.require_reason
        await client.views_open(
            trigger_id=body["trigger_id"],
            view=reason_view(
                request,
                callback=Callback.REJECT,
                title="Reject request",
                submit="Reject",
                intro=f"Reject backup policy request `{request.id}`?",
                required=required,
            ),
        )

    @after_ack(app.action(Action.CANCEL_REQUEST))
    async def on_cancel(body: dict[str, Any], client: AsyncWebClient) -> None:
        user, request_id = _clicked(body)
        request = await flow.cancel(request_id, user)
        if from_home(body):  # the tab is republished by the change; say it there too
            await services.home.publish(user, notice=outcome_line(request))
        else:
            await ephemeral(body, client, text_message(outcome_line(request)))


def register(app: AsyncApp, services: Services) -> None:
    """The quick path's buttons, the failure message's, and the form's inputs."""
    flow = services.flow

    @after_ack(app.action(Action.REQUEST_APPROVAL))
    async def on_request_approval(body: dict[str, Any], client: AsyncWebClient) -> None:
        user, draft_id = _clicked(body)
        draft = await flow.get_draft(draft_id)
        request = await flow.submit(draft, user)
        try:
            request = await flow.announce(request)
        except PostFailed as exc:
            withdrawn = f"{exc}\nRequest `{request.id}` was withdrawn; nothing was sent to CSE."
            await replace_source(body, text_message(withdrawn), client)
            return
        await replace_source(
            body,
            text_message(
                f"Request `{request.id}` sent for approval in <#{request.message_channel}>; "
                "nothing is sent to CSE before a second engineer approves."
            ),
            client,
        )

    @after_ack(app.action(Action.EDIT_DRAFT))
    async def on_edit(body: dict[str, Any], client: AsyncWebClient) -> None:
        _, draft_id = _clicked(body)
        carried = ViewMeta.load((body.get("view") or {}).get("private_metadata")).form
        draft = await flow.carried_or_stored(carried, draft_id)
        view = services.form_from(draft)
        if body.get("view") and body["view"].get("id"):  # from the modal's confirmation step
            await client.views_update(view_id=body["view"]["id"], view=view)
        else:
            await client.views_open(trigger_id=body["trigger_id"], view=view)

    @after_ack(app.action(Action.DISCARD_DRAFT))
    async def on_discard(body: dict[str, Any], client: AsyncWebClient) -> None:
        _, draft_id = _clicked(body)
        await flow.store.delete_draft(draft_id)
        cancelled = text_message("Cancelled: nothing was stored or sent.")
        if not await replace_source(body, cancelled, client):
            await delete_source(body, client)

    @after_ack(app.action(Action.EDIT_AND_RESUBMIT))
    async def on_resubmit(body: dict[str, Any], client: AsyncWebClient) -> None:
        _, request_id = _clicked(body)
        request = await flow.get(request_id)
        await client.views_open(trigger_id=body["trigger_id"], view=services.form_from(request))

    # Inputs inside the form (a select changing, say) need nothing but an ack.
    for action in (Action.ENGINE, Action.CHANNEL, Action.RESERVE, Action.MAX_FILES, Action.REASON):
        app.action(action)(acknowledge)

    # The schedule inputs dispatch every change: the form comes back with the live preview. In
    # the process that acknowledges: the versions of the preview it keeps are in its memory,
    # and the form's submission (acknowledged there too) reads them.
    @in_place
    async def on_schedule_change(body: dict[str, Any], client: AsyncWebClient) -> None:
        view = body.get("view") or {}
        if view.get("callback_id") != Callback.FORM or not view.get("id"):
            return
        meta = ViewMeta.load(view.get("private_metadata"))
        updated = services.form_again(meta.channel, form_state(view))
        async with services.previews.updating(view["id"]):
            try:
                # The hash of the version the person acted on: if the form changed since (a
                # newer keystroke's preview landed first, or the form was submitted), Slack
                # refuses this one instead of letting an older preview overwrite a newer form.
                response = await client.views_update(
                    view_id=view["id"], hash=view.get("hash"), view=updated
                )
            except SlackApiError as exc:
                error = api_error(exc)
                if error not in STALE_VIEW:
                    raise
                log.debug("live preview dropped (%s) for view %s", error, view["id"])
                return
        landed = (response.get("view") or {}).get("hash")
        if landed:
            services.previews.landed(view["id"], str(landed))

    for action in (
        Action.SCHEDULE,
        Action.SCHEDULE_MODE,
        Action.SCHEDULE_DAYS,
        Action.SCHEDULE_TIME,
    ):
        app.action(action)(ack=acknowledge, lazy=[later(on_schedule_change)])
